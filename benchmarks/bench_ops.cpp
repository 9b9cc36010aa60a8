// Memory-bound op benchmarks: each op family on the CPU and (in a CUDA build,
// when a device is usable) on CUDA, float32, at 1M / 16M / 256M elements (CUDA
// also 64M), each call timed alone with the cache flushed first
// (tb::run_flushed). Every case reports bytes_per_second counting the minimum
// traffic the op needs (inputs read once, output written once) and vs_copy,
// that rate over copy_raw's at the same device and size (measured first, in
// the same run): see benchmarks/README.md for the targets.
//
// The unary ops come from their records (the op registry, tandem/check.h): each op's
// forward (<name>) and, where it is differentiable, forward + backward through
// autograd (<name>_fwd_bwd), on inputs from its first variant's domain; the
// binary ops likewise (<name>_same, operands of one shape). A new op is timed
// here once it has a record. Every family's large registry records (conv,
// pooling, batch norm, GEMM, softmax, losses, reductions, permute, ...) are
// timed as record/<name>/<device>, on the inputs `tandem check` uses.
//
// Names: <op>/<device>/<elements>/iterations:<calls>/manual_time.
#include <tandem/check.h>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "bench_util.h"
#include "op_records.h"

namespace {

namespace tb = tandem_bench;
using tandem::Device;
using tandem::Tensor;

constexpr int64_t kFloatBytes = 4;
// Timed calls per case (each after a cache flush).
constexpr int64_t kCpuCalls = 10;
constexpr int64_t kCudaCalls = 50;

// The body of one case: given the state (range(0) = element count) and the
// device, sets up inputs, times the op with tb::run_on and returns the bytes
// moved per call.
using Body = std::function<int64_t(benchmark::State&, Device)>;

tandem::TensorOptions f32(Device d) { return tandem::dtype(tandem::kFloat32).device(d); }

Tensor random_input(const tandem::Shape& shape, Device d) {
  tandem::Generator gen(2024);
  return tandem::randn(shape, f32(d), &gen);
}

// Seconds timed by the last time_op call (read by register_op's wrapper).
double g_timed_seconds = 0.0;
// copy_raw's bytes/s per "<device>/<elements>", for the vs_copy counter.
std::map<std::string, double>& copy_rates() {
  static std::map<std::string, double> rates;
  return rates;
}

// Times fn, one call per iteration with the cache flushed (tb::run_flushed).
template <typename Fn>
void time_op(benchmark::State& state, Device d, Fn&& fn) {
  g_timed_seconds = tb::run_flushed(state, d, fn);
}

// Uniform in the variant's domain [lo, hi).
Tensor domain_input(const tandem::Shape& shape, const tt::UnaryVariant& v, Device d) {
  tandem::Generator gen(2024);
  return tandem::rand(shape, f32(d), &gen) * (v.hi - v.lo) + v.lo;
}

void register_op(const std::string& name, const Body& body) {
  auto wrap = [body, name](Device device) {
    return [body, device, name](benchmark::State& state) {
      tb::guarded(state, [&] {
        if (device.is_cuda() && !tb::require_cuda(state)) return;
        g_timed_seconds = 0.0;
        const int64_t bytes = body(state, device);
        state.SetBytesProcessed(state.iterations() * bytes);
        if (g_timed_seconds <= 0.0) return;
        const double rate = static_cast<double>(state.iterations() * bytes) / g_timed_seconds;
        const std::string key = device.str() + "/" + std::to_string(state.range(0));
        if (name == "copy_raw") copy_rates()[key] = rate;
        const auto copy = copy_rates().find(key);
        if (copy != copy_rates().end()) state.counters["vs_copy"] = rate / copy->second;
      });
    };
  };
  // TANDEM_BENCH_QUICK=1 (the GPU bundle's short run): 16M elements only.
  const char* quick_env = std::getenv("TANDEM_BENCH_QUICK");
  const bool quick = quick_env != nullptr && std::string(quick_env) == "1";
  auto* cpu = benchmark::RegisterBenchmark((name + "/cpu").c_str(), wrap(tb::cpu_device()));
  for (int shift : {20, 24, 28})
    if (!quick || shift == 24) cpu->Arg(int64_t{1} << shift);
  // A fixed count of cold calls: each is timed alone, so a time-based count
  // would flush the cache thousands of times for the 1M cases.
  cpu->Iterations(kCpuCalls)->UseManualTime()->Unit(benchmark::kMicrosecond);
#if TANDEM_WITH_CUDA
  auto* gpu = benchmark::RegisterBenchmark((name + "/cuda").c_str(), wrap(tb::cuda_device()));
  for (int shift : {20, 24, 26, 28})
    if (!quick || shift == 24) gpu->Arg(int64_t{1} << shift);
  gpu->Iterations(kCudaCalls)->UseManualTime()->Unit(benchmark::kMicrosecond);
#endif
}

// [n] viewed as [n / cols, cols].
tandem::Shape rows_of(int64_t n, int64_t cols) { return {n / cols, cols}; }

// The op registry's large records (tandem/check.h, quick = false: one per
// family's larger case), float32, as "record/NAME/cpu" and ".../cuda": the
// inputs and the call `tandem check` holds against the CPU, timed here.
void register_record(const tandem::check::OpRecord& r, Device device) {
  const std::string name = "record/" + r.name + "/" + (device.is_cpu() ? "cpu" : "cuda");
  auto* b = benchmark::RegisterBenchmark(name.c_str(), [rec = &r, device](benchmark::State& state) {
    tb::guarded(state, [&] {
      if (device.is_cuda() && !tb::require_cuda(state)) return;
      std::vector<Tensor> in;
      int64_t bytes = 0;
      for (const Tensor& t : tandem::check::draw_inputs(*rec, tandem::kFloat32, 1)) {
        in.push_back(t.to(device));
        bytes += static_cast<int64_t>(t.nbytes());
      }
      Tensor y;
      time_op(state, device, [&] { y = rec->fn(in); });
      state.SetBytesProcessed(state.iterations() * (bytes + static_cast<int64_t>(y.nbytes())));
    });
  });
  b->Iterations(device.is_cpu() ? kCpuCalls : kCudaCalls)
      ->UseManualTime()
      ->Unit(benchmark::kMicrosecond);
}
void register_records() {
  for (const tandem::check::OpRecord& r : tandem::check::op_records()) {
    if (r.quick || r.tol == tandem::check::TolClass::Statistical) continue;
    register_record(r, tb::cpu_device());
#if TANDEM_WITH_CUDA
    register_record(r, tb::cuda_device());
#endif
  }
}

void register_all() {
  // ---- Copy baselines -------------------------------------------------------
  // The raw copy: std::memcpy on the CPU, cudaMemcpyAsync device-to-device.
  register_op("copy_raw", [](benchmark::State& state, Device d) {
    const int64_t n = state.range(0);
    Tensor src = random_input({n}, d);
    Tensor dst = tandem::empty({n}, f32(d));
    const size_t bytes = src.nbytes();
    if (d.is_cpu()) {
      time_op(state, d, [&] {
        std::memcpy(dst.raw_data(), src.raw_data(), bytes);
        benchmark::ClobberMemory();
      });
    } else {
#if TANDEM_WITH_CUDA
      time_op(state, d, [&] {
        tb::check_cuda(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), bytes,
                                       cudaMemcpyDeviceToDevice, tb::current_stream()),
                       "cudaMemcpyAsync");
      });
#endif
    }
    return 2 * n * kFloatBytes;
  });
  // The library's copy into an existing tensor (Tensor::copy_).
  register_op("copy", [](benchmark::State& state, Device d) {
    const int64_t n = state.range(0);
    Tensor src = random_input({n}, d);
    Tensor dst = tandem::empty({n}, f32(d));
    time_op(state, d, [&] { dst.copy_(src); });
    return 2 * n * kFloatBytes;
  });
  // clone(): copy plus an allocation (from the cache on CUDA).
  register_op("clone", [](benchmark::State& state, Device d) {
    const int64_t n = state.range(0);
    Tensor src = random_input({n}, d);
    Tensor out;
    time_op(state, d, [&] { out = src.clone(); });
    return 2 * n * kFloatBytes;
  });

  // ---- Elementwise ----------------------------------------------------------
  // Unary ops from their records: forward, and forward + backward.
  for (const tt::UnaryRecord& r : tt::unary_records()) {
    const tt::UnaryRecord* rec = &r;
    register_op(r.name, [rec](benchmark::State& state, Device d) {
      const int64_t n = state.range(0);
      Tensor x = domain_input({n}, rec->variants[0], d);
      Tensor y;
      time_op(state, d, [&] { y = rec->call(x, rec->variants[0]); });
      return 2 * n * kFloatBytes;
    });
    if (!r.differentiable) continue;
    // Forward (x read, y written) and backward (the output's gradient and x or
    // y read, x's gradient written).
    register_op(std::string(r.name) + "_fwd_bwd", [rec](benchmark::State& state, Device d) {
      const int64_t n = state.range(0);
      Tensor x = domain_input({n}, rec->variants[0], d).set_requires_grad(true);
      Tensor g = random_input({n}, d);
      std::vector<Tensor> grads;
      time_op(state, d,
              [&] { grads = tandem::autograd::grad({rec->call(x, rec->variants[0])}, {x}, {g}); });
      return 5 * n * kFloatBytes;
    });
  }
  // Binary ops from their records, same shapes (a op b): a and b read, the
  // result written (uint8 for comparisons).
  for (const tt::BinaryRecord& r : tt::binary_records()) {
    const tandem::BinaryOp op = r.op;
    register_op(std::string(r.name) + "_same", [op](benchmark::State& state, Device d) {
      const int64_t n = state.range(0);
      Tensor a = random_input({n}, d);
      Tensor b = random_input({n}, d) + 3.0;  // away from 0 for div
      Tensor y;
      time_op(state, d, [&] { y = tandem::binary(op, a, b); });
      return 2 * n * kFloatBytes + n * static_cast<int64_t>(tandem::element_size(y.dtype()));
    });
  }
  // [R, 1024] + [1024]: a bias added to every row.
  register_op("add_bcast_row", [](benchmark::State& state, Device d) {
    const int64_t n = state.range(0);
    Tensor a = random_input(rows_of(n, 1024), d);
    Tensor b = random_input({1024}, d);
    Tensor y;
    time_op(state, d, [&] { y = tandem::add(a, b); });
    return 2 * n * kFloatBytes;
  });
  // [R, 1024] + [R, 1]: one value per row, broadcast along it.
  register_op("add_bcast_col", [](benchmark::State& state, Device d) {
    const int64_t n = state.range(0);
    Tensor a = random_input(rows_of(n, 1024), d);
    Tensor b = random_input({n / 1024, 1}, d);
    Tensor y;
    time_op(state, d, [&] { y = tandem::add(a, b); });
    return 2 * n * kFloatBytes;
  });

  // ---- Reductions -----------------------------------------------------------
  register_op("sum_all", [](benchmark::State& state, Device d) {
    const int64_t n = state.range(0);
    Tensor x = random_input({n}, d);
    Tensor y;
    time_op(state, d, [&] { y = tandem::sum(x); });
    return n * kFloatBytes;
  });
  // [R, 1024] summed over dim 1 (along rows) and dim 0 (down columns).
  register_op("sum_dim1", [](benchmark::State& state, Device d) {
    const int64_t n = state.range(0);
    Tensor x = random_input(rows_of(n, 1024), d);
    Tensor y;
    time_op(state, d, [&] { y = tandem::sum(x, 1); });
    return n * kFloatBytes;
  });
  register_op("sum_dim0", [](benchmark::State& state, Device d) {
    const int64_t n = state.range(0);
    Tensor x = random_input(rows_of(n, 1024), d);
    Tensor y;
    time_op(state, d, [&] { y = tandem::sum(x, 0); });
    return n * kFloatBytes;
  });

  // ---- Softmax over rows of [n / 1000, 1000] (ImageNet-sized logits) ------------
  register_op("softmax_rows", [](benchmark::State& state, Device d) {
    const int64_t rows = state.range(0) / 1000;
    Tensor x = random_input({rows, 1000}, d);
    Tensor y;
    time_op(state, d, [&] { y = tandem::softmax(x, 1); });
    return 2 * rows * 1000 * kFloatBytes;
  });
  register_op("log_softmax_rows", [](benchmark::State& state, Device d) {
    const int64_t rows = state.range(0) / 1000;
    Tensor x = random_input({rows, 1000}, d);
    Tensor y;
    time_op(state, d, [&] { y = tandem::log_softmax(x, 1); });
    return 2 * rows * 1000 * kFloatBytes;
  });

  // ---- Softmax over dim 0 of a tall, narrow [n / 3, 3] tensor (chunked columns) ----
  register_op("softmax_dim0_tall", [](benchmark::State& state, Device d) {
    const int64_t rows = state.range(0) / 3;
    Tensor x = random_input({rows, 3}, d);
    Tensor y;
    time_op(state, d, [&] { y = tandem::softmax(x, 0); });
    return 2 * rows * 3 * kFloatBytes;
  });
  register_op("log_softmax_dim0_tall", [](benchmark::State& state, Device d) {
    const int64_t rows = state.range(0) / 3;
    Tensor x = random_input({rows, 3}, d);
    Tensor y;
    time_op(state, d, [&] { y = tandem::log_softmax(x, 0); });
    return 2 * rows * 3 * kFloatBytes;
  });

  // ---- Dropout (p = 0.1) ----------------------------------------------------
  // The mask alone: n floats written.
  register_op("dropout_mask", [](benchmark::State& state, Device d) {
    const int64_t n = state.range(0);
    tandem::Generator gen(7);
    Tensor m;
    time_op(state, d, [&] { m = tandem::dropout_mask({n}, 0.1, f32(d), &gen); });
    return n * kFloatBytes;
  });
  // dropout(x): at least x read and the output written.
  register_op("dropout", [](benchmark::State& state, Device d) {
    const int64_t n = state.range(0);
    Tensor x = random_input({n}, d);
    tandem::Generator gen(7);
    Tensor y;
    time_op(state, d, [&] { y = tandem::dropout(x, 0.1, true, &gen); });
    return 2 * n * kFloatBytes;
  });
  register_records();
}

}  // namespace

int main(int argc, char** argv) { return tandem_bench::bench_main(argc, argv, register_all); }
