// Decoding JPEG (libjpeg-turbo) and PNG (libpng) files into uint8 [3, H, W], and
// the image-folder data set (class = sub-folder), decoded on several threads.
// jpeglib.h needs size_t and FILE declared first.
#include "data/image.h"

#include <jpeglib.h>
#include <png.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <csetjmp>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>

#include "data/data_internal.h"
#include "tandem/data.h"

namespace tandem {
namespace data {

namespace fs = std::filesystem;

namespace {

struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_error_exit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// Decodes into interleaved RGB; returns false with err->message set on failure.
// Only trivially destructible locals live between setjmp and longjmp.
bool jpeg_decode_rgb(const unsigned char* data, size_t size, std::vector<uint8_t>* rgb, int* height,
                     int* width, JpegError* err) {
  jpeg_decompress_struct cinfo;
  cinfo.err = jpeg_std_error(&err->mgr);
  err->mgr.error_exit = jpeg_error_exit;
  err->message[0] = '\0';
  if (setjmp(err->jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  cinfo.out_color_space = JCS_RGB;  // grey and YCbCr/CMYK converted by libjpeg
  jpeg_start_decompress(&cinfo);
  *height = static_cast<int>(cinfo.output_height);
  *width = static_cast<int>(cinfo.output_width);
  rgb->resize(static_cast<size_t>(*height) * static_cast<size_t>(*width) * 3);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = rgb->data() + static_cast<size_t>(cinfo.output_scanline) * *width * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

void png_decode_rgb(const std::string& path, const std::string& bytes, std::vector<uint8_t>* rgb,
                    int* height, int* width) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, bytes.data(), bytes.size())) {
    TANDEM_FAIL("decode_image: ", path, ": not a valid PNG: ", image.message);
  }
  image.format = PNG_FORMAT_RGB;  // grey, palette converted; alpha composited by libpng
  *height = static_cast<int>(image.height);
  *width = static_cast<int>(image.width);
  rgb->resize(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, rgb->data(), 0, nullptr)) {
    const std::string msg = image.message;
    png_image_free(&image);
    TANDEM_FAIL("decode_image: ", path, ": corrupt PNG: ", msg);
  }
}

bool has_image_extension(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

}  // namespace

namespace detail {

void decode_image_into(const std::string& path, int64_t height, int64_t width, uint8_t* dst,
                       int* got_height, int* got_width) {
  const std::string bytes = read_whole_file(path, "decode_image");
  const auto* u = reinterpret_cast<const unsigned char*>(bytes.data());
  std::vector<uint8_t> rgb;
  int h = 0, w = 0;
  if (bytes.size() >= 3 && u[0] == 0xFF && u[1] == 0xD8 && u[2] == 0xFF) {
    JpegError err;
    if (!jpeg_decode_rgb(u, bytes.size(), &rgb, &h, &w, &err)) {
      TANDEM_FAIL("decode_image: ", path, ": corrupt JPEG: ", err.message);
    }
  } else if (bytes.size() >= 8 && png_sig_cmp(u, 0, 8) == 0) {
    png_decode_rgb(path, bytes, &rgb, &h, &w);
  } else {
    TANDEM_FAIL("decode_image: ", path, ": neither a JPEG nor a PNG file (unknown signature)");
  }
  if (got_height != nullptr) *got_height = h;
  if (got_width != nullptr) *got_width = w;
  if (dst == nullptr) return;
  TANDEM_CHECK(h == height && w == width, "decode_image: ", path, ": image is ", h, "x", w,
               " (height x width) but the data set's images are ", height, "x", width,
               "; resize the images first (no resizing is done)");
  const size_t plane = static_cast<size_t>(h) * static_cast<size_t>(w);
  for (size_t p = 0; p < plane; ++p) {
    dst[p] = rgb[3 * p];
    dst[plane + p] = rgb[3 * p + 1];
    dst[2 * plane + p] = rgb[3 * p + 2];
  }
}

std::vector<std::string> list_class_folders(const std::string& root, const char* what) {
  std::error_code ec;
  TANDEM_CHECK(fs::is_directory(root, ec), what, ": ", root, ": directory not found");
  std::vector<std::string> classes;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    if (e.is_directory() && !name.empty() && name[0] != '.') classes.push_back(name);
  }
  std::sort(classes.begin(), classes.end());
  TANDEM_CHECK(!classes.empty(), what, ": ", root,
               ": no class folders (expected root/<class>/<image>.jpg|png)");
  return classes;
}

}  // namespace detail

Tensor decode_image(const std::string& path) {
  int h = 0, w = 0;
  detail::decode_image_into(path, 0, 0, nullptr, &h, &w);
  Tensor out = empty({3, h, w}, kUInt8);
  detail::decode_image_into(path, h, w, out.data_ptr<uint8_t>(), nullptr, nullptr);
  return out;
}

ImageDataset read_image_folder(const std::string& root, const ImageFolderOptions& options) {
  const auto classes = detail::list_class_folders(root, "read_image_folder");
  std::vector<std::string> files;
  std::vector<int64_t> labels;
  for (size_t c = 0; c < classes.size(); ++c) {
    std::vector<std::string> in_class;
    for (const auto& e : fs::directory_iterator(fs::path(root) / classes[c])) {
      const std::string name = e.path().filename().string();
      if (e.is_regular_file() && !name.empty() && name[0] != '.' && has_image_extension(e.path()))
        in_class.push_back(e.path().string());
    }
    TANDEM_CHECK(!in_class.empty(), "read_image_folder: ", (fs::path(root) / classes[c]).string(),
                 ": class folder has no .jpg/.jpeg/.png images");
    std::sort(in_class.begin(), in_class.end());
    files.insert(files.end(), in_class.begin(), in_class.end());
    labels.insert(labels.end(), in_class.size(), static_cast<int64_t>(c));
  }
  int64_t height = options.height, width = options.width;
  TANDEM_CHECK(height >= 0 && width >= 0 && (height == 0) == (width == 0),
               "read_image_folder: height and width must both be 0 or both positive, got ", height,
               "x", width);
  if (height == 0) {
    int h = 0, w = 0;
    detail::decode_image_into(files[0], 0, 0, nullptr, &h, &w);
    height = h;
    width = w;
  }
  ImageDataset ds;
  ds.classes = classes;
  ds.labels = from_vector(labels);
  const auto n = static_cast<int64_t>(files.size());
  ds.images = empty({n, 3, height, width}, kUInt8);
  detail::decode_all(files, height, width, ds.images.data_ptr<uint8_t>(), options.threads);
  return ds;
}

namespace detail {

void decode_all(const std::vector<std::string>& files, int64_t height, int64_t width, uint8_t* dst,
                int threads) {
  const auto n = static_cast<int64_t>(files.size());
  const int64_t per = 3 * height * width;
  int nthreads = threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency());
  nthreads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nthreads, n)));
  std::atomic<int64_t> next{0};
  std::mutex mutex;
  int64_t failed_at = n;
  std::string failure;
  auto work = [&] {
    for (int64_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
      try {
        decode_image_into(files[static_cast<size_t>(i)], height, width, dst + i * per, nullptr,
                          nullptr);
      } catch (const Error& e) {
        std::lock_guard<std::mutex> lock(mutex);
        if (i < failed_at) {
          failed_at = i;
          failure = e.message();
        }
        next.store(n);  // stop early: one error is enough
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < nthreads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  TANDEM_CHECK(failed_at == n, failure);
}

}  // namespace detail
}  // namespace data
}  // namespace tandem
