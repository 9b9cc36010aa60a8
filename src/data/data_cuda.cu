// Data-loader kernels and copies (contract in src/data/data_cuda.h):
//   - shuffle_keys_kernel + Thrust stable_sort_by_key: the epoch's order of a
//     device-resident data set, samples sorted by their Philox shuffle key;
//   - augment_batch_kernel: one block per output sample gathers its uint8
//     image through the order, applies crop / flip / cutout and normalises
//     through the [C, 256] table (src/data/augment.h, shared with the CPU);
//   - upload_async: pinned host batch -> device on the loader's copy stream,
//     ordered after the current stream's queued work, signalled by an event.
// DIFFERENCE FROM THE CPU: none in results (same formula, same draws, same
// table); the sort is Thrust's stable radix sort instead of std::sort of
// (key, index) pairs, which orders equal keys the same way.
#if !defined(TANDEM_EMU)
#include <thrust/execution_policy.h>
#include <thrust/sequence.h>
#include <thrust/sort.h>
#else
#include <algorithm>
#include <numeric>
#include <vector>
#endif

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "cuda/cuda_utils.h"
#include "data/augment.h"
#include "data/data_cuda.h"

namespace tandem {
namespace data {
namespace detail {
namespace {

using cuda::ceil_div;
using cuda::kBlockSize;

constexpr int kMaxLutChannels = 4;

__global__ void shuffle_keys_kernel(uint64_t* keys, int64_t* index, int64_t n, uint64_t seed,
                                    int64_t epoch) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  keys[i] = shuffle_key(seed, i, epoch);
  index[i] = i;
}

__global__ void augment_batch_kernel(const uint8_t* __restrict__ images,
                                     const int64_t* __restrict__ labels,
                                     const int64_t* __restrict__ order, int64_t start,
                                     const float* __restrict__ lut, AugmentParams params,
                                     uint64_t seed, int64_t epoch, int32_t channels, int32_t height,
                                     int32_t width, float* __restrict__ out,
                                     int64_t* __restrict__ out_labels) {
  TANDEM_SHARED(float, s_lut, [kMaxLutChannels * 256]);
  TANDEM_SHARED(SampleDraw, s_draw, );
  const int64_t k = blockIdx.x;
  const int64_t sample = order[start + k];
  for (int t = threadIdx.x; t < channels * 256; t += blockDim.x) s_lut[t] = lut[t];
  if (threadIdx.x == 0) {
    s_draw = sample_draw(seed, sample, epoch, params, height, width);
    out_labels[k] = labels[sample];
  }
  __syncthreads();
  const int64_t per = static_cast<int64_t>(channels) * height * width;
  const uint8_t* src = images + sample * per;
  float* dst = out + k * per;
  const SampleDraw d = s_draw;
  for (int64_t p = threadIdx.x; p < per; p += blockDim.x) {
    const int32_t x = static_cast<int32_t>(p % width);
    const int32_t y = static_cast<int32_t>((p / width) % height);
    const int32_t c = static_cast<int32_t>(p / (static_cast<int64_t>(width) * height));
    dst[p] = augmented_pixel(src, s_lut, d, params, c, y, x, height, width);
  }
}

cudaStream_t as_stream(const cuda::Stream& s) { return static_cast<cudaStream_t>(s.handle()); }

std::shared_ptr<void> new_event() {
  cudaEvent_t ev = nullptr;
  TANDEM_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  return std::shared_ptr<void>(
      ev, [](void* e) { (void)cudaEventDestroy(static_cast<cudaEvent_t>(e)); });
}

}  // namespace

DeviceCopy upload_async(const Tensor& host_images, const Tensor& host_labels, Device device,
                        const cuda::Stream& copy_stream) {
  TANDEM_CHECK(host_images.is_pinned() && host_labels.is_pinned(),
               "DataLoader: host batches must be pinned for asynchronous copies");
  cuda::detail::DeviceGuard guard(device.index());
  DeviceCopy c;
  c.host_images = host_images;
  c.host_labels = host_labels;
  c.images = empty(host_images.sizes(), TensorOptions(host_images.dtype()).device(device));
  c.labels = empty(host_labels.sizes(), TensorOptions(host_labels.dtype()).device(device));
  // The new blocks may have been freed by work still queued on the current
  // stream: the copy stream waits for that work first.
  cudaStream_t current = cuda::detail::stream_for_device(device.index());
  std::shared_ptr<void> queued = new_event();
  TANDEM_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(queued.get()), current));
  cudaStream_t copy = as_stream(copy_stream);
  TANDEM_CUDA_CHECK(cudaStreamWaitEvent(copy, static_cast<cudaEvent_t>(queued.get()), 0));
  TANDEM_CUDA_CHECK(cudaMemcpyAsync(c.images.raw_data(), host_images.raw_data(),
                                    host_images.nbytes(), cudaMemcpyHostToDevice, copy));
  TANDEM_CUDA_CHECK(cudaMemcpyAsync(c.labels.raw_data(), host_labels.raw_data(),
                                    host_labels.nbytes(), cudaMemcpyHostToDevice, copy));
  // The pinned blocks stay out of the pinned pool until the copies have read
  // them, even if the caller drops this DeviceCopy before they have.
  cuda::detail::record_pinned_use(host_images.raw_data(), device.index(), copy);
  cuda::detail::record_pinned_use(host_labels.raw_data(), device.index(), copy);
  c.done = new_event();
  TANDEM_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(c.done.get()), copy));
  return c;
}

void wait_on_current_stream(const DeviceCopy& c) {
  const int dev = c.images.device().index();
  cuda::detail::DeviceGuard guard(dev);
  TANDEM_CUDA_CHECK(cudaStreamWaitEvent(cuda::detail::stream_for_device(dev),
                                        static_cast<cudaEvent_t>(c.done.get()), 0));
}

void wait_host(const DeviceCopy& c) {
  if (!c.done) return;
  cuda::detail::count_host_sync();
  TANDEM_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(c.done.get())));
}

namespace {

#if !defined(TANDEM_EMU)
// Thrust's temporary storage from tandem's caching allocator instead of
// cudaMalloc/cudaFree (thrust::cuda::par(alloc)); the blocks go back to the
// cache on deallocate, on the stream they were taken on (the sort's).
class ThrustCachingAllocator {
 public:
  using value_type = char;
  explicit ThrustCachingAllocator(int device) : device_(device) {}
  char* allocate(std::ptrdiff_t nbytes) {
    std::shared_ptr<void> mem = cuda::detail::allocate_device(static_cast<size_t>(nbytes), device_);
    char* p = static_cast<char*>(mem.get());
    blocks_.emplace_back(p, std::move(mem));
    return p;
  }
  void deallocate(char* p, size_t /*nbytes*/) {
    for (auto it = blocks_.begin(); it != blocks_.end(); ++it) {
      if (it->first == p) {
        blocks_.erase(it);
        return;
      }
    }
  }

 private:
  int device_;
  std::vector<std::pair<char*, std::shared_ptr<void>>> blocks_;
};
#endif

}  // namespace

Tensor device_shuffled_order(uint64_t seed, int64_t n, int64_t epoch, Device device) {
  cuda::detail::DeviceGuard guard(device.index());
  Tensor keys = empty({n}, TensorOptions(kInt64).device(device));
  Tensor index = empty({n}, TensorOptions(kInt64).device(device));
  auto* k = reinterpret_cast<uint64_t*>(keys.data_ptr<int64_t>());
  int64_t* idx = index.data_ptr<int64_t>();
  cudaStream_t stream = cuda::detail::stream_for_device(device.index());
  const int grid = static_cast<int>(ceil_div<int64_t>(n, kBlockSize));
  TANDEM_LAUNCH(grid, kBlockSize, 0, stream, shuffle_keys_kernel)(k, idx, n, seed, epoch);
#if defined(TANDEM_EMU)
  // thrust::stable_sort_by_key on the host, in the stream's order: the same
  // permutation (equal keys keep their order). Its scratch (the unsorted keys
  // and values) comes from the caching allocator, as Thrust's does on a GPU.
  const auto count = static_cast<size_t>(n);
  cuda::detail::DeviceWorkspace scratch(count * (sizeof(uint64_t) + sizeof(int64_t)));
  auto* old_keys = scratch.as<uint64_t>();
  auto* old_values = reinterpret_cast<int64_t*>(old_keys + count);
  ::tandem::emu::enqueue(stream, "thrust::stable_sort_by_key", [=] {
    constexpr const char* kWhat = "thrust::stable_sort_by_key";
    if (!::tandem::emu::check_device_range(kWhat, "keys", k, count * sizeof(uint64_t)) ||
        !::tandem::emu::check_device_range(kWhat, "values", idx, count * sizeof(int64_t))) {
      return;
    }
    std::copy(k, k + count, old_keys);
    std::copy(idx, idx + count, old_values);
    std::vector<size_t> perm(count);
    std::iota(perm.begin(), perm.end(), size_t{0});
    std::stable_sort(perm.begin(), perm.end(),
                     [old_keys](size_t a, size_t b) { return old_keys[a] < old_keys[b]; });
    for (size_t i = 0; i < count; ++i) {
      k[i] = old_keys[perm[i]];
      idx[i] = old_values[perm[i]];
    }
  });
#else
  // Thrust's temporary storage comes from the caching allocator.
  ThrustCachingAllocator alloc(device.index());
  thrust::stable_sort_by_key(thrust::cuda::par(alloc).on(stream), k, k + n, idx);
#endif
  TANDEM_CUDA_CHECK_LAUNCH(thrust::stable_sort_by_key);
  return index;
}

void augment_batch_cuda(const Tensor& images_u8, const Tensor& labels, const Tensor& order,
                        int64_t start, const Tensor& lut, const AugmentParams& params,
                        uint64_t seed, int64_t epoch, Tensor* out_images, Tensor* out_labels) {
  const int64_t batch = out_images->size(0);
  const auto channels = static_cast<int32_t>(images_u8.size(1));
  TANDEM_CHECK(channels <= kMaxLutChannels,
               "DataLoader: LoaderMode::DeviceResident supports at "
               "most ",
               kMaxLutChannels, " channels, got ", channels);
  if (batch == 0) return;
  const int dev = images_u8.device().index();
  cuda::detail::DeviceGuard guard(dev);
  cudaStream_t stream = cuda::detail::stream_for_device(dev);
  TANDEM_LAUNCH(static_cast<unsigned>(batch), kBlockSize, 0, stream, augment_batch_kernel)
  (images_u8.data_ptr<uint8_t>(), labels.data_ptr<int64_t>(), order.data_ptr<int64_t>(), start,
   lut.data_ptr<float>(), params, seed, epoch, channels, static_cast<int32_t>(images_u8.size(2)),
   static_cast<int32_t>(images_u8.size(3)), out_images->data_ptr<float>(),
   out_labels->data_ptr<int64_t>());
}

}  // namespace detail
}  // namespace data
}  // namespace tandem
