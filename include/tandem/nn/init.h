// Parameter initialisers in libtorch's names (nn::init::kaiming_uniform_ ...).
// Each fills the tensor in place (outside the graph) and returns it; fans are
// computed as in PyTorch (fan_in = size(1) * receptive field).
#pragma once

#include <cstdint>
#include <utility>

#include "tandem/generator.h"
#include "tandem/nn/module.h"
#include "tandem/tensor.h"

namespace tandem {
namespace nn {
namespace init {

enum class FanMode : int8_t { FanIn, FanOut };
enum class Nonlinearity : int8_t { Linear, Sigmoid, Tanh, ReLU, LeakyReLU };

// The recommended gain for a nonlinearity (PyTorch's calculate_gain);
// `param` is LeakyReLU's negative slope.
double calculate_gain(Nonlinearity nonlinearity, double param = 0.01);
// (fan_in, fan_out) of a weight of at least 2 dims.
std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t);

Tensor zeros_(Tensor t);
Tensor ones_(Tensor t);
Tensor constant_(Tensor t, double value);
Tensor uniform_(Tensor t, double a = 0.0, double b = 1.0, Generator* gen = nullptr);
Tensor normal_(Tensor t, double mean = 0.0, double std = 1.0, Generator* gen = nullptr);
// He et al.: std = gain / sqrt(fan); uniform bound = sqrt(3) * std.
Tensor kaiming_uniform_(Tensor t, double a = 0.0, FanMode mode = FanMode::FanIn,
                        Nonlinearity nonlinearity = Nonlinearity::LeakyReLU,
                        Generator* gen = nullptr);
Tensor kaiming_normal_(Tensor t, double a = 0.0, FanMode mode = FanMode::FanIn,
                       Nonlinearity nonlinearity = Nonlinearity::LeakyReLU,
                       Generator* gen = nullptr);
// Glorot & Bengio: std = gain * sqrt(2 / (fan_in + fan_out)).
Tensor xavier_uniform_(Tensor t, double gain = 1.0, Generator* gen = nullptr);
Tensor xavier_normal_(Tensor t, double gain = 1.0, Generator* gen = nullptr);
// PyTorch's dirac_: a conv weight [out, in / groups, k...] (3 to 5 dims) set
// to the identity: zeros, except weight[g * out_per_group + d][d][centre] = 1
// for d < min(out_per_group, in / groups), so the convolution copies its first
// input channels (of each group) to its first output channels. Applied to the
// leading rows of a weight (`w.slice(0, 0, w.size(1))`, an alias), it gives
// airbench's partial identity initialisation.
Tensor dirac_(Tensor t, int64_t groups = 1);

// The classic course initialisation: every parameter named "weight" drawn
// from N(0, weight_scale^2), every "bias" set to zero, in m and its children.
void normal_weights_(Module& m, double weight_scale, Generator* gen = nullptr);

}  // namespace init
}  // namespace nn
}  // namespace tandem
