// Image decoding helpers shared by the image-folder reader and the CIFAR-10
// import (src/data/image.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tandem {
namespace data {
namespace detail {

// Decodes a JPEG or PNG. With dst == nullptr only reports its size; else checks
// it is height x width and writes uint8 [3, height, width] planes to dst.
void decode_image_into(const std::string& path, int64_t height, int64_t width, uint8_t* dst,
                       int* got_height, int* got_width);
// Decodes files[i] into dst + i * 3 * height * width on `threads` threads (0:
// all cores); throws the error of the first failing file (by index).
void decode_all(const std::vector<std::string>& files, int64_t height, int64_t width, uint8_t* dst,
                int threads);
// The sub-folders of root (not hidden), sorted by name; throws when none.
std::vector<std::string> list_class_folders(const std::string& root, const char* what);

}  // namespace detail
}  // namespace data
}  // namespace tandem
