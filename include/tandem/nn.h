// Neural-network building blocks: modules, layers, initialisers.
#pragma once

#include "tandem/nn/clip.h"
#include "tandem/nn/conv.h"
#include "tandem/nn/init.h"
#include "tandem/nn/module.h"
#include "tandem/nn/modules.h"
