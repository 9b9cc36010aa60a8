// The ops of op_list.h as test-case tables, built from the X-macros so that an
// op added to op_list.h is picked up by every test that iterates over them
// (CPU references in test_ops_*.cpp, CPU/CUDA parity in test_cuda_*.cpp).
#pragma once

#include <tandem/tandem.h>

#include <vector>

namespace tt {

struct UnaryCase {
  tandem::UnaryOp op;
  const char* name;
  tandem::Tensor (*fn)(const tandem::Tensor&);
};
inline const std::vector<UnaryCase>& unary_cases() {
#define TANDEM_TEST_UNARY_CASE_(name, Enum) UnaryCase{tandem::UnaryOp::Enum, #name, &tandem::name},
  static const std::vector<UnaryCase> cases = {TANDEM_UNARY_OPS(TANDEM_TEST_UNARY_CASE_)};
#undef TANDEM_TEST_UNARY_CASE_
  return cases;
}

// The named public function of each binary op, e.g. tandem::add(a, b).
inline tandem::Tensor call_named(tandem::BinaryOp op, const tandem::Tensor& a,
                                 const tandem::Tensor& b) {
  switch (op) {
#define TANDEM_TEST_CALL_(name, Enum) \
  case tandem::BinaryOp::Enum:        \
    return tandem::name(a, b);
    TANDEM_BINARY_OPS(TANDEM_TEST_CALL_)
#undef TANDEM_TEST_CALL_
  }
  return tandem::Tensor();
}
inline tandem::Tensor call_named_scalar(tandem::BinaryOp op, const tandem::Tensor& a, double s) {
  switch (op) {
#define TANDEM_TEST_CALL_(name, Enum) \
  case tandem::BinaryOp::Enum:        \
    return tandem::name(a, s);
    TANDEM_BINARY_OPS(TANDEM_TEST_CALL_)
#undef TANDEM_TEST_CALL_
  }
  return tandem::Tensor();
}

struct ReduceCase {
  tandem::ReduceOp op;
  const char* name;
};
inline const std::vector<ReduceCase>& reduce_cases() {
#define TANDEM_TEST_REDUCE_CASE_(name, Enum) ReduceCase{tandem::ReduceOp::Enum, #name},
  static const std::vector<ReduceCase> cases = {TANDEM_REDUCE_OPS(TANDEM_TEST_REDUCE_CASE_)};
#undef TANDEM_TEST_REDUCE_CASE_
  return cases;
}
inline tandem::Tensor call_reduce_all(tandem::ReduceOp op, const tandem::Tensor& x) {
  switch (op) {
#define TANDEM_TEST_CALL_(name, Enum) \
  case tandem::ReduceOp::Enum:        \
    return tandem::name(x);
    TANDEM_REDUCE_OPS(TANDEM_TEST_CALL_)
#undef TANDEM_TEST_CALL_
  }
  return tandem::Tensor();
}
inline tandem::Tensor call_reduce_dim(tandem::ReduceOp op, const tandem::Tensor& x, int64_t dim,
                                      bool keepdim) {
  switch (op) {
#define TANDEM_TEST_CALL_(name, Enum) \
  case tandem::ReduceOp::Enum:        \
    return tandem::name(x, dim, keepdim);
    TANDEM_REDUCE_OPS(TANDEM_TEST_CALL_)
#undef TANDEM_TEST_CALL_
  }
  return tandem::Tensor();
}
// Mean needs a floating dtype; the other reductions take every dtype.
inline bool reduce_supports(tandem::ReduceOp op, tandem::DType dt) {
  return op != tandem::ReduceOp::Mean || tandem::is_floating(dt);
}

}  // namespace tt
