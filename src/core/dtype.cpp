// Names and sizes of dtypes, devices and ops.
#include "tandem/dtype.h"

#include <cstdlib>

#include "tandem/device.h"
#include "tandem/op_list.h"

namespace tandem {

size_t element_size(DType t) {
  switch (t) {
    case kFloat32:
      return 4;
    case kFloat64:
      return 8;
    case kInt32:
      return 4;
    case kInt64:
      return 8;
    case kUInt8:
      return 1;
  }
  TANDEM_FAIL("element_size: unknown dtype");
}

const char* dtype_name(DType t) {
  switch (t) {
    case kFloat32:
      return "float32";
    case kFloat64:
      return "float64";
    case kInt32:
      return "int32";
    case kInt64:
      return "int64";
    case kUInt8:
      return "uint8";
  }
  return "unknown";
}

bool is_floating(DType t) { return t == kFloat32 || t == kFloat64; }

std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }

Device::Device(const std::string& spec) : type_(kCPU), index_(0) {
  if (spec == "cpu") return;
  if (spec.rfind("cuda", 0) == 0) {
    type_ = kCUDA;
    if (spec.size() == 4) return;
    TANDEM_CHECK(spec[4] == ':' && spec.size() > 5, "Device: invalid device string '", spec,
                 "' (expected cpu, cuda or cuda:N)");
    char* end = nullptr;
    const long idx = std::strtol(spec.c_str() + 5, &end, 10);
    TANDEM_CHECK(*end == '\0' && idx >= 0 && idx < 1024, "Device: invalid device string '", spec,
                 "' (expected cpu, cuda or cuda:N)");
    index_ = static_cast<int>(idx);
    return;
  }
  TANDEM_FAIL("Device: invalid device string '", spec, "' (expected cpu, cuda or cuda:N)");
}

std::string Device::str() const {
  return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index_);
}

std::ostream& operator<<(std::ostream& os, const Device& d) { return os << d.str(); }

#define TANDEM_NAME_CASE_(name, Enum) \
  case Op::Enum:                      \
    return #name;

const char* op_name(UnaryOp op) {
  using Op = UnaryOp;
  switch (op) { TANDEM_UNARY_OPS(TANDEM_NAME_CASE_) TANDEM_PARAM_UNARY_OPS(TANDEM_NAME_CASE_) }
  return "unknown";
}
const char* op_name(BinaryOp op) {
  using Op = BinaryOp;
  switch (op) { TANDEM_BINARY_OPS(TANDEM_NAME_CASE_) }
  return "unknown";
}
const char* op_name(ReduceOp op) {
  using Op = ReduceOp;
  switch (op) { TANDEM_REDUCE_OPS(TANDEM_NAME_CASE_) }
  return "unknown";
}
#undef TANDEM_NAME_CASE_

}  // namespace tandem
