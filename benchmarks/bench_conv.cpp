// CNN layer benchmarks at CIFAR-10 sizes, float32: conv2d forward+backward
// (3x3, padding 1, channels 16-512 at 32x32 down to 4x4), max pooling and
// batch norm (training, forward+backward), and a training step (forward,
// backward) of the LeNet and of a small ResNet-block net. CUDA cases use batch
// 128; CPU cases batch 16 (so the run stays short on a small machine: compare
// per-image rates, items_per_second = images/s). Conv cases report FLOP/s
// (flops counter: 2*N*K*P*Q*C*R*S per pass, 3 passes for forward+backward).
//
// "conv_fwd/cudnn_direct" calls cudnnConvolutionForward itself with the
// algorithm cuDNN's heuristics rank first (what tandem's conv2d uses by
// default), on the same tensors: tandem's "conv_fwd/cuda" time over it is the
// layer's overhead (target: within 5%).
//
// Names: <case>/<device>/<channels>x<size>/...
#include <functional>
#include <string>
#include <vector>

#include "bench_util.h"

#if TANDEM_WITH_CUDA
#include <cudnn.h>
#endif

namespace {

namespace tb = tandem_bench;
using namespace tandem;  // NOLINT

struct Layer {
  int64_t channels, size;
};
const std::vector<Layer> kLayers = {{16, 32}, {32, 32}, {64, 32}, {128, 16}, {256, 8}, {512, 4}};

int64_t batch_for(Device d) { return d.is_cuda() ? 128 : 16; }

TensorOptions f32(Device d) { return dtype(kFloat32).device(d); }

Tensor random_input(const Shape& shape, Device d) {
  Generator gen(7);
  return randn(shape, f32(d), &gen);
}

double conv_flops(int64_t n, int64_t c, int64_t k, int64_t hw) {
  return 2.0 * n * k * hw * hw * c * 9;
}

void set_rates(benchmark::State& state, double flops_per_call, int64_t images_per_call) {
  state.counters["flops"] = benchmark::Counter(
      flops_per_call * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.SetItemsProcessed(state.iterations() * images_per_call);
}

using Body = std::function<void(benchmark::State&, Device)>;

void register_case(const std::string& name, Device d, const Body& body) {
  auto* b = benchmark::RegisterBenchmark(name.c_str(), [body, d](benchmark::State& state) {
    tb::guarded(state, [&] {
      if (d.is_cuda() && !tb::require_cuda(state)) return;
      body(state, d);
    });
  });
  b->Unit(benchmark::kMillisecond);
  if (d.is_cuda()) {
    b->UseManualTime();
  } else {
    b->UseRealTime()->Iterations(3);
  }
}

std::vector<Device> devices() {
  std::vector<Device> out{tb::cpu_device()};
#if TANDEM_WITH_CUDA
  out.push_back(tb::cuda_device());
#endif
  return out;
}

std::string dev_name(Device d) { return d.is_cuda() ? "cuda" : "cpu"; }

void register_layers() {
  for (Device d : devices()) {
    for (const Layer& l : kLayers) {
      const std::string tag =
          dev_name(d) + "/" + std::to_string(l.channels) + "x" + std::to_string(l.size);
      register_case("conv_fwd/" + tag, d, [l](benchmark::State& state, Device dev) {
        const int64_t n = batch_for(dev);
        Tensor x = random_input({n, l.channels, l.size, l.size}, dev);
        Tensor w = random_input({l.channels, l.channels, 3, 3}, dev) * 0.05;
        NoGradGuard no_grad;
        tb::run_on(state, dev, [&] { benchmark::DoNotOptimize(conv2d(x, w, Tensor(), 1, 1)); });
        set_rates(state, conv_flops(n, l.channels, l.channels, l.size), n);
      });
      register_case("conv_fwd_bwd/" + tag, d, [l](benchmark::State& state, Device dev) {
        const int64_t n = batch_for(dev);
        Tensor x = random_input({n, l.channels, l.size, l.size}, dev).set_requires_grad(true);
        Tensor w =
            (random_input({l.channels, l.channels, 3, 3}, dev) * 0.05).set_requires_grad(true);
        Tensor b = zeros({l.channels}, f32(dev)).set_requires_grad(true);
        Tensor g = random_input({n, l.channels, l.size, l.size}, dev);
        tb::run_on(state, dev, [&] {
          Tensor y = conv2d(x, w, b, 1, 1);
          y.backward(g);
        });
        set_rates(state, 3.0 * conv_flops(n, l.channels, l.channels, l.size), n);
      });
      register_case("max_pool2d_fwd_bwd/" + tag, d, [l](benchmark::State& state, Device dev) {
        const int64_t n = batch_for(dev);
        Tensor x = random_input({n, l.channels, l.size, l.size}, dev).set_requires_grad(true);
        Tensor g = random_input({n, l.channels, l.size / 2, l.size / 2}, dev);
        tb::run_on(state, dev, [&] { max_pool2d(x, 2).backward(g); });
        // x read twice (forward, backward), grad_x written, y/indices/grad_y small.
        state.SetBytesProcessed(state.iterations() * x.nbytes() * 3);
        state.SetItemsProcessed(state.iterations() * n);
      });
      register_case("batch_norm_fwd_bwd/" + tag, d, [l](benchmark::State& state, Device dev) {
        const int64_t n = batch_for(dev);
        Tensor x = random_input({n, l.channels, l.size, l.size}, dev).set_requires_grad(true);
        Tensor w = ones({l.channels}, f32(dev)).set_requires_grad(true);
        Tensor bias = zeros({l.channels}, f32(dev)).set_requires_grad(true);
        Tensor rm = zeros({l.channels}, f32(dev)), rv = ones({l.channels}, f32(dev));
        Tensor g = random_input(x.sizes(), dev);
        tb::run_on(state, dev, [&] { batch_norm(x, rm, rv, w, bias, true).backward(g); });
        // forward: x read twice, y written; backward: x, gy read twice, gx written.
        state.SetBytesProcessed(state.iterations() * x.nbytes() * 8);
        state.SetItemsProcessed(state.iterations() * n);
      });
    }
  }
}

nn::Sequential lenet() {
  return nn::Sequential(nn::Conv2d(3, 6, 5), nn::ReLU(), nn::MaxPool2d(nn::MaxPool2dOptions(2)),
                        nn::Conv2d(6, 16, 5), nn::ReLU(), nn::MaxPool2d(nn::MaxPool2dOptions(2)),
                        nn::Flatten(), nn::Linear(400, 120), nn::ReLU(), nn::Linear(120, 84),
                        nn::ReLU(), nn::Linear(84, 10));
}

nn::Sequential resnet_block_net() {
  auto cbr = [](int64_t in, int64_t out, int64_t stride) {
    return nn::Sequential(
        nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false)),
        nn::BatchNorm2d(out), nn::ReLU());
  };
  nn::Sequential body(cbr(64, 64, 1),
                      nn::Conv2d(nn::Conv2dOptions(64, 64, 3).padding(1).bias(false)),
                      nn::BatchNorm2d(64));
  return nn::Sequential(cbr(3, 64, 1), nn::Residual(body), nn::ReLU(),
                        nn::MaxPool2d(nn::MaxPool2dOptions(2)), cbr(64, 128, 1),
                        nn::MaxPool2d(nn::MaxPool2dOptions(2)), nn::AdaptiveAvgPool2d(1),
                        nn::Flatten(), nn::Linear(128, 10));
}

void register_nets() {
  for (Device d : devices()) {
    for (const std::string net_name : {"lenet", "resnet_block"}) {
      register_case("train_step/" + net_name + "/" + dev_name(d), d,
                    [net_name](benchmark::State& state, Device dev) {
                      const int64_t n = batch_for(dev);
                      nn::Sequential net = net_name == "lenet" ? lenet() : resnet_block_net();
                      net->to(dev);
                      Tensor x = random_input({n, 3, 32, 32}, dev);
                      Generator gen(3);
                      Tensor labels = randint(0, 10, {n}, dtype(kInt64).device(dev), &gen);
                      tb::run_on(state, dev, [&] {
                        net->zero_grad();
                        cross_entropy(net->forward(x), labels).backward();
                      });
                      state.SetItemsProcessed(state.iterations() * n);
                    });
    }
  }
}

#if TANDEM_WITH_CUDA
void check_cudnn(cudnnStatus_t s, const char* what) {
  if (s != CUDNN_STATUS_SUCCESS) TANDEM_FAIL("benchmark: ", what, ": ", cudnnGetErrorString(s));
}

// cudnnConvolutionForward on tandem's stream with cuDNN's first heuristic choice.
void register_direct_cudnn() {
  for (const Layer& l : kLayers) {
    const std::string name =
        "conv_fwd/cudnn_direct/" + std::to_string(l.channels) + "x" + std::to_string(l.size);
    register_case(name, tb::cuda_device(), [l](benchmark::State& state, Device dev) {
      const int n = 128, c = static_cast<int>(l.channels), hw = static_cast<int>(l.size);
      Tensor x = random_input({n, c, hw, hw}, dev);
      Tensor w = random_input({c, c, 3, 3}, dev) * 0.05;
      Tensor y = empty({n, c, hw, hw}, f32(dev));
      cudnnHandle_t h = nullptr;
      check_cudnn(cudnnCreate(&h), "cudnnCreate");
      check_cudnn(cudnnSetStream(h, tb::current_stream()), "cudnnSetStream");
      cudnnTensorDescriptor_t xd, yd;
      cudnnFilterDescriptor_t wd;
      cudnnConvolutionDescriptor_t cd;
      cudnnCreateTensorDescriptor(&xd);
      cudnnCreateTensorDescriptor(&yd);
      cudnnCreateFilterDescriptor(&wd);
      cudnnCreateConvolutionDescriptor(&cd);
      cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, hw, hw);
      cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, hw, hw);
      cudnnSetFilter4dDescriptor(wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, c, c, 3, 3);
      cudnnSetConvolution2dDescriptor(cd, 1, 1, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION,
                                      CUDNN_DATA_FLOAT);
      cudnnSetConvolutionMathType(cd, cuda::allow_tf32() ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH);
      cudnnConvolutionFwdAlgoPerf_t perf[8];
      int returned = 0;
      check_cudnn(cudnnGetConvolutionForwardAlgorithm_v7(h, xd, wd, cd, yd, 8, &returned, perf),
                  "cudnnGetConvolutionForwardAlgorithm_v7");
      const cudnnConvolutionFwdAlgoPerf_t& best = perf[0];
      Tensor ws = empty({static_cast<int64_t>(best.memory / 4 + 1)}, f32(dev));
      const float one = 1.0f, zero = 0.0f;
      tb::run_cuda(state, [&] {
        check_cudnn(
            cudnnConvolutionForward(h, &one, xd, x.raw_data(), wd, w.raw_data(), cd, best.algo,
                                    ws.raw_data(), best.memory, &zero, yd, y.raw_data()),
            "cudnnConvolutionForward");
      });
      state.counters["algo"] = static_cast<double>(best.algo);
      set_rates(state, conv_flops(n, c, c, hw), n);
      cudnnDestroyConvolutionDescriptor(cd);
      cudnnDestroyFilterDescriptor(wd);
      cudnnDestroyTensorDescriptor(yd);
      cudnnDestroyTensorDescriptor(xd);
      cudnnDestroy(h);
    });
  }
}
#endif

void register_all() {
  register_layers();
  register_nets();
#if TANDEM_WITH_CUDA
  register_direct_cudnn();
#endif
}

}  // namespace

int main(int argc, char** argv) { return tandem_bench::bench_main(argc, argv, register_all); }
