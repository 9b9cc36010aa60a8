// Vectorised transcendental functions over arrays, for the CPU backend's hot
// loops (unary exp/log/tanh/sigmoid/erf, softmax, cross-entropy). On x86-64 the
// math is SLEEF's 1-ulp functions (u10; Debian's libsleef-dev), on the widest
// instruction set the CPU has: AVX-512F, AVX2 + FMA, or SSE2, chosen once at
// run time from CPUID (no -march needed to build). Without SLEEF (or off
// x86-64) the same calls run the scalar std:: formulas of cpu_utils.h.
//
// Semantics match util::apply_unary: NaN propagates, exp overflows to +inf and
// underflows through the denormals to 0, log(0) = -inf, log(x < 0) = NaN,
// tanh(+-inf) = +-1, and sigmoid takes exp of -|x| only (no overflow for large
// |x|): sigmoid(x) = (x < 0 ? z : 1) / (1 + z), z = exp(-|x|). Results agree
// with std:: to within an ulp or two (SLEEF's bound is 1.0 ulp; sigmoid adds
// the roundings of 1 + z and the division); tests/test_vec_math.cpp sweeps
// float32 and states the bound per function.
#pragma once

#include <cstdint>

#include "core/backend.h"

namespace tandem {
namespace cpu {
namespace vec {

enum class Isa { Scalar, Sse2, Avx2, Avx512 };

// The instruction set the vector paths use now: the best this CPU supports,
// lowered by the environment variable TANDEM_CPU_ISA=avx2|sse2|scalar (read
// once) or by set_isa.
Isa isa();
// The best this build and CPU support (Scalar without SLEEF or off x86-64).
Isa best_isa();
// Forces `level` (clamped to best_isa()); for tests and benchmarks.
void set_isa(Isa level);
const char* isa_name(Isa level);

// Whether unary() below has a vectorised kernel for op (exp, log, tanh,
// sigmoid, erf).
bool has_unary(UnaryOp op);

// y[i] = op(x[i]) for i in [0, n), on one thread; x == y is allowed. For an op
// without a vectorised kernel this is the scalar loop.
void unary(UnaryOp op, const float* x, float* y, int64_t n);
void unary(UnaryOp op, const double* x, double* y, int64_t n);

}  // namespace vec
}  // namespace cpu
}  // namespace tandem
