// Random factories and dropout. Each op reserves the Philox counters it uses
// from the generator (src/core/philox.h documents the mapping), so the same
// generator state gives the same numbers on CPU and CUDA.
#include <cmath>

#include "core/philox.h"
#include "ops/dispatch.h"
#include "tandem/ops.h"

namespace tandem {

namespace {

struct Draw {
  uint64_t seed, offset;
};

Draw reserve(Generator* gen, int64_t n, philox::Stream stream) {
  Generator& g = gen ? *gen : default_generator();
  const uint64_t counters = philox::counters_for(static_cast<uint64_t>(n), stream);
  const uint64_t seed = g.seed();
  return Draw{seed, g.reserve(counters)};
}

philox::Stream stream_of(DType t) {
  return t == kFloat32 ? philox::Stream::Float32 : philox::Stream::Float64;
}

}  // namespace

Tensor uniform(const Shape& shape, double lo, double hi, const TensorOptions& options,
               Generator* gen) {
  TANDEM_CHECK(is_floating(options.dtype()), "uniform: dtype ", dtype_name(options.dtype()),
               " is not supported (expected float32 or float64)");
  TANDEM_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo <= hi,
               "uniform: need finite lo <= hi, got [", lo, ", ", hi, ")");
  Tensor out = empty(shape, options);
  if (out.numel() == 0) return out;
  const Draw draw = reserve(gen, out.numel(), stream_of(out.dtype()));
  TANDEM_BACKEND_CALL(out.device(), uniform, out, draw.seed, draw.offset, lo, hi);
  return out;
}

Tensor rand(const Shape& shape, const TensorOptions& options, Generator* gen) {
  return uniform(shape, 0.0, 1.0, options, gen);
}

Tensor normal(const Shape& shape, double mean, double std, const TensorOptions& options,
              Generator* gen) {
  TANDEM_CHECK(is_floating(options.dtype()), "normal: dtype ", dtype_name(options.dtype()),
               " is not supported (expected float32 or float64)");
  TANDEM_CHECK(std::isfinite(mean) && std::isfinite(std) && std >= 0.0,
               "normal: need a finite mean and std >= 0, got mean=", mean, " std=", std);
  Tensor out = empty(shape, options);
  if (out.numel() == 0) return out;
  const Draw draw = reserve(gen, out.numel(), stream_of(out.dtype()));
  TANDEM_BACKEND_CALL(out.device(), normal, out, draw.seed, draw.offset, mean, std);
  return out;
}

Tensor randn(const Shape& shape, const TensorOptions& options, Generator* gen) {
  return normal(shape, 0.0, 1.0, options, gen);
}

Tensor randint(int64_t low, int64_t high, const Shape& shape, const TensorOptions& options,
               Generator* gen) {
  TANDEM_CHECK(low < high, "randint: low (", low, ") must be less than high (", high, ")");
  TANDEM_CHECK(options.dtype() == kInt64 || options.dtype() == kInt32, "randint: dtype ",
               dtype_name(options.dtype()), " is not supported (expected int64 or int32)");
  Tensor out = empty(shape, options);
  if (out.numel() == 0) return out;
  const Draw draw = reserve(gen, out.numel(), philox::Stream::Float64);
  TANDEM_BACKEND_CALL(out.device(), randint, out, draw.seed, draw.offset, low, high);
  return out;
}

Tensor dropout_mask(const Shape& shape, double p, const TensorOptions& options, Generator* gen) {
  TANDEM_CHECK(p >= 0.0 && p <= 1.0, "dropout: p must be in [0, 1], got ", p);
  TANDEM_CHECK(is_floating(options.dtype()), "dropout: dtype ", dtype_name(options.dtype()),
               " is not supported (expected float32 or float64)");
  Tensor out = empty(shape, options);
  if (out.numel() == 0) return out;
  // Masks use the float32 stream for every dtype, so they match across dtypes.
  const Draw draw = reserve(gen, out.numel(), philox::Stream::Float32);
  TANDEM_BACKEND_CALL(out.device(), dropout_mask, out, draw.seed, draw.offset, p);
  return out;
}

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  detail::check_defined("dropout", x);
  TANDEM_CHECK(p >= 0.0 && p <= 1.0, "dropout: p must be in [0, 1], got ", p);
  if (!training || p == 0.0) return x;
  return x * dropout_mask(x.sizes(), p, TensorOptions(x.dtype()).device(x.device()), gen);
}

}  // namespace tandem
