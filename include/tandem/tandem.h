// The umbrella header: #include <tandem/tandem.h> gives the whole public API.
#pragma once

#include "tandem/autograd.h"
#include "tandem/config.h"
#include "tandem/cuda.h"
#include "tandem/device.h"
#include "tandem/dtype.h"
#include "tandem/error.h"
#include "tandem/generator.h"
#include "tandem/gradcheck.h"
#include "tandem/loss.h"
#include "tandem/models.h"
#include "tandem/nn.h"
#include "tandem/op_list.h"
#include "tandem/ops.h"
#include "tandem/optim.h"
#include "tandem/optim/lr_scheduler.h"
#include "tandem/tensor.h"
