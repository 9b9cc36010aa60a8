// The one dispatch point: an op's checked, allocated arguments go to
// cpu::<fn> or cuda::<fn> by device. There is no CPU fallback for CUDA tensors.
// Only src/ops/ includes it (tests/test_layers.py checks that); the argument
// checks live in core/checks.h, which any layer may include.
#pragma once

#include "core/backend.h"
#include "core/checks.h"
#include "core/cuda_services.h"
#include "tandem/error.h"
#include "tandem/tensor.h"

#if defined(TANDEM_WITH_CUDA_BACKEND)
#define TANDEM_BACKEND_CALL(DEVICE, FN, ...)                                  \
  do {                                                                        \
    const ::tandem::Device tandem_dev_ = (DEVICE);                            \
    if (tandem_dev_.is_cuda()) {                                              \
      ::tandem::cuda::detail::DeviceGuard tandem_guard_(tandem_dev_.index()); \
      ::tandem::cuda::FN(__VA_ARGS__);                                        \
    } else {                                                                  \
      ::tandem::cpu::FN(__VA_ARGS__);                                         \
    }                                                                         \
  } while (0)
#else
#define TANDEM_BACKEND_CALL(DEVICE, FN, ...)                                         \
  do {                                                                               \
    const ::tandem::Device tandem_dev_ = (DEVICE);                                   \
    TANDEM_CHECK(!tandem_dev_.is_cuda(), #FN,                                        \
                 ": a CUDA tensor reached an op, but tandem was built without CUDA " \
                 "support (configure with TANDEM_CUDA=ON)");                         \
    ::tandem::cpu::FN(__VA_ARGS__);                                                  \
  } while (0)
#endif
