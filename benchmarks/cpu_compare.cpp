// tandem's side of the CPU comparison with PyTorch (benchmarks/cpu_vs_pytorch.py).
//
// A small server: it reads one request per line on stdin, `CASE REPS`, runs the
// case's work once untimed (the first request of a case also builds it), then
// REPS times, and answers one JSON line on stdout:
//   {"case": "lenet_b64", "ms": 12.3, "reps": 10}
// with `ms` the mean wall-clock milliseconds per repetition. `list` answers the
// case names, one JSON line. The Python script keeps this process alive and
// interleaves its requests with the same work in PyTorch, so that both sides
// see the same machine load. The cases and their shapes are defined twice, here
// and in the script, and must stay the same (names, shapes, dtypes, threads).
//
// Threads: tandem's default (OpenMP's, i.e. OMP_NUM_THREADS or the cores); the
// script sets PyTorch to the same number.
#include <tandem/tandem.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace tandem;
using Work = std::function<void()>;

Tensor randn_f32(const Shape& s, Generator& g) { return randn(s, {}, &g); }

// A training step: forward, cross-entropy, backward, optimizer step.
Work train_step(nn::Sequential net, int64_t batch, std::shared_ptr<optim::Optimizer> opt,
                Generator& g) {
  Tensor x = randn_f32({batch, 3, 32, 32}, g);
  Tensor y = randint(0, 10, {batch}, kInt64, &g);
  return [net, x, y, opt] {
    opt->zero_grad();
    Tensor loss = cross_entropy(net->forward(x), y);
    loss.backward();
    opt->step();
  };
}

nn::Sequential lenet() { return models::make("lenet"); }

// conv3x3-BN-ReLU-maxpool2 blocks of widths 64, 128, 256, then a Linear to 10.
nn::Sequential cbr_net() {
  nn::Sequential net;
  int64_t in = 3;
  for (int64_t w : {64, 128, 256}) {
    net->push_back(nn::Conv2d(nn::Conv2dOptions(in, w, 3).padding(1).bias(false)));
    net->push_back(nn::BatchNorm2d(w));
    net->push_back(nn::ReLU());
    net->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2)));
    in = w;
  }
  net->push_back(nn::Flatten());
  net->push_back(nn::Linear(256 * 4 * 4, 10));
  return net;
}

// SGD with momentum over the trainable parameters (resnet-fast freezes its
// whitening and BatchNorm weights; PyTorch's SGD skips them, having no grad).
std::shared_ptr<optim::Optimizer> sgd(nn::Sequential& net) {
  std::vector<Tensor> trainable;
  for (const Tensor& p : net->parameters()) {
    if (p.requires_grad()) trainable.push_back(p);
  }
  return std::make_shared<optim::SGD>(trainable, optim::SGDOptions(0.01).momentum(0.9));
}

// 10M parameters split like a model's: 100 tensors of 100,000.
std::vector<Tensor> params_10m(Generator& g) {
  std::vector<Tensor> ps;
  for (int i = 0; i < 100; ++i) {
    Tensor p = randn_f32({100000}, g);
    p.requires_grad_(true);
    p.mutable_grad() = randn_f32({100000}, g);
    ps.push_back(p);
  }
  return ps;
}

Work make_case(const std::string& name) {
  Generator g(1234);
  if (name == "lenet_b64" || name == "lenet_b128") {
    nn::Sequential net = lenet();
    return train_step(net, name == "lenet_b64" ? 64 : 128, sgd(net), g);
  }
  if (name == "resnet_fast_b64") {  // the preset users train most (airbench94's net)
    nn::Sequential net = models::make("resnet-fast");
    return train_step(net, 64, sgd(net), g);
  }
  if (name == "cbr_b64" || name == "cbr_b128") {
    nn::Sequential net = cbr_net();
    return train_step(net, name == "cbr_b64" ? 64 : 128, sgd(net), g);
  }
  if (name == "conv_fwd" || name == "conv_fwd_bwd") {
    Tensor x = randn_f32({128, 64, 32, 32}, g);
    Tensor w = randn_f32({64, 64, 3, 3}, g) * 0.05;
    Tensor b = randn_f32({64}, g);
    if (name == "conv_fwd") {
      return [x, w, b] {
        NoGradGuard ng;
        conv2d(x, w, b, 1, 1);
      };
    }
    x.requires_grad_(true);
    w.requires_grad_(true);
    b.requires_grad_(true);
    return [x, w, b]() mutable {
      x.mutable_grad() = Tensor();
      w.mutable_grad() = Tensor();
      b.mutable_grad() = Tensor();
      conv2d(x, w, b, 1, 1).sum().backward();
    };
  }
  // More CIFAR shapes, forward + backward, batch 128: the first layer
  // (3 -> 64 at 32x32) and deeper ones (128 at 16x16, 256 at 8x8).
  if (name == "conv3_64_32" || name == "conv128_16" || name == "conv256_8") {
    const int64_t cin = name == "conv3_64_32" ? 3 : name == "conv128_16" ? 128 : 256;
    const int64_t cout = name == "conv3_64_32" ? 64 : cin;
    const int64_t hw = name == "conv3_64_32" ? 32 : name == "conv128_16" ? 16 : 8;
    Tensor x = randn_f32({128, cin, hw, hw}, g);
    Tensor w = randn_f32({cout, cin, 3, 3}, g) * 0.05;
    w.requires_grad_(true);
    // The first layer's input is data: no gradient, as in training.
    if (cin != 3) x.requires_grad_(true);
    return [x, w]() mutable {
      x.mutable_grad() = Tensor();
      w.mutable_grad() = Tensor();
      conv2d(x, w, Tensor(), 1, 1).sum().backward();
    };
  }
  if (name == "softmax" || name == "log_softmax") {
    Tensor x = randn_f32({4096, 1000}, g);
    if (name == "softmax") return [x] { softmax(x, 1); };
    return [x] { log_softmax(x, 1); };
  }
  if (name == "cross_entropy") {
    Tensor x = randn_f32({4096, 1000}, g);
    x.requires_grad_(true);
    Tensor y = randint(0, 1000, {4096}, kInt64, &g);
    return [x, y]() mutable {
      x.mutable_grad() = Tensor();
      cross_entropy(x, y).backward();
    };
  }
  if (name == "exp" || name == "log" || name == "tanh" || name == "sigmoid" || name == "relu" ||
      name == "add") {
    Tensor x = randn_f32({1 << 22}, g);
    Tensor xp = x.abs() + 0.1;
    Tensor y = randn_f32({1 << 22}, g);
    if (name == "exp") return [x] { x.exp(); };
    if (name == "log") return [xp] { xp.log(); };
    if (name == "tanh") return [x] { x.tanh(); };
    if (name == "sigmoid") return [x] { x.sigmoid(); };
    if (name == "relu") return [x] { x.relu(); };
    return [x, y] { add(x, y); };
  }
  if (name == "adam_10m") {
    auto opt = std::make_shared<optim::Adam>(params_10m(g), optim::AdamOptions(1e-3));
    return [opt] { opt->step(); };
  }
  if (name == "sgd_momentum_10m") {
    auto opt = std::make_shared<optim::SGD>(params_10m(g), optim::SGDOptions(0.01).momentum(0.9));
    return [opt] { opt->step(); };
  }
  if (name == "gemm_1024") {
    Tensor a = randn_f32({1024, 1024}, g);
    Tensor b = randn_f32({1024, 1024}, g);
    return [a, b] { matmul(a, b); };
  }
  TANDEM_FAIL("unknown case '", name, "'");
}

const char* const kCases[] = {"lenet_b64",   "resnet_fast_b64",  "lenet_b128",   "cbr_b64",
                              "cbr_b128",    "conv_fwd",         "conv_fwd_bwd", "softmax",
                              "log_softmax", "cross_entropy",    "exp",          "log",
                              "tanh",        "sigmoid",          "relu",         "add",
                              "adam_10m",    "sgd_momentum_10m", "gemm_1024"};

}  // namespace

int main() {
  std::map<std::string, Work> built;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string name;
    int reps = 1;
    in >> name >> reps;
    if (name.empty()) continue;
    if (name == "list") {
      std::cout << "{\"cases\": [";
      bool first = true;
      for (const char* c : kCases) {
        std::cout << (first ? "" : ", ") << '"' << c << '"';
        first = false;
      }
      std::cout << "]}" << std::endl;
      continue;
    }
    // The host allocator's counters: a case repeated between two `stats`
    // requests that adds no system_allocs runs in steady state.
    if (name == "stats") {
      const cpu::MemoryStats s = cpu::memory_stats();
      std::cout << "{\"system_allocs\": " << s.num_system_allocs
                << ", \"system_frees\": " << s.num_system_frees
                << ", \"requests\": " << s.num_alloc_requests
                << ", \"reserved_bytes\": " << s.reserved_bytes << "}" << std::endl;
      continue;
    }
    try {
      auto it = built.find(name);
      if (it == built.end()) it = built.emplace(name, make_case(name)).first;
      const Work& work = it->second;
      work();  // warm-up: caches, allocator, primitive creation
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < reps; ++i) work();
      const double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() /
          reps;
      std::cout << "{\"case\": \"" << name << "\", \"ms\": " << ms << ", \"reps\": " << reps << "}"
                << std::endl;
    } catch (const std::exception& e) {
      std::cout << "{\"case\": \"" << name << "\", \"error\": \"" << e.what() << "\"}" << std::endl;
    }
  }
  return 0;
}
