// Where a tensor lives: the CPU, or a CUDA device with an index.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

namespace tandem {

enum class DeviceType : int8_t { CPU, CUDA };

constexpr DeviceType kCPU = DeviceType::CPU;
constexpr DeviceType kCUDA = DeviceType::CUDA;

class Device {
 public:
  // Implicit from a DeviceType so that `t.to(kCUDA)` reads like libtorch.
  Device(DeviceType type = kCPU, int index = 0)
      : type_(type), index_(type == kCPU ? 0 : index) {}  // NOLINT
  // Parses "cpu", "cuda", "cuda:1".
  explicit Device(const std::string& spec);

  DeviceType type() const { return type_; }
  int index() const { return index_; }
  bool is_cpu() const { return type_ == kCPU; }
  bool is_cuda() const { return type_ == kCUDA; }
  std::string str() const;  // "cpu", "cuda:0"

  bool operator==(const Device& o) const { return type_ == o.type_ && index_ == o.index_; }
  bool operator!=(const Device& o) const { return !(*this == o); }

 private:
  DeviceType type_;
  int index_;
};

std::ostream& operator<<(std::ostream& os, const Device& d);

}  // namespace tandem
