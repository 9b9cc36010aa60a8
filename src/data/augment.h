// The data loader's per-sample randomness and pixel formula, written once for
// the CPU loader (src/data/loader.cpp) and the GPU-resident one
// (src/data/data_cuda.cu), so the two produce bit-identical batches.
//
// Randomness: Philox4x32-10 keyed by the loader's seed.
//   shuffle key of sample i in epoch e : counter (i, i >> 32, e, kShuffleStream)
//     -> 64-bit key (x, y); the epoch's order sorts samples by (key, i).
//   augmentation of sample i in epoch e: counter (i, i >> 32, e, kAugmentStream)
//     -> x: crop row offset, y: crop column offset, z: flip (low bit;
//        alternating flips take epoch 0's bit, flipped in odd epochs),
//        w: cutout centre (low 16 bits row, high 16 bits column, each
//        (r16 * n) >> 16).
//   A draw in [0, n) is (r * n) >> 32 (no division; bias < n / 2^32).
// Pixels: out = lut[c][v] where lut holds (v / 255 - mean[c]) / std[c]
// computed in double on the host, so normalisation is a table lookup and
// identical on both devices; zero padding reads value 0 (reflect padding the
// mirrored pixel), cutout writes 0.0f.
#pragma once

#include <cstdint>

#include "core/philox.h"

namespace tandem {
namespace data {
namespace detail {

constexpr uint32_t kShuffleStream = 0x5348u;  // "SH"
constexpr uint32_t kAugmentStream = 0x4147u;  // "AG"

enum FlipKind : int32_t { kNoFlip = 0, kRandomFlip = 1, kAlternatingFlip = 2 };

struct AugmentParams {
  int32_t crop_padding;  // 0: no crop
  int32_t flip;          // a FlipKind
  int32_t cutout;        // side of the cutout square, 0: off
  int32_t reflect;       // 1: the crop pads by reflection, 0: with zeros
};

// One sample's draws.
struct SampleDraw {
  int32_t dy, dx;  // crop offset in the padded image, in [0, 2 * padding]
  bool flip;
  int32_t cy, cx;  // cutout centre
};

TANDEM_HD philox::Uint4 draw(uint64_t seed, int64_t sample, int64_t epoch, uint32_t stream) {
  const uint64_t s = static_cast<uint64_t>(sample);
  const philox::Uint4 counter{static_cast<uint32_t>(s), static_cast<uint32_t>(s >> 32),
                              static_cast<uint32_t>(epoch), stream};
  return philox::philox4x32_10(counter, static_cast<uint32_t>(seed),
                               static_cast<uint32_t>(seed >> 32));
}

TANDEM_HD uint32_t below(uint32_t r, uint32_t n) {
  return static_cast<uint32_t>((static_cast<uint64_t>(r) * n) >> 32);
}

TANDEM_HD uint64_t shuffle_key(uint64_t seed, int64_t sample, int64_t epoch) {
  const philox::Uint4 r = draw(seed, sample, epoch, kShuffleStream);
  return (static_cast<uint64_t>(r.x) << 32) | r.y;
}

TANDEM_HD SampleDraw sample_draw(uint64_t seed, int64_t sample, int64_t epoch,
                                 const AugmentParams& p, int32_t height, int32_t width) {
  const philox::Uint4 r = draw(seed, sample, epoch, kAugmentStream);
  SampleDraw d;
  const uint32_t span = static_cast<uint32_t>(2 * p.crop_padding + 1);
  d.dy = p.crop_padding > 0 ? static_cast<int32_t>(below(r.x, span)) : p.crop_padding;
  d.dx = p.crop_padding > 0 ? static_cast<int32_t>(below(r.y, span)) : p.crop_padding;
  if (p.flip == kAlternatingFlip) {
    // The epoch-0 draw, complemented in odd epochs.
    const uint32_t first = epoch == 0 ? r.z : draw(seed, sample, 0, kAugmentStream).z;
    d.flip = ((first ^ static_cast<uint32_t>(epoch)) & 1u) != 0;
  } else {
    d.flip = p.flip == kRandomFlip && (r.z & 1u) != 0;
  }
  d.cy = static_cast<int32_t>(((r.w & 0xFFFFu) * static_cast<uint32_t>(height)) >> 16);
  d.cx = static_cast<int32_t>(((r.w >> 16) * static_cast<uint32_t>(width)) >> 16);
  return d;
}

// Output pixel (c, y, x) of a sample: `src` is the sample's uint8 [C, H, W]
// image, `lut` the [C, 256] normalisation table (a float pointer, or the
// kernel's TANDEM_SHARED copy of it).
template <typename Lut>
TANDEM_HD float augmented_pixel(const uint8_t* src, Lut lut, const SampleDraw& d,
                                const AugmentParams& p, int32_t c, int32_t y, int32_t x,
                                int32_t height, int32_t width) {
  if (p.cutout > 0) {
    const int32_t y0 = d.cy - p.cutout / 2, x0 = d.cx - p.cutout / 2;
    if (y >= y0 && y < y0 + p.cutout && x >= x0 && x < x0 + p.cutout) return 0.0f;
  }
  const int32_t xs = d.flip ? width - 1 - x : x;
  int32_t sy = y + d.dy - p.crop_padding, sx = xs + d.dx - p.crop_padding;
  if (p.reflect != 0) {  // padding < size: one reflection lands inside
    sy = sy < 0 ? -sy : (sy >= height ? 2 * (height - 1) - sy : sy);
    sx = sx < 0 ? -sx : (sx >= width ? 2 * (width - 1) - sx : sx);
  }
  const bool inside = sy >= 0 && sy < height && sx >= 0 && sx < width;
  const uint8_t v = inside ? src[(static_cast<int64_t>(c) * height + sy) * width + sx] : 0;
  return lut[c * 256 + v];
}

}  // namespace detail
}  // namespace data
}  // namespace tandem
