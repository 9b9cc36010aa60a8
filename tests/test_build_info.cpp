// tandem::build_info(): the configuration it reports matches config.h and the
// library's own queries, and without a usable GPU it says why.
#include <gtest/gtest.h>
#include <oneapi/dnnl/dnnl.h>
#include <tandem/tandem.h>

#include <string>

namespace {

using namespace tandem;  // NOLINT

TEST(BuildInfo, ReportsTheConfiguration) {
  const BuildInfo info = build_info();
  EXPECT_EQ(info.version, TANDEM_VERSION);
  EXPECT_FALSE(info.build_type.empty());
  EXPECT_NE(info.build_type, "unknown");
  EXPECT_FALSE(info.compiler.empty());
  EXPECT_GE(info.cpu_threads, 1);
  EXPECT_EQ(info.blas, "OpenBLAS");
  EXPECT_NE(info.blas_config.find("OpenBLAS"), std::string::npos) << info.blas_config;
  EXPECT_GE(info.blas_threads, 1);
  EXPECT_EQ(info.cuda_built, cuda::is_built());
  EXPECT_EQ(info.cuda_built, TANDEM_WITH_CUDA == 1);
  EXPECT_EQ(static_cast<int>(info.gpus.size()), cuda::device_count());
  if (info.cuda_built) {
    EXPECT_FALSE(info.cuda_architectures.empty());
    EXPECT_FALSE(info.cuda_runtime.empty());
    EXPECT_FALSE(info.cudnn.empty());
    const int v = cuda::cudnn_version();
    EXPECT_EQ(info.cudnn, std::to_string(v / 10000) + "." + std::to_string((v % 10000) / 100) +
                              "." + std::to_string(v % 100));
  } else {
    EXPECT_TRUE(info.cuda_architectures.empty());
    EXPECT_TRUE(info.gpus.empty());
  }
  const std::string text = info.to_string();
  EXPECT_NE(text.find("tandem:             " + info.version), std::string::npos) << text;
  EXPECT_NE(text.find("BLAS (float64):     OpenBLAS ("), std::string::npos) << text;
  // oneDNN's version as the library reports it, and the ISA its kernels use.
  EXPECT_EQ(info.onednn.rfind(std::to_string(dnnl_version()->major) + ".", 0), 0u) << info.onednn;
  EXPECT_NE(info.onednn.find(", ISA "), std::string::npos) << info.onednn;
  EXPECT_EQ(info.onednn.find("ISA other"), std::string::npos) << info.onednn;
  EXPECT_NE(text.find("oneDNN:             " + info.onednn), std::string::npos) << text;
  EXPECT_NE(text.find(info.cuda_built ? "CUDA backend built: yes" : "CUDA backend built: no"),
            std::string::npos)
      << text;
}

// On a machine without a usable GPU (like the CI machine) it must say why.
TEST(BuildInfo, SaysWhyCudaCannotRun) {
  const BuildInfo info = build_info();
  if (info.cuda_usable) {
    EXPECT_TRUE(cuda::is_available());
    EXPECT_TRUE(info.cuda_unusable_reason.empty());
    EXPECT_FALSE(info.gpus.empty());
    EXPECT_NE(info.to_string().find("CUDA usable:        yes"), std::string::npos);
    return;
  }
  EXPECT_FALSE(cuda::is_available());
  if (!info.cuda_built) {
    EXPECT_NE(info.cuda_unusable_reason.find("built without the CUDA backend"), std::string::npos)
        << info.cuda_unusable_reason;
  } else {
    EXPECT_NE(info.cuda_unusable_reason.find("no CUDA device is visible (cudaGetDeviceCount: "),
              std::string::npos)
        << info.cuda_unusable_reason;
  }
  EXPECT_NE(info.to_string().find("CUDA usable:        no: " + info.cuda_unusable_reason),
            std::string::npos)
      << info.to_string();
}

}  // namespace
