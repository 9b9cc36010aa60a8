// The data loader's throughput next to the training step it feeds, in images/s
// (items_per_second), at CIFAR-10 sizes (3x32x32, batch 128):
//   loader/cpu/<workers>w        HostPrefetch batches on the CPU with CIFAR
//                                augmentation (crop 4, flip, cutout 8) and
//                                normalisation, <workers> background threads
//   loader/cpu/sync              the same batches built on the calling thread
//   loader/cuda/host_prefetch    the same, copied to the GPU on the loader's stream
//   loader/cuda/device_resident  the data set on the GPU, kernels per batch
//   train_step/lenet/<device>    LeNet forward + backward + SGD step
// Target (benchmarks/README.md): loader/cpu/<all cores>w at least 10x
// train_step/lenet/cpu. All cases are timed by wall clock; CUDA cases
// synchronise at the end of each iteration.
#include <algorithm>
#include <thread>

#include "bench_util.h"

namespace {

using namespace tandem;
namespace tb = tandem_bench;

constexpr int64_t kBatch = 128;
constexpr int64_t kImages = 10000;

data::ImageDataset synthetic_cifar() {
  Generator gen(7);
  data::ImageDataset ds;
  ds.images = randint(0, 256, {kImages, 3, 32, 32}, kInt64, &gen).to(kUInt8);
  ds.labels = randint(0, 10, {kImages}, kInt64, &gen);
  ds.classes = data::cifar10_classes();
  return ds;
}

data::LoaderOptions cifar_options(Device dev, data::LoaderMode mode, int workers) {
  data::LoaderOptions o;
  o.batch_size = kBatch;
  o.drop_last = true;
  o.seed = 1;
  o.augment = {4, true, 8};
  o.normalize = data::cifar10_normalize();
  o.device = dev;
  o.mode = mode;
  o.workers = workers;
  o.prefetch = 2 * workers + 2;
  return o;
}

void sync_if_cuda(Device dev) {
  if (dev.is_cuda()) cuda::synchronize();
}

// Iterates the loader forever (a new epoch when one ends), one batch per iteration.
void run_loader(benchmark::State& state, data::DataLoader& loader, Device dev) {
  int64_t epoch = 0;
  loader.start_epoch(epoch);
  data::Batch b;
  for (auto _ : state) {
    if (!loader.next(&b)) {
      loader.start_epoch(++epoch);
      loader.next(&b);
    }
    sync_if_cuda(dev);
    benchmark::DoNotOptimize(b.images.raw_data());
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}

template <typename Fn>
void add_case(const std::string& name, Fn fn) {
  benchmark::RegisterBenchmark(name.c_str(),
                               [fn](benchmark::State& state) {
                                 try {
                                   fn(state);
                                 } catch (const std::exception& e) {
                                   state.SkipWithError(e.what());
                                 }
                               })
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
}

void register_all() {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<int> worker_counts{1};
  if (cores > 1) worker_counts.push_back(cores);
  for (int w : worker_counts) {
    add_case("loader/cpu/" + std::to_string(w) + "w", [w](benchmark::State& state) {
      data::DataLoader loader(synthetic_cifar(),
                              cifar_options(tb::cpu_device(), data::LoaderMode::HostPrefetch, w));
      run_loader(state, loader, tb::cpu_device());
    });
  }
  add_case("loader/cpu/sync", [](benchmark::State& state) {
    data::DataLoader loader(synthetic_cifar(),
                            cifar_options(tb::cpu_device(), data::LoaderMode::HostPrefetch, 1));
    int64_t i = 0;
    for (auto _ : state) {
      data::Batch b = loader.batch(0, i++ % loader.num_batches());
      benchmark::DoNotOptimize(b.images.raw_data());
    }
    state.SetItemsProcessed(state.iterations() * kBatch);
  });
  if (cuda::is_built()) {
    add_case("loader/cuda/host_prefetch", [cores](benchmark::State& state) {
      TANDEM_CHECK(cuda::is_available(), "no CUDA device");
      data::DataLoader loader(
          synthetic_cifar(),
          cifar_options(tb::cuda_device(), data::LoaderMode::HostPrefetch, cores));
      run_loader(state, loader, tb::cuda_device());
    });
    add_case("loader/cuda/device_resident", [](benchmark::State& state) {
      TANDEM_CHECK(cuda::is_available(), "no CUDA device");
      data::DataLoader loader(
          synthetic_cifar(), cifar_options(tb::cuda_device(), data::LoaderMode::DeviceResident, 1));
      run_loader(state, loader, tb::cuda_device());
    });
  }
  std::vector<Device> devs{tb::cpu_device()};
  if (cuda::is_built()) devs.push_back(tb::cuda_device());
  for (Device d : devs) {
    add_case(std::string("train_step/lenet/") + (d.is_cuda() ? "cuda" : "cpu"),
             [d](benchmark::State& state) {
               TANDEM_CHECK(d.is_cpu() || cuda::is_available(), "no CUDA device");
               nn::Sequential net(nn::Conv2d(3, 6, 5), nn::ReLU(),
                                  nn::MaxPool2d(nn::MaxPool2dOptions(2)), nn::Conv2d(6, 16, 5),
                                  nn::ReLU(), nn::MaxPool2d(nn::MaxPool2dOptions(2)), nn::Flatten(),
                                  nn::Linear(400, 120), nn::ReLU(), nn::Linear(120, 84), nn::ReLU(),
                                  nn::Linear(84, 10));
               net->to(d);
               optim::SGD opt(net->parameters(), optim::SGDOptions(0.01).momentum(0.9));
               Generator gen(3);
               Tensor x = randn({kBatch, 3, 32, 32}, TensorOptions(kFloat32).device(d), &gen);
               Tensor y = randint(0, 10, {kBatch}, TensorOptions(kInt64).device(d), &gen);
               auto step = [&] {
                 opt.zero_grad();
                 cross_entropy(net->forward(x), y).backward();
                 opt.step();
               };
               step();
               for (auto _ : state) {
                 step();
                 sync_if_cuda(d);
               }
               state.SetItemsProcessed(state.iterations() * kBatch);
             });
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  tb::add_context();
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
