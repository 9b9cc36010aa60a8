// tandem_demo: a first look at the library. Prints how tandem was built and what
// it can see, runs matmul -> softmax -> reductions on random tensors (on the GPU
// when one is usable, else on the CPU), and times a 1024x1024 float32 matmul on
// each available device. Uses only the public API (<tandem/tandem.h>).
#include <tandem/tandem.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <iostream>

namespace {

using Clock = std::chrono::steady_clock;

// Runs c = a @ b until at least `min_seconds` have passed (after one warm-up
// call) and returns GFLOP/s. CUDA work is asynchronous, so the device is
// synchronised before the clock starts and before it stops.
double time_matmul_gflops(tandem::Device device, int64_t n, double min_seconds) {
  tandem::Generator gen(1234);
  const auto opts = tandem::dtype(tandem::kFloat32).device(device);
  tandem::Tensor a = tandem::randn({n, n}, opts, &gen);
  tandem::Tensor b = tandem::randn({n, n}, opts, &gen);
  const bool cuda = device.is_cuda();

  tandem::Tensor c = tandem::matmul(a, b);  // warm-up: library handles, caches
  if (cuda) tandem::cuda::synchronize();

  int64_t iterations = 0;
  const Clock::time_point start = Clock::now();
  double elapsed = 0.0;
  do {
    c = tandem::matmul(a, b);
    ++iterations;
    if (cuda) tandem::cuda::synchronize();
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < min_seconds);
  const double flops = 2.0 * static_cast<double>(n) * static_cast<double>(n) *
                       static_cast<double>(n) * static_cast<double>(iterations);
  return flops / elapsed / 1e9;
}

void print_config() {
  std::cout << "tandem " << TANDEM_VERSION << "\n";
  std::cout << "  CUDA backend built: " << (tandem::cuda::is_built() ? "yes" : "no") << "\n";
  const bool available = tandem::cuda::is_available();
  std::cout << "  CUDA available:     " << (available ? "yes" : "no") << "\n";
  if (available) {
    const int count = tandem::cuda::device_count();
    for (int i = 0; i < count; ++i) {
      std::cout << "  cuda:" << i << "  " << tandem::cuda::device_name(i) << "\n";
    }
  } else if (tandem::cuda::is_built()) {
    std::cout << "  (no usable CUDA device: GPU ops are off, the CPU backend is used)\n";
  }
}

void run_ops(tandem::Device device) {
  std::cout << "\n== ops on " << device << " ==\n";
  tandem::Generator gen(42);
  const auto opts = tandem::dtype(tandem::kFloat32).device(device);

  tandem::Tensor x = tandem::randn({4, 8}, opts, &gen);
  tandem::Tensor w = tandem::randn({8, 5}, opts, &gen);
  tandem::Tensor logits = tandem::matmul(x, w);
  tandem::Tensor probs = tandem::softmax(logits, 1);

  std::cout << "x @ w =\n" << logits << "\n";
  std::cout << "softmax(x @ w, dim=1) =\n" << probs << "\n";
  std::cout << "row sums of softmax (all 1) = " << probs.sum(1) << "\n";
  std::cout << "argmax per row = " << tandem::argmax(probs, 1) << "\n";
  std::cout << "mean of x @ w = " << logits.mean().item<double>()
            << ", max = " << logits.max().item<double>() << "\n";
}

void run_timings() {
  constexpr int64_t n = 1024;
  std::cout << "\n== " << n << "x" << n << " float32 matmul ==\n";
  std::printf("  cpu:    %8.1f GFLOP/s\n",
              time_matmul_gflops(tandem::Device(tandem::kCPU), n, 0.5));
  if (tandem::cuda::is_available()) {
    std::printf("  cuda:0: %8.1f GFLOP/s\n",
                time_matmul_gflops(tandem::Device(tandem::kCUDA, 0), n, 0.5));
  }
  std::fflush(stdout);
}

}  // namespace

int main() {
  try {
    print_config();
    const tandem::Device device = tandem::cuda::is_available() ? tandem::Device(tandem::kCUDA, 0)
                                                               : tandem::Device(tandem::kCPU);
    run_ops(device);
    run_timings();
    return 0;
  } catch (const tandem::Error& e) {
    std::cerr << "tandem_demo: tandem error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "tandem_demo: unexpected error: " << e.what() << "\n";
    return 1;
  }
}
