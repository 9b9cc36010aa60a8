// float32 NCHW convolution through oneDNN (src/cpu/dnnl_conv.cpp). Each
// function does the pass and returns true, or returns false without touching
// anything when oneDNN does not take the case (float64, non-contiguous
// operands, a negative right padding, or TANDEM_CPU_ONEDNN=0 in the
// environment); the caller then runs its im2col + GEMM path.
#pragma once

#include "core/backend.h"

namespace tandem {
namespace cpu {

bool dnnl_conv_enabled();
bool dnnl_conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                         const ConvShape& shape, Tensor& y);
bool dnnl_conv2d_backward_input(const Tensor& grad_y, const Tensor& weight, const ConvShape& shape,
                                Tensor& grad_x);
bool dnnl_conv2d_backward_weight(const Tensor& x, const Tensor& grad_y, const ConvShape& shape,
                                 Tensor& grad_weight);

}  // namespace cpu
}  // namespace tandem
