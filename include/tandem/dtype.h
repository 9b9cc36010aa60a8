// Element types. DType is an enum so that float16/bfloat16 can be added later;
// TANDEM_DISPATCH_* turn a runtime DType into a compile-time scalar_t.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>

#include "tandem/error.h"

namespace tandem {

enum class DType : int8_t { Float32, Float64, Int32, Int64, UInt8 };

constexpr DType kFloat32 = DType::Float32;
constexpr DType kFloat64 = DType::Float64;
constexpr DType kFloat = DType::Float32;
constexpr DType kDouble = DType::Float64;
constexpr DType kInt32 = DType::Int32;
constexpr DType kInt64 = DType::Int64;
constexpr DType kLong = DType::Int64;
constexpr DType kUInt8 = DType::UInt8;

size_t element_size(DType t);
const char* dtype_name(DType t);  // "float32", "int64", ...
bool is_floating(DType t);
std::ostream& operator<<(std::ostream& os, DType t);

template <typename T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr DType value = kFloat32;
};
template <>
struct dtype_of<double> {
  static constexpr DType value = kFloat64;
};
template <>
struct dtype_of<int32_t> {
  static constexpr DType value = kInt32;
};
template <>
struct dtype_of<int64_t> {
  static constexpr DType value = kInt64;
};
template <>
struct dtype_of<uint8_t> {
  static constexpr DType value = kUInt8;
};

// Function forms of the dispatch macros, for code that needs #pragma inside the
// body (OpenMP) or nests two dispatches:
//   dispatch_all(t.dtype(), "op", [&](auto tag) { using T = decltype(tag); ... });
// `tag` is a value-initialised scalar of the element type.
template <typename F>
void dispatch_floating(DType t, const char* name, F&& f) {
  switch (t) {
    case DType::Float32:
      f(float{});
      return;
    case DType::Float64:
      f(double{});
      return;
    default:
      detail::throw_error(detail::str_cat(name, ": dtype ", dtype_name(t),
                                          " is not supported (expected float32 or float64)"),
                          __FILE__, __LINE__);
  }
}

template <typename F>
void dispatch_all(DType t, const char* name, F&& f) {
  switch (t) {
    case DType::Float32:
      f(float{});
      return;
    case DType::Float64:
      f(double{});
      return;
    case DType::Int32:
      f(int32_t{});
      return;
    case DType::Int64:
      f(int64_t{});
      return;
    case DType::UInt8:
      f(uint8_t{});
      return;
  }
  detail::throw_error(detail::str_cat(name, ": unknown dtype"), __FILE__, __LINE__);
}

template <typename F>
void dispatch_index(DType t, const char* name, F&& f) {
  switch (t) {
    case DType::Int32:
      f(int32_t{});
      return;
    case DType::Int64:
      f(int64_t{});
      return;
    default:
      detail::throw_error(detail::str_cat(name, ": index dtype ", dtype_name(t),
                                          " is not supported (expected int64 or int32)"),
                          __FILE__, __LINE__);
  }
}

}  // namespace tandem

// Macro forms, for call sites that want `scalar_t` in scope without naming a
// tag: TANDEM_DISPATCH_FLOATING(dtype, "op", [&] { kernel<scalar_t>(...); });
// They expand to the functions above.
#define TANDEM_DISPATCH_IMPL_(FN, DT, NAME, ...)     \
  ::tandem::FN((DT), (NAME), [&](auto tandem_tag_) { \
    using scalar_t = decltype(tandem_tag_);          \
    (__VA_ARGS__)();                                 \
  })
#define TANDEM_DISPATCH_FLOATING(DT, NAME, ...) \
  TANDEM_DISPATCH_IMPL_(dispatch_floating, DT, NAME, __VA_ARGS__)
#define TANDEM_DISPATCH_ALL(DT, NAME, ...) \
  TANDEM_DISPATCH_IMPL_(dispatch_all, DT, NAME, __VA_ARGS__)
// Index dtypes (int32 / int64), e.g. for index_select, gather, one_hot.
#define TANDEM_DISPATCH_INDEX(DT, NAME, ...) \
  TANDEM_DISPATCH_IMPL_(dispatch_index, DT, NAME, __VA_ARGS__)
