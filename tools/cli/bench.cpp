// `tandem bench train` (one model and batch, training steps timed on the CPU
// and on CUDA, warm-up excluded, peak memory, GPU/CPU ratio) and `tandem bench
// ops` (elementwise, softmax, GEMM, conv and optimizer step on both devices).
// CUDA is timed with synchronize + steady clock around the timed steps; CPU
// peak memory is the process's peak RSS (getrusage), CUDA's the caching
// allocator's peak of live tensors.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>

#include "cli.h"
#include "commands.h"

namespace cli {
namespace {

using Clock = std::chrono::steady_clock;

std::vector<td::Device> bench_devices(const std::string& which) {
  std::string reason;
  const bool cuda = cuda_usable(&reason);
  if (which == "cpu") return {td::Device(td::kCPU)};
  if (which == "cuda") {
    if (!cuda) throw UsageError("--device cuda: the CUDA backend cannot run here: " + reason);
    return {td::Device(td::kCUDA, 0)};
  }
  if (which != "auto" && which != "both") {
    throw UsageError("--device must be auto, cpu or cuda, got '" + which + "'");
  }
  if (which == "both" && !cuda)
    throw UsageError("--device both: the CUDA backend cannot run here: " + reason);
  if (!cuda) {
    std::cerr << "bench: CUDA cannot run here (" << reason << "); CPU only\n";
    return {td::Device(td::kCPU)};
  }
  return {td::Device(td::kCPU), td::Device(td::kCUDA, 0)};
}

void sync(const td::Device& d) {
  if (d.is_cuda()) td::cuda::synchronize();
}

std::string device_label(const td::Device& d) {
  return d.is_cuda() ? "cuda (" + td::cuda::device_name(0) + ")" : "cpu";
}

json bench_train_on(const td::Device& d, const BenchTrainArgs& a) {
  td::manual_seed(0);
  ModelSpec spec;
  td::nn::Sequential net = make_model(a.model, &spec);
  const td::models::Recipe r = recipe_for(spec);
  net->to(d);
  std::vector<td::Tensor> params;
  for (const td::Tensor& p : net->parameters()) {
    if (p.requires_grad()) params.push_back(p);
  }
  td::optim::SGD opt(params,
                     td::optim::SGDOptions(r.lr * 0.01).momentum(r.momentum).nesterov(r.nesterov));
  const auto fopt = td::dtype(td::kFloat32).device(d);
  td::Tensor x = td::randn({a.batch_size, 3, 32, 32}, fopt);
  td::Tensor y = td::randint(0, 10, {a.batch_size}, td::TensorOptions(td::kInt64).device(d));
  // A rank of `bench train --nproc N` (the environment says so): the steps of
  // data-parallel training, gradients all-reduced (Gloo) before each update.
  std::shared_ptr<td::dist::ProcessGroup> group;
  std::unique_ptr<td::dist::DataParallel> ddp;
  if (td::dist::env_is_distributed()) {
    group = td::dist::ProcessGroup::create(td::dist::options_from_env());
    ddp = std::make_unique<td::dist::DataParallel>(net.ptr(), group);
  }
  auto step = [&] {
    opt.zero_grad();
    td::Tensor loss = td::cross_entropy(net(x), y);
    loss.backward();
    if (ddp) ddp->finish_gradient_sync();
    opt.step();
  };
  if (d.is_cuda()) td::cuda::reset_peak_memory_stats(0);
  for (int64_t i = 0; i < a.warmup; ++i) step();
  sync(d);
  const auto t0 = Clock::now();
  for (int64_t i = 0; i < a.steps; ++i) step();
  sync(d);
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  const double ms = seconds * 1000.0 / static_cast<double>(a.steps);
  const int64_t world = group ? group->size() : 1;
  json j = {{"device", d.is_cuda() ? "cuda" : "cpu"},
            {"device_name", device_label(d)},
            {"ms_per_step", ms},
            {"ranks", world},
            {"global_batch", a.batch_size * world},
            {"images_per_second", static_cast<double>(a.batch_size * world * a.steps) / seconds}};
  if (group) group->barrier();
  if (d.is_cuda()) {
    const td::cuda::MemoryStats m = td::cuda::memory_stats(0);
    j["peak_memory_bytes"] = static_cast<double>(m.peak_allocated_bytes);
    j["peak_memory_kind"] = "CUDA caching allocator, peak of live tensors";
    j["reserved_memory_bytes"] = static_cast<double>(m.reserved_bytes);
  } else {
    j["peak_memory_bytes"] = peak_rss_bytes();
    j["peak_memory_kind"] = "process peak RSS (getrusage)";
  }
  return j;
}

// Times `fn` (after one warm-up call) `reps` times; milliseconds per call.
double time_ms(const td::Device& d, int64_t reps, const std::function<void()>& fn) {
  fn();
  sync(d);
  const auto t0 = Clock::now();
  for (int64_t i = 0; i < reps; ++i) fn();
  sync(d);
  return std::chrono::duration<double>(Clock::now() - t0).count() * 1000.0 /
         static_cast<double>(reps);
}

struct OpCase {
  std::string name, shape, unit;                                  // unit: "GB/s" or "GFLOP/s"
  double work;                                                    // bytes or flops per call
  std::function<std::function<void()>(const td::Device&)> setup;  // returns the timed call
};

std::vector<OpCase> op_cases(double scale) {
  auto sz = [scale](double base) {
    return std::max<int64_t>(1, static_cast<int64_t>(base * scale));
  };
  const int64_t n_elem = sz(1 << 22), rows = sz(2048), params = sz(1 << 21);
  const int64_t g = std::max<int64_t>(16, static_cast<int64_t>(512 * std::cbrt(scale)));
  const int64_t conv_b = sz(16);
  std::vector<OpCase> cases;
  cases.push_back({"elementwise add", "[" + std::to_string(n_elem) + "] float32", "GB/s",
                   12.0 * static_cast<double>(n_elem), [n_elem](const td::Device& d) {
                     td::Tensor a = td::randn({n_elem}, d), b = td::randn({n_elem}, d);
                     return std::function<void()>([a, b] { td::Tensor c = a + b; });
                   }});
  cases.push_back({"softmax (dim 1)", "[" + std::to_string(rows) + ", 1000] float32", "GB/s",
                   8.0 * static_cast<double>(rows) * 1000, [rows](const td::Device& d) {
                     td::Tensor a = td::randn({rows, 1000}, d);
                     return std::function<void()>([a] { td::Tensor c = td::softmax(a, 1); });
                   }});
  cases.push_back({"GEMM", std::to_string(g) + "^3 float32", "GFLOP/s",
                   2.0 * std::pow(static_cast<double>(g), 3), [g](const td::Device& d) {
                     td::Tensor a = td::randn({g, g}, d), b = td::randn({g, g}, d);
                     return std::function<void()>([a, b] { td::Tensor c = td::matmul(a, b); });
                   }});
  cases.push_back(
      {"conv2d 3x3 pad 1", "[" + std::to_string(conv_b) + ", 64, 32, 32] * [64, 64, 3, 3]",
       "GFLOP/s", 2.0 * static_cast<double>(conv_b) * 64 * 32 * 32 * 64 * 9,
       [conv_b](const td::Device& d) {
         td::Tensor x = td::randn({conv_b, 64, 32, 32}, d), w = td::randn({64, 64, 3, 3}, d);
         return std::function<void()>(
             [x, w] { td::Tensor c = td::conv2d(x, w, td::Tensor(), 1, 1); });
       }});
  cases.push_back({"SGD momentum step", std::to_string(params) + " parameters", "GB/s",
                   16.0 * static_cast<double>(params), [params](const td::Device& d) {
                     td::Tensor p = td::randn({params}, d).set_requires_grad(true);
                     p.mutable_grad() = td::randn({params}, d);
                     auto opt = std::make_shared<td::optim::SGD>(
                         std::vector<td::Tensor>{p}, td::optim::SGDOptions(1e-3).momentum(0.9));
                     return std::function<void()>([opt, p] { opt->step(); });
                   }});
  return cases;
}

}  // namespace

// --nproc N: one process with every core at batch B, then N ranks at B / N
// each (the same global batch, the cores split), the second's rank 0 writing
// its JSON to a file this process reads.
int run_bench_train_nproc(const BenchTrainArgs& a) {
  if (a.batch_size % a.nproc != 0)
    throw UsageError("--batch-size must be a multiple of --nproc (it is the global batch)");
  const td::Device cpu(td::kCPU);
  if (!a.json_output)
    std::cerr << "bench: " << a.model << ", global batch " << a.batch_size << ", " << a.steps
              << " steps: 1 process with all cores, then " << a.nproc << " ranks ...\n";
  const json one = bench_train_on(cpu, a);
  char tmpl[] = "/tmp/tandem_bench_XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("cannot create a temporary directory");
  const std::string file = std::string(tmpl) + "/rank0.json";
  const int rc =
      launch_ranks({"tandem", "bench", "train", "--model", a.model, "--batch-size",
                    std::to_string(a.batch_size / a.nproc), "--steps", std::to_string(a.steps),
                    "--warmup", std::to_string(a.warmup), "--device", "cpu", "--json"},
                   a.nproc, a.threads == 0, file);
  if (rc != 0) throw std::runtime_error("a rank of the data-parallel benchmark failed");
  const json ranks = read_json_file(file, file)["results"][0];
  const double speedup =
      ranks["images_per_second"].get<double>() / one["images_per_second"].get<double>();
  json out = {{"benchmark", "train --nproc"}, {"model", a.model},
              {"global_batch", a.batch_size}, {"steps", a.steps},
              {"host", host_info()},          {"one_process", one},
              {"data_parallel", ranks},       {"speedup", speedup}};
  if (a.json_output) {
    std::cout << out.dump(2) << "\n";
    return kExitOk;
  }
  std::printf("model %s, global batch %lld, %lld timed steps (CPU)\n", a.model.c_str(),
              static_cast<long long>(a.batch_size), static_cast<long long>(a.steps));
  std::printf("%-40s %12s %12s\n", "configuration", "ms/step", "images/s");
  std::printf("%-40s %12.2f %12.1f\n", "1 process, all cores", one["ms_per_step"].get<double>(),
              one["images_per_second"].get<double>());
  std::printf("%-40s %12.2f %12.1f\n",
              (std::to_string(a.nproc) + " ranks (Gloo), cores split").c_str(),
              ranks["ms_per_step"].get<double>(), ranks["images_per_second"].get<double>());
  std::printf("data-parallel / one process: %.2fx\n", speedup);
  return kExitOk;
}

int run_bench_train(const BenchTrainArgs& a) {
  if (a.nproc > 1 && !td::dist::env_is_distributed()) return run_bench_train_nproc(a);
  // A rank of --nproc: rank 0's JSON is the answer; the others say nothing.
  struct NullBuffer : std::streambuf {
    int overflow(int c) override { return c; }
  };
  static NullBuffer null_buffer;
  if (td::dist::env_is_distributed() && td::dist::options_from_env().rank > 0)
    std::cout.rdbuf(&null_buffer);
  if (a.batch_size < 1)
    throw UsageError("--batch-size must be at least 1, got " + std::to_string(a.batch_size));
  if (a.steps < 1) throw UsageError("--steps must be at least 1, got " + std::to_string(a.steps));
  if (a.warmup < 0) throw UsageError("--warmup must be >= 0, got " + std::to_string(a.warmup));
  make_model(a.model, nullptr);  // a bad model is a usage error before any timing
  const std::vector<td::Device> devices = bench_devices(a.devices);
  json results = json::array();
  for (const td::Device& d : devices) {
    if (!a.json_output)
      std::cerr << "bench: " << a.model << ", batch " << a.batch_size << ", " << a.steps
                << " steps on " << device_label(d) << " ...\n";
    results.push_back(bench_train_on(d, a));
  }
  json ratio;
  if (results.size() == 2) {
    ratio = results[1]["images_per_second"].get<double>() /
            results[0]["images_per_second"].get<double>();
  }
  json out = {{"benchmark", "train"},       {"model", a.model},
              {"batch_size", a.batch_size}, {"steps", a.steps},
              {"warmup_steps", a.warmup},   {"host", host_info()},
              {"results", results},         {"gpu_cpu_speed_ratio", ratio}};
  if (a.json_output) {
    std::cout << out.dump(2) << "\n";
    return kExitOk;
  }
  std::printf(
      "model %s, batch %lld, %lld timed steps after %lld warm-up steps (forward, cross-entropy, "
      "backward, SGD step)\n",
      a.model.c_str(), static_cast<long long>(a.batch_size), static_cast<long long>(a.steps),
      static_cast<long long>(a.warmup));
  std::printf("%-34s %12s %12s %14s\n", "device", "ms/step", "images/s", "peak memory");
  for (const json& r : results) {
    std::printf("%-34s %12.2f %12.1f %14s\n", r["device_name"].get<std::string>().c_str(),
                r["ms_per_step"].get<double>(), r["images_per_second"].get<double>(),
                format_bytes(r["peak_memory_bytes"].get<double>()).c_str());
  }
  if (!ratio.is_null()) std::printf("GPU/CPU speed ratio: %.1fx\n", ratio.get<double>());
  std::printf(
      "(CPU memory: process peak RSS; CUDA memory: peak of live tensors in the caching "
      "allocator)\n");
  return kExitOk;
}

int run_bench_ops(const BenchOpsArgs& a) {
  if (!(a.scale > 0 && a.scale <= 4))
    throw UsageError("--scale must be in (0, 4], got " + std::to_string(a.scale));
  if (a.reps < 1) throw UsageError("--reps must be at least 1, got " + std::to_string(a.reps));
  const std::vector<td::Device> devices = bench_devices(a.devices);
  json rows = json::array();
  for (const OpCase& c : op_cases(a.scale)) {
    json row = {{"op", c.name}, {"shape", c.shape}, {"unit", c.unit}};
    for (const td::Device& d : devices) {
      td::manual_seed(0);
      const std::function<void()> fn = c.setup(d);
      const double ms = time_ms(d, a.reps, fn);
      const double rate = c.work / (ms / 1000.0) / 1e9;
      row[d.is_cuda() ? "cuda" : "cpu"] = {{"ms", ms}, {"rate", rate}};
    }
    if (row.contains("cpu") && row.contains("cuda")) {
      row["gpu_cpu_speed_ratio"] = row["cpu"]["ms"].get<double>() / row["cuda"]["ms"].get<double>();
    }
    rows.push_back(row);
  }
  if (a.json_output) {
    std::cout << json({{"benchmark", "ops"},
                       {"host", host_info()},
                       {"reps", a.reps},
                       {"scale", a.scale},
                       {"ops", rows}})
                     .dump(2)
              << "\n";
    return kExitOk;
  }
  std::printf(
      "| op | shape | CPU ms | CPU rate | CUDA ms | CUDA rate | GPU/CPU "
      "|\n|---|---|---|---|---|---|---|\n");
  for (const json& r : rows) {
    auto cell = [&](const char* dev, const char* key) -> std::string {
      if (!r.contains(dev)) return "-";
      char buf[64];
      if (std::string(key) == "ms") {
        std::snprintf(buf, sizeof buf, "%.3f", r[dev][key].get<double>());
      } else {
        std::snprintf(buf, sizeof buf, "%.1f %s", r[dev][key].get<double>(),
                      r["unit"].get<std::string>().c_str());
      }
      return buf;
    };
    std::string ratio = "-";
    if (r.contains("gpu_cpu_speed_ratio")) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.1fx", r["gpu_cpu_speed_ratio"].get<double>());
      ratio = buf;
    }
    std::printf("| %s | %s | %s | %s | %s | %s | %s |\n", r["op"].get<std::string>().c_str(),
                r["shape"].get<std::string>().c_str(), cell("cpu", "ms").c_str(),
                cell("cpu", "rate").c_str(), cell("cuda", "ms").c_str(),
                cell("cuda", "rate").c_str(), ratio.c_str());
  }
  return kExitOk;
}

}  // namespace cli

namespace cli {
namespace {

void add_bench_train(CLI::App* bench) {
  auto a = std::make_shared<BenchTrainArgs>();
  CLI::App* cmd = bench->add_subcommand(
      "train", "time training steps of one model and batch on the CPU and on CUDA");
  cmd->footer(R"(Examples:
  tandem bench train --model lenet --batch-size 128 --steps 20
  tandem bench train --model resnet-fast --batch-size 512 --steps 10 --json > $(hostname).json
  python3 benchmarks/cpu_vs_gpu_table.py *.json   # a markdown table from several machines)");
  cmd->add_option("--model", a->model, "preset or JSON model file")->capture_default_str();
  cmd->add_option("--batch-size", a->batch_size, "batch size")->capture_default_str();
  cmd->add_option("--steps", a->steps, "timed steps")->capture_default_str();
  cmd->add_option("--warmup", a->warmup, "untimed warm-up steps")->capture_default_str();
  add_device_option(cmd, &a->devices, "auto (CPU, and CUDA where it runs), both, cpu or cuda",
                    {"auto", "both", "cpu", "cuda"});
  cmd->add_flag("--json", a->json_output, "machine-readable output (with host and GPU names)");
  add_threads_option(cmd, &a->threads);
  cmd->add_option("--nproc", a->nproc,
                  "CPU: N data-parallel ranks (cores split, --batch-size the global batch) "
                  "against one process with all cores")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  run_when_parsed(cmd, [a] { return run_bench_train(*a); });
}

void add_bench_ops(CLI::App* bench) {
  auto a = std::make_shared<BenchOpsArgs>();
  CLI::App* cmd = bench->add_subcommand(
      "ops", "elementwise, softmax, GEMM, conv and optimizer step on the CPU and on CUDA");
  cmd->footer("Examples:\n  tandem bench ops\n  tandem bench ops --scale 0.25 --reps 3 --json");
  cmd->add_option("--scale", a->scale, "problem sizes times this, in (0, 4]")
      ->capture_default_str();
  cmd->add_option("--reps", a->reps, "timed calls per op")->capture_default_str();
  add_device_option(cmd, &a->devices, "auto, both, cpu or cuda", {"auto", "both", "cpu", "cuda"});
  cmd->add_flag("--json", a->json_output, "machine-readable output");
  add_threads_option(cmd, &a->threads);
  run_when_parsed(cmd, [a] { return run_bench_ops(*a); });
}

}  // namespace

void add_bench(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("bench", "benchmarks: CPU vs GPU");
  cmd->require_subcommand(1);
  cmd->footer(R"(Examples:
  tandem bench train --model lenet --batch-size 128 --steps 20
  tandem bench ops --scale 0.25 --reps 3 --json
Run 'tandem bench train --help' or 'tandem bench ops --help' for their options.)");
  add_bench_train(cmd);
  add_bench_ops(cmd);
}

}  // namespace cli
