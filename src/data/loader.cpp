// The DataLoader: seeded order, batching, augmentation and normalisation
// (src/data/augment.h), background threads building batches into pinned host
// buffers with copies on the loader's own CUDA stream (HostPrefetch), or the
// whole data set on the device with per-batch kernels (DeviceResident).
#include <algorithm>
#include <condition_variable>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <thread>

#include "data/augment.h"
#include "data/data_cuda.h"
#include "data/data_internal.h"
#include "tandem/cuda.h"
#include "tandem/data.h"
#include "tandem/dist.h"

namespace tandem {
namespace data {

Normalize cifar10_normalize() {
  return Normalize{{0.4914, 0.4822, 0.4465}, {0.2470, 0.2435, 0.2616}};
}

namespace {

struct HostBatch {
  Tensor images, labels;
  std::exception_ptr error;
};

}  // namespace

struct DataLoader::Impl {
  ImageDataset ds;
  LoaderOptions opt;
  int64_t n = 0, channels = 0, height = 0, width = 0;
  std::vector<float> lut;  // [C, 256]
  detail::AugmentParams params{};

  // Iteration state.
  int64_t epoch = 0;
  std::vector<int64_t> order;
  int64_t pos = 0;  // next batch to hand out
  bool started = false;

  // HostPrefetch workers.
  std::mutex mutex;
  std::condition_variable cv_ready, cv_space;
  std::map<int64_t, HostBatch> ready;
  int64_t claim = 0, consumed = 0;
  bool stop = false;
  std::vector<std::thread> threads;

  // CUDA copies.
  std::optional<cuda::Stream> copy_stream;
  std::optional<detail::DeviceCopy> pending;
  std::deque<detail::DeviceCopy> inflight;

  // DeviceResident.
  Tensor dev_images, dev_labels, dev_lut, dev_order;
  int64_t dev_order_epoch = -1;

  ~Impl() { stop_workers(); }

  int64_t epoch_len = 0;  // samples per epoch: n, or this rank's shard
  int64_t num_batches() const {
    const int64_t b = opt.batch_size;
    return opt.drop_last ? epoch_len / b : (epoch_len + b - 1) / b;
  }
  int64_t batch_len(int64_t index) const {
    return std::min(opt.batch_size, epoch_len - index * opt.batch_size);
  }

  // The last order computed, so batch() at random access does not sort per call.
  mutable std::mutex order_cache_mutex;
  mutable int64_t cached_epoch = 0;
  mutable std::shared_ptr<const std::vector<int64_t>> cached_order;

  std::shared_ptr<const std::vector<int64_t>> cached_permutation(int64_t e) const {
    std::lock_guard<std::mutex> lock(order_cache_mutex);
    if (!cached_order || cached_epoch != e) {
      cached_order = std::make_shared<const std::vector<int64_t>>(permutation(e));
      cached_epoch = e;
    }
    return cached_order;
  }

  std::vector<int64_t> permutation(int64_t e) const {
    std::vector<int64_t> id;
    if (opt.shuffle) {
      id = detail::shuffled_order(opt.seed, n, e);
    } else {
      id.resize(static_cast<size_t>(n));
      std::iota(id.begin(), id.end(), 0);
    }
    if (opt.num_replicas == 1) return id;
    return dist::shard_indices(id, static_cast<int>(opt.rank), static_cast<int>(opt.num_replicas),
                               opt.pad_shards);
  }

  void check_index(int64_t index) const {
    TANDEM_CHECK(index >= 0 && index < num_batches(), "DataLoader::batch: batch index ", index,
                 " out of range; an epoch has ", num_batches(), " batches");
  }

  HostBatch build_host(int64_t e, const std::vector<int64_t>& ord, int64_t index,
                       bool pinned) const {
    const int64_t len = batch_len(index);
    HostBatch b;
    const TensorOptions f32 = TensorOptions(kFloat32).pinned_memory(pinned);
    b.images = empty({len, channels, height, width}, f32);
    b.labels = empty({len}, TensorOptions(kInt64).pinned_memory(pinned));
    float* img = b.images.data_ptr<float>();
    int64_t* lab = b.labels.data_ptr<int64_t>();
    const uint8_t* src = ds.images.data_ptr<uint8_t>();
    const int64_t* src_lab = ds.labels.data_ptr<int64_t>();
    const int64_t per = channels * height * width;
    const auto h = static_cast<int32_t>(height), w = static_cast<int32_t>(width);
    for (int64_t k = 0; k < len; ++k) {
      const int64_t i = ord[static_cast<size_t>(index * opt.batch_size + k)];
      lab[k] = src_lab[i];
      const detail::SampleDraw d = detail::sample_draw(opt.seed, i, e, params, h, w);
      float* out = img + k * per;
      for (int32_t c = 0; c < channels; ++c)
        for (int32_t y = 0; y < h; ++y)
          for (int32_t x = 0; x < w; ++x)
            *out++ = detail::augmented_pixel(src + i * per, lut.data(), d, params, c, y, x, h, w);
    }
    return b;
  }

  // ---- HostPrefetch threads ----

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stop = true;
    }
    cv_space.notify_all();
    for (auto& t : threads) t.join();
    threads.clear();
    ready.clear();
    if (pending) {
      detail::wait_host(*pending);
      pending.reset();
    }
    for (auto& c : inflight) detail::wait_host(c);
    inflight.clear();
  }

  void worker() {
    const bool pinned = opt.device.is_cuda();
    for (;;) {
      int64_t b;
      {
        std::unique_lock<std::mutex> lock(mutex);
        cv_space.wait(lock, [&] {
          return stop || claim >= num_batches() || claim < consumed + opt.prefetch;
        });
        if (stop || claim >= num_batches()) return;
        b = claim++;
      }
      HostBatch hb;
      try {
        hb = build_host(epoch, order, b, pinned);
      } catch (...) {
        hb.error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mutex);
        ready[b] = std::move(hb);
      }
      cv_ready.notify_all();
    }
  }

  HostBatch take(int64_t b) {
    std::unique_lock<std::mutex> lock(mutex);
    cv_ready.wait(lock, [&] { return ready.count(b) != 0; });
    HostBatch hb = std::move(ready[b]);
    ready.erase(b);
    consumed = b + 1;
    lock.unlock();
    cv_space.notify_all();
    if (hb.error) std::rethrow_exception(hb.error);
    return hb;
  }

  void start(int64_t e) {
    stop_workers();
    epoch = e;
    pos = 0;
    started = true;
    if (opt.mode == LoaderMode::DeviceResident) {
      ensure_device_order(e);
      return;
    }
    order = *cached_permutation(e);
    stop = false;
    claim = 0;
    consumed = 0;
    const int nthreads =
        static_cast<int>(std::min<int64_t>(opt.workers, std::max<int64_t>(num_batches(), 1)));
    for (int t = 0; t < nthreads; ++t) threads.emplace_back([this] { worker(); });
  }

  detail::DeviceCopy upload(HostBatch hb) {
    if (!copy_stream) copy_stream = cuda::new_stream(opt.device.index());
    return detail::upload_async(hb.images, hb.labels, opt.device, *copy_stream);
  }

  bool next_host(Batch* out) {
    const int64_t nb = num_batches();
    if (!opt.device.is_cuda()) {
      if (pos >= nb) return false;
      HostBatch hb = take(pos++);
      out->images = hb.images;
      out->labels = hb.labels;
      return true;
    }
    // One batch ahead: batch pos + 1 is copied while the caller computes on pos.
    if (!pending && pos < nb) pending = upload(take(pos));
    if (!pending) return false;
    detail::DeviceCopy cur = std::move(*pending);
    pending.reset();
    ++pos;
    if (pos < nb) pending = upload(take(pos));
    detail::wait_on_current_stream(cur);
    out->images = cur.images;
    out->labels = cur.labels;
    inflight.push_back(std::move(cur));
    while (inflight.size() > 2) {  // its pinned buffers may go once the copy is done
      detail::wait_host(inflight.front());
      inflight.pop_front();
    }
    return true;
  }

  // ---- DeviceResident ----

  void ensure_device_data() {
    if (dev_images.defined()) return;
    dev_images = ds.images.to(opt.device);
    dev_labels = ds.labels.to(opt.device);
    dev_lut = from_vector(lut, {channels, 256}).to(opt.device);
  }

  void ensure_device_order(int64_t e) {
    ensure_device_data();
    if (dev_order.defined() && dev_order_epoch == e) return;
    if (opt.num_replicas > 1) {
      const std::vector<int64_t> host = permutation(e);
      dev_order = from_vector(host).to(opt.device);
    } else if (opt.shuffle) {
      dev_order = detail::device_shuffled_order(opt.seed, n, e, opt.device);
    } else {
      dev_order = arange(static_cast<double>(n), TensorOptions(kInt64).device(opt.device));
    }
    dev_order_epoch = e;
  }

  Batch device_batch(int64_t e, int64_t index) {
    ensure_device_order(e);
    const int64_t len = batch_len(index);
    Batch b;
    b.images = empty({len, channels, height, width}, TensorOptions(kFloat32).device(opt.device));
    b.labels = empty({len}, TensorOptions(kInt64).device(opt.device));
    detail::augment_batch_cuda(dev_images, dev_labels, dev_order, index * opt.batch_size, dev_lut,
                               params, opt.seed, e, &b.images, &b.labels);
    return b;
  }
};

DataLoader::DataLoader(ImageDataset dataset, LoaderOptions options)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  TANDEM_CHECK(dataset.images.defined() && dataset.labels.defined(),
               "DataLoader: the data set is empty (undefined images or labels)");
  TANDEM_CHECK(
      dataset.images.dtype() == kUInt8 && dataset.images.dim() == 4 && dataset.images.is_cpu(),
      "DataLoader: images must be a uint8 [N, C, H, W] CPU tensor, got ",
      dtype_name(dataset.images.dtype()), " ", shape_str(dataset.images.sizes()), " on ",
      dataset.images.device().str());
  TANDEM_CHECK(
      dataset.labels.dtype() == kInt64 && dataset.labels.dim() == 1 && dataset.labels.is_cpu() &&
          dataset.labels.numel() == dataset.images.size(0),
      "DataLoader: labels must be an int64 [N] CPU tensor with N = ", dataset.images.size(0),
      ", got ", dtype_name(dataset.labels.dtype()), " ", shape_str(dataset.labels.sizes()));
  TANDEM_CHECK(dataset.size() > 0, "DataLoader: the data set has no samples");
  TANDEM_CHECK(options.batch_size > 0, "DataLoader: batch_size must be positive, got ",
               options.batch_size);
  TANDEM_CHECK(options.workers >= 1 && options.prefetch >= 1,
               "DataLoader: workers and prefetch must be at least 1, got ", options.workers,
               " and ", options.prefetch);
  m.n = dataset.size();
  TANDEM_CHECK(
      options.num_replicas >= 1 && options.rank >= 0 && options.rank < options.num_replicas,
      "DataLoader: rank ", options.rank, " is not in [0, num_replicas ", options.num_replicas, ")");
  m.epoch_len = options.num_replicas == 1
                    ? m.n
                    : (options.pad_shards ? (m.n + options.num_replicas - 1) / options.num_replicas
                                          : (m.n - options.rank + options.num_replicas - 1) /
                                                options.num_replicas);
  m.channels = dataset.images.size(1);
  m.height = dataset.images.size(2);
  m.width = dataset.images.size(3);
  TANDEM_CHECK(m.height < 32768 && m.width < 32768, "DataLoader: images of ", m.height, "x",
               m.width, " are too large (at most 32767 per side)");
  const Augment& a = options.augment;
  TANDEM_CHECK(a.crop_padding >= 0 && a.crop_padding <= std::min(m.height, m.width),
               "DataLoader: augment.crop_padding must be in [0, ", std::min(m.height, m.width),
               "] for ", m.height, "x", m.width, " images, got ", a.crop_padding);
  TANDEM_CHECK(a.cutout >= 0 && a.cutout <= std::max(m.height, m.width),
               "DataLoader: augment.cutout must be in [0, ", std::max(m.height, m.width), "], got ",
               a.cutout);
  const Normalize& nz = options.normalize;
  TANDEM_CHECK(
      nz.mean.size() == nz.std.size() &&
          (nz.mean.empty() || static_cast<int64_t>(nz.mean.size()) == m.channels),
      "DataLoader: normalize.mean and normalize.std must each have one value per channel (",
      m.channels, "), got ", nz.mean.size(), " and ", nz.std.size());
  for (double s : nz.std)
    TANDEM_CHECK(s > 0.0, "DataLoader: normalize.std values must be positive, got ", s);
  if (options.device.is_cuda()) {
    TANDEM_CHECK(cuda::is_available(), "DataLoader: device ", options.device.str(),
                 " requested but CUDA is not available (",
                 cuda::is_built() ? "no device is visible" : "tandem was built without CUDA", ")");
  } else {
    TANDEM_CHECK(options.mode == LoaderMode::HostPrefetch,
                 "DataLoader: LoaderMode::DeviceResident needs a CUDA device, got device ",
                 options.device.str());
  }
  TANDEM_CHECK(a.padding != PadMode::Reflect || a.crop_padding < std::min(m.height, m.width),
               "DataLoader: reflect padding needs augment.crop_padding below the image size (",
               std::min(m.height, m.width), "), got ", a.crop_padding);
  TANDEM_CHECK(!a.alternating_flip || a.horizontal_flip,
               "DataLoader: augment.alternating_flip needs augment.horizontal_flip");
  const int32_t flip = !a.horizontal_flip   ? detail::kNoFlip
                       : a.alternating_flip ? detail::kAlternatingFlip
                                            : detail::kRandomFlip;
  m.params =
      detail::AugmentParams{static_cast<int32_t>(a.crop_padding), flip,
                            static_cast<int32_t>(a.cutout), a.padding == PadMode::Reflect ? 1 : 0};
  m.lut.resize(static_cast<size_t>(m.channels * 256));
  for (int64_t c = 0; c < m.channels; ++c)
    for (int v = 0; v < 256; ++v) {
      const double x = v / 255.0;
      m.lut[static_cast<size_t>(c * 256 + v)] =
          static_cast<float>(nz.mean.empty() ? x : (x - nz.mean[c]) / nz.std[c]);
    }
  m.ds = std::move(dataset);
  m.opt = std::move(options);
}

DataLoader::~DataLoader() = default;
DataLoader::DataLoader(DataLoader&&) noexcept = default;
DataLoader& DataLoader::operator=(DataLoader&&) noexcept = default;

int64_t DataLoader::size() const { return impl_->n; }
int64_t DataLoader::epoch_size() const { return impl_->epoch_len; }
int64_t DataLoader::num_batches() const { return impl_->num_batches(); }
const LoaderOptions& DataLoader::options() const { return impl_->opt; }
std::vector<int64_t> DataLoader::permutation(int64_t epoch) const {
  return impl_->permutation(epoch);
}

Batch DataLoader::batch(int64_t epoch, int64_t index) const {
  impl_->check_index(index);
  if (impl_->opt.mode == LoaderMode::DeviceResident) return impl_->device_batch(epoch, index);
  HostBatch hb = impl_->build_host(epoch, *impl_->cached_permutation(epoch), index, false);
  Batch b{hb.images, hb.labels};
  if (impl_->opt.device.is_cuda()) {
    b.images = b.images.to(impl_->opt.device);
    b.labels = b.labels.to(impl_->opt.device);
  }
  return b;
}

void DataLoader::start_epoch(int64_t epoch) { impl_->start(epoch); }

bool DataLoader::next(Batch* out) {
  TANDEM_CHECK(out != nullptr, "DataLoader::next: null output");
  TANDEM_CHECK(impl_->started, "DataLoader::next: call start_epoch(epoch) first");
  if (impl_->opt.mode == LoaderMode::DeviceResident) {
    if (impl_->pos >= impl_->num_batches()) return false;
    *out = impl_->device_batch(impl_->epoch, impl_->pos++);
    return true;
  }
  return impl_->next_host(out);
}

}  // namespace data
}  // namespace tandem
