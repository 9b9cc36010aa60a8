// Optimizer step benchmarks: Adam (float32) over 10M and 100M parameters split
// into a realistic mix of tensors (transformer-like blocks: square and 4x
// projection matrices, biases, norm weights, plus one embedding-like tensor
// holding the rest), reported as bytes/s where one step moves
//   param + grad + exp_avg + exp_avg_sq read, param + exp_avg + exp_avg_sq written
// = 28 bytes per parameter. Cases:
//   adam_step/cuda/N          optim::Adam::step() (multi-tensor kernel + host work)
//   adam_multi_tensor/cuda/N  cuda::adam_step, one launch per up to 96 tensors
//   adam_per_tensor/cuda/N    cuda::adam_step, one launch per tensor
//   copy_d2d/cuda/N           cudaMemcpyAsync device-to-device of 2N floats in
//                             this binary: the bandwidth ceiling to compare with
//   adam_step/cpu/10M         optim::Adam::step() on the CPU
// CUDA cases exist only in a CUDA build and skip without a device.
#include <string>
#include <vector>

#include "bench_util.h"
#include "core/optim_math.h"

namespace {

namespace tb = tandem_bench;
using tandem::Device;
using tandem::Tensor;

constexpr int64_t kAdamBytesPerParam = 7 * 4;
constexpr int64_t k10M = 10'000'000;
[[maybe_unused]] constexpr int64_t k100M = 100'000'000;  // CUDA cases only

// Tensor sizes summing to n: blocks of hidden size h (4 h x h attention
// projections, h x 4h and 4h x h MLP matrices, their biases, two norm
// weights and biases) while they fit, then one tensor with the rest.
std::vector<int64_t> realistic_sizes(int64_t n) {
  const int64_t h = n >= 50'000'000 ? 1024 : 512;
  const std::vector<int64_t> block = {h * h,     h,     h * h,     h, h * h, h, h * h, h,
                                      h * 4 * h, 4 * h, 4 * h * h, h, h,     h, h,     h};
  int64_t block_total = 0;
  for (int64_t s : block) block_total += s;
  std::vector<int64_t> sizes;
  int64_t total = 0;
  while (total + block_total <= n) {
    sizes.insert(sizes.end(), block.begin(), block.end());
    total += block_total;
  }
  if (total < n) sizes.push_back(n - total);
  return sizes;
}

struct AdamProblem {
  std::vector<Tensor> params;
  std::vector<tandem::FusedSlot> slots;  // param, grad, exp_avg, exp_avg_sq
};

AdamProblem make_problem(int64_t n, Device d) {
  AdamProblem prob;
  tandem::Generator gen(2024);
  const auto opts = tandem::dtype(tandem::kFloat32).device(d);
  for (int64_t s : realistic_sizes(n)) {
    Tensor p = tandem::randn({s}, opts, &gen).set_requires_grad(true);
    Tensor g = tandem::randn({s}, opts, &gen);
    p.mutable_grad() = g;
    prob.params.push_back(p);
    prob.slots.push_back(
        {p, g, {tandem::zeros({s}, opts), tandem::zeros({s}, opts), Tensor()}, 1e-3, 0.5});
  }
  return prob;
}

void set_bytes(benchmark::State& state, int64_t n) {
  state.SetBytesProcessed(state.iterations() * n * kAdamBytesPerParam);
  state.counters["params"] = static_cast<double>(n);
}

void adam_step_case(benchmark::State& state, Device d) {
  tb::guarded(state, [&] {
    if (d.is_cuda() && !tb::require_cuda(state)) return;
    const int64_t n = state.range(0);
    AdamProblem prob = make_problem(n, d);
    state.counters["tensors"] = static_cast<double>(prob.params.size());
    tandem::optim::Adam opt(prob.params, tandem::optim::AdamOptions(1e-3));
    tb::run_on(state, d, [&] { opt.step(); });
    set_bytes(state, n);
  });
}

#if TANDEM_WITH_CUDA
void adam_kernel_case(benchmark::State& state, tandem::FusedLaunch launch) {
  tb::guarded(state, [&] {
    if (!tb::require_cuda(state)) return;
    const int64_t n = state.range(0);
    AdamProblem prob = make_problem(n, tb::cuda_device());
    state.counters["tensors"] = static_cast<double>(prob.slots.size());
    const tandem::AdamHyper hyper{
        1e-3, 0.9, 0.999, 1e-8, 0.0, tandem::AdamDecay::L2, tandem::Amsgrad::Off};
    tb::run_cuda(state, [&] { tandem::cuda::adam_step(prob.slots, hyper, launch); });
    set_bytes(state, n);
  });
}

void copy_case(benchmark::State& state) {
  tb::guarded(state, [&] {
    if (!tb::require_cuda(state)) return;
    const int64_t n = 2 * state.range(0);
    const auto opts = tandem::dtype(tandem::kFloat32).device(tb::cuda_device());
    Tensor src = tandem::ones({n}, opts);
    Tensor dst = tandem::empty({n}, opts);
    const size_t bytes = src.nbytes();
    tb::run_cuda(state, [&] {
      tb::check_cuda(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), bytes,
                                     cudaMemcpyDeviceToDevice, tb::current_stream()),
                     "cudaMemcpyAsync");
    });
    state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(2 * bytes));
  });
}
#endif

void register_all() {
  benchmark::RegisterBenchmark("adam_step/cpu",
                               [](benchmark::State& s) { adam_step_case(s, tb::cpu_device()); })
      ->Arg(k10M)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
#if TANDEM_WITH_CUDA
  if (!tandem::cuda::is_available()) return;  // no device: no CUDA cases
  benchmark::RegisterBenchmark("copy_d2d/cuda", copy_case)
      ->Arg(k10M)
      ->Arg(k100M)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("adam_step/cuda",
                               [](benchmark::State& s) { adam_step_case(s, tb::cuda_device()); })
      ->Arg(k10M)
      ->Arg(k100M)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark(
      "adam_multi_tensor/cuda",
      [](benchmark::State& s) { adam_kernel_case(s, tandem::FusedLaunch::MultiTensor); })
      ->Arg(k10M)
      ->Arg(k100M)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark(
      "adam_per_tensor/cuda",
      [](benchmark::State& s) { adam_kernel_case(s, tandem::FusedLaunch::PerTensor); })
      ->Arg(k10M)
      ->Arg(k100M)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
#endif
}

}  // namespace

int main(int argc, char** argv) { return tandem_bench::bench_main(argc, argv, register_all); }
