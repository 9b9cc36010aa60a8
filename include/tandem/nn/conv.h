// Convolution, pooling and batch-norm modules (NCHW), as libtorch's:
//   nn::Conv2d conv(nn::Conv2dOptions(3, 16, 3).stride(1).padding(1));
//   nn::MaxPool2d pool(nn::MaxPool2dOptions(2));
//   nn::BatchNorm2d bn(16);
// Each forward checks its input and throws naming the layer, the expected and
// the received shape. The functional forms are in tandem/ops.h.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>

#include "tandem/nn/module.h"
#include "tandem/ops.h"

// A chained option: Options& name(Type v) and Type name() const.
#define TANDEM_NN_OPTION(Class, Type, name, init) \
 public:                                          \
  Class& name(Type v) {                           \
    name##_ = v;                                  \
    return *this;                                 \
  }                                               \
  Type name() const { return name##_; }           \
                                                  \
 private:                                         \
  Type name##_ = init

namespace tandem {
namespace nn {

class Conv2dOptions {
 public:
  Conv2dOptions(int64_t in_channels, int64_t out_channels, Size2 kernel_size)
      : in_channels_(in_channels), out_channels_(out_channels), kernel_size_(kernel_size) {}
  TANDEM_NN_OPTION(Conv2dOptions, int64_t, in_channels, 0);
  TANDEM_NN_OPTION(Conv2dOptions, int64_t, out_channels, 0);
  TANDEM_NN_OPTION(Conv2dOptions, Size2, kernel_size, 1);
  TANDEM_NN_OPTION(Conv2dOptions, Size2, stride, 1);
  TANDEM_NN_OPTION(Conv2dOptions, Size2, padding, 0);
  TANDEM_NN_OPTION(Conv2dOptions, Size2, dilation, 1);
  TANDEM_NN_OPTION(Conv2dOptions, int64_t, groups, 1);
  TANDEM_NN_OPTION(Conv2dOptions, bool, bias, true);
};

// weight [out, in/groups, kH, kW] and bias [out], initialised as PyTorch's
// Conv2d (kaiming_uniform_ with a = sqrt(5); bias U(-1/sqrt(fan_in), ...)).
class Conv2dImpl : public Module {
 public:
  explicit Conv2dImpl(const Conv2dOptions& opts);
  Conv2dImpl(int64_t in_channels, int64_t out_channels, Size2 kernel_size)
      : Conv2dImpl(Conv2dOptions(in_channels, out_channels, kernel_size)) {}
  Tensor forward(const Tensor& input) override;
  void reset_parameters(Generator* gen = nullptr);
  void pretty_print(std::ostream& os) const override;

  Conv2dOptions options;
  Tensor weight, bias;
};
TANDEM_MODULE(Conv2d);

class MaxPool2dOptions {
 public:
  MaxPool2dOptions(Size2 kernel_size) : kernel_size_(kernel_size) {}  // NOLINT
  TANDEM_NN_OPTION(MaxPool2dOptions, Size2, kernel_size, 1);
  TANDEM_NN_OPTION(MaxPool2dOptions, std::optional<Size2>, stride, std::nullopt);
  TANDEM_NN_OPTION(MaxPool2dOptions, Size2, padding, 0);
};

class MaxPool2dImpl : public Module {
 public:
  explicit MaxPool2dImpl(const MaxPool2dOptions& opts);
  Tensor forward(const Tensor& input) override;
  void pretty_print(std::ostream& os) const override;
  MaxPool2dOptions options;
};
TANDEM_MODULE(MaxPool2d);

class AvgPool2dOptions {
 public:
  AvgPool2dOptions(Size2 kernel_size) : kernel_size_(kernel_size) {}  // NOLINT
  TANDEM_NN_OPTION(AvgPool2dOptions, Size2, kernel_size, 1);
  TANDEM_NN_OPTION(AvgPool2dOptions, std::optional<Size2>, stride, std::nullopt);
  TANDEM_NN_OPTION(AvgPool2dOptions, Size2, padding, 0);
  TANDEM_NN_OPTION(AvgPool2dOptions, bool, count_include_pad, true);
};

class AvgPool2dImpl : public Module {
 public:
  explicit AvgPool2dImpl(const AvgPool2dOptions& opts);
  Tensor forward(const Tensor& input) override;
  void pretty_print(std::ostream& os) const override;
  AvgPool2dOptions options;
};
TANDEM_MODULE(AvgPool2d);

class AdaptiveAvgPool2dImpl : public Module {
 public:
  explicit AdaptiveAvgPool2dImpl(Size2 output_size);
  Tensor forward(const Tensor& input) override;
  void pretty_print(std::ostream& os) const override;
  Size2 output_size;
};
TANDEM_MODULE(AdaptiveAvgPool2d);

class BatchNormOptions {
 public:
  BatchNormOptions(int64_t num_features) : num_features_(num_features) {}  // NOLINT
  TANDEM_NN_OPTION(BatchNormOptions, int64_t, num_features, 0);
  TANDEM_NN_OPTION(BatchNormOptions, double, eps, 1e-5);
  TANDEM_NN_OPTION(BatchNormOptions, double, momentum, 0.1);
  TANDEM_NN_OPTION(BatchNormOptions, bool, affine, true);
  TANDEM_NN_OPTION(BatchNormOptions, bool, track_running_stats, true);
};

// Batch norm over the channel dim 1. weight (1s) and bias (0s) when affine;
// buffers running_mean (0s), running_var (1s) and num_batches_tracked (int64)
// when track_running_stats. Training mode normalises with the batch statistics
// and updates the running ones; eval mode uses the running ones (or the batch
// statistics when they are not tracked).
class BatchNormImplBase : public Module {
 public:
  BatchNormImplBase(const char* name, int64_t expected_dim_lo, int64_t expected_dim_hi,
                    const BatchNormOptions& opts);
  Tensor forward(const Tensor& input) override;
  void reset_running_stats();
  void reset_parameters();
  void pretty_print(std::ostream& os) const override;

  BatchNormOptions options;
  Tensor weight, bias;                                    // [C] when affine
  Tensor running_mean, running_var, num_batches_tracked;  // when tracked
  // SyncBatchNorm (set by dist::convert_sync_batchnorm): when set, training
  // mode normalises with the statistics of the whole distributed batch. It
  // sums a [3, C] tensor (per-channel sum, sum of squares, count) over all
  // ranks, differentiably (its backward sums the gradients over the ranks).
  std::function<Tensor(const Tensor&)> sync_stats;

 private:
  Tensor forward_synced(const Tensor& input);
  int64_t dim_lo_, dim_hi_;
};

// Input [N, C] or [N, C, L].
class BatchNorm1dImpl : public BatchNormImplBase {
 public:
  explicit BatchNorm1dImpl(const BatchNormOptions& opts)
      : BatchNormImplBase("BatchNorm1d", 2, 3, opts) {}
};
TANDEM_MODULE(BatchNorm1d);

// Input [N, C, H, W].
class BatchNorm2dImpl : public BatchNormImplBase {
 public:
  explicit BatchNorm2dImpl(const BatchNormOptions& opts)
      : BatchNormImplBase("BatchNorm2d", 4, 4, opts) {}
};
TANDEM_MODULE(BatchNorm2d);

}  // namespace nn
}  // namespace tandem

#undef TANDEM_NN_OPTION
