// CPU reductions: x (contiguous) viewed as [outer, n, inner], reduced over n
// into out [outer, inner].
//   - Sum: float32/float64 accumulate in double, integers in int64 (wrapping);
//     integer sums write int64. Mean: floating only, double sum / n.
//   - Max/Min propagate NaN; ArgMax/ArgMin write int64, the first occurrence of
//     the extreme wins and the first NaN counts as the extreme (as PyTorch, and
//     as kernels/reduce.cu).
// Work is split into tasks of up to kBlock adjacent output columns (so inner > 1
// reads whole cache lines); when there are too few tasks to occupy the threads,
// n is cut into chunks whose partial results merge in order. The split depends
// only on the shapes, so results are deterministic whatever the thread count.
#include <algorithm>
#include <array>
#include <type_traits>
#include <vector>

#include "cpu/cpu_utils.h"

namespace tandem {
namespace cpu {

namespace {

constexpr int64_t kBlock = 64;          // output columns per task
constexpr int64_t kChunkElems = 16384;  // elements per task when n is split
constexpr int64_t kMinTasks = 64;       // fewer tasks than this: split n

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A reducer R: Acc first(v, j); step(acc, v, j); merge(acc, later_acc);
// Out finish(acc, n).
template <typename T, typename OutT, bool kMean>
struct SumReducer {
  using In = T;
  using Out = OutT;
  using Acc = std::conditional_t<util::kIsFloat<T>, double, int64_t>;
  // Floating sums split a contiguous row into eight chains (rounding differs
  // from one chain, and is still fixed by the shape). Integer sums keep one
  // chain: wrapping adds need no chains for speed (the compiler vectorizes the
  // plain loop), and GCC 12's -O3 loop vectorizer miscompiles the eight-chain
  // loop for uint8 -> int64, dropping elements of a chunk whose length mod 16
  // is 8..15 (a sum of 1001000 uint8 ones gave 1000209).
  static constexpr bool kChains = util::kIsFloat<T>;
  static Acc first(T v, int64_t) { return static_cast<Acc>(v); }
  static void step(Acc& a, T v, int64_t) { a = util::add_wrap(a, static_cast<Acc>(v)); }
  static void merge(Acc& a, const Acc& later) { a = util::add_wrap(a, later); }
  static Out finish(const Acc& a, int64_t n) {
    if constexpr (kMean) {
      return static_cast<Out>(static_cast<double>(a) / static_cast<double>(n));
    } else {
      return static_cast<Out>(a);
    }
  }
};

enum class Extremum : int8_t { Max, Min };
enum class Result : int8_t { Value, Index };

template <typename T, Extremum kDir, Result kResult>
struct ExtremumReducer {
  using In = T;
  using Out = std::conditional_t<kResult == Result::Value, T, int64_t>;
  struct Acc {
    T v;
    int64_t i;
  };
  static constexpr bool kChains = false;  // the first extreme must win: one chain
  // Strictly better only: ties (and a second NaN) keep the earlier element.
  static bool better(T v, T best) {
    if (util::is_nan(best)) return false;
    if (util::is_nan(v)) return true;
    return kDir == Extremum::Max ? v > best : v < best;
  }
  static Acc first(T v, int64_t j) { return Acc{v, j}; }
  static void step(Acc& a, T v, int64_t j) {
    if (better(v, a.v)) a = Acc{v, j};
  }
  static void merge(Acc& a, const Acc& later) {
    if (better(later.v, a.v)) a = later;
  }
  static Out finish(const Acc& a, int64_t) {
    if constexpr (kResult == Result::Value) {
      return a.v;
    } else {
      return a.i;
    }
  }
};

template <typename R>
void run_reduce(const Tensor& x, Tensor& out, int64_t outer, int64_t n, int64_t inner) {
  using In = typename R::In;
  using Out = typename R::Out;
  using Acc = typename R::Acc;
  const In* px = x.data_ptr<In>();
  Out* po = out.data_ptr<Out>();
  const int64_t width = std::min(inner, kBlock);
  const int64_t blocks_per_outer = ceil_div(inner, width);
  const int64_t blocks = outer * blocks_per_outer;
  const int64_t chunk_rows = std::max<int64_t>(1, kChunkElems / width);
  const int64_t chunks = blocks >= kMinTasks ? 1 : ceil_div(n, chunk_rows);

  // Reduces rows [j0, j1) of block b into acc[0, w); returns w.
  const auto accumulate = [&](int64_t b, int64_t j0, int64_t j1, Acc* acc) {
    const int64_t i0 = (b % blocks_per_outer) * width;
    const int64_t w = std::min(width, inner - i0);
    const In* base = px + (b / blocks_per_outer) * n * inner + i0;
    if (w == 1) {  // a single column (inner == 1: a contiguous row)
      if constexpr (R::kChains) {
        if (inner == 1 && j1 - j0 >= 16) {
          // Sums of a contiguous row: eight independent chains (one chain of
          // double adds waits on itself: ~4 cycles per element).
          std::array<Acc, 8> part;
          for (int l = 0; l < 8; ++l) part[l] = R::first(base[j0 + l], j0 + l);
          int64_t j = j0 + 8;
          for (; j + 8 <= j1; j += 8) {
            for (int l = 0; l < 8; ++l) R::step(part[l], base[j + l], j + l);
          }
          for (; j < j1; ++j) R::step(part[0], base[j], j);
          for (int l : {0, 2, 4, 6}) R::merge(part[l], part[l + 1]);
          R::merge(part[0], part[2]);
          R::merge(part[4], part[6]);
          R::merge(part[0], part[4]);
          acc[0] = part[0];
          return w;
        }
      }
      Acc a = R::first(base[j0 * inner], j0);
      for (int64_t j = j0 + 1; j < j1; ++j) R::step(a, base[j * inner], j);
      acc[0] = a;
      return w;
    }
    for (int64_t i = 0; i < w; ++i) acc[i] = R::first(base[j0 * inner + i], j0);
    for (int64_t j = j0 + 1; j < j1; ++j) {
      const In* row = base + j * inner;
      for (int64_t i = 0; i < w; ++i) R::step(acc[i], row[i], j);
    }
    return w;
  };
  const auto out_of_block = [&](int64_t b) {
    return po + (b / blocks_per_outer) * inner + (b % blocks_per_outer) * width;
  };

  if (chunks == 1) {
    util::parallel_for(blocks, n * width, [&](int64_t b) {
      std::array<Acc, kBlock> acc;
      const int64_t w = accumulate(b, 0, n, acc.data());
      Out* o = out_of_block(b);
      for (int64_t i = 0; i < w; ++i) o[i] = R::finish(acc[static_cast<size_t>(i)], n);
    });
    return;
  }
  std::vector<Acc> partial(static_cast<size_t>(blocks * chunks * width));
  util::parallel_for(blocks * chunks, chunk_rows * width, [&](int64_t t) {
    const int64_t c = t % chunks;
    accumulate(t / chunks, c * chunk_rows, std::min(n, (c + 1) * chunk_rows),
               partial.data() + t * width);
  });
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t w = std::min(width, inner - (b % blocks_per_outer) * width);
    Out* o = out_of_block(b);
    for (int64_t i = 0; i < w; ++i) {
      Acc a = partial[static_cast<size_t>(b * chunks * width + i)];
      for (int64_t c = 1; c < chunks; ++c) {
        R::merge(a, partial[static_cast<size_t>((b * chunks + c) * width + i)]);
      }
      o[i] = R::finish(a, n);
    }
  }
}

template <Extremum kDir, Result kResult>
void extremum(const char* name, const Tensor& x, Tensor& out, int64_t outer, int64_t n,
              int64_t inner) {
  TANDEM_DISPATCH_ALL(x.dtype(), name, [&] {
    run_reduce<ExtremumReducer<scalar_t, kDir, kResult>>(x, out, outer, n, inner);
  });
}

}  // namespace

void reduce(ReduceOp op, const Tensor& x, Tensor& out, int64_t outer, int64_t n, int64_t inner) {
  const char* name = op_name(op);
  TANDEM_CHECK(n >= 1 && outer >= 1 && inner >= 1, name, ": bad reduction geometry [", outer, ", ",
               n, ", ", inner, "]");
  switch (op) {
    case ReduceOp::Sum:
      TANDEM_DISPATCH_ALL(x.dtype(), name, [&] {
        // Integer sums (int32 and uint8 too) are written as int64.
        using Out = std::conditional_t<util::kIsFloat<scalar_t>, scalar_t, int64_t>;
        run_reduce<SumReducer<scalar_t, Out, false>>(x, out, outer, n, inner);
      });
      return;
    case ReduceOp::Mean:
      TANDEM_DISPATCH_FLOATING(x.dtype(), name, [&] {
        run_reduce<SumReducer<scalar_t, scalar_t, true>>(x, out, outer, n, inner);
      });
      return;
    case ReduceOp::Max:
      return extremum<Extremum::Max, Result::Value>(name, x, out, outer, n, inner);
    case ReduceOp::Min:
      return extremum<Extremum::Min, Result::Value>(name, x, out, outer, n, inner);
    case ReduceOp::ArgMax:
      return extremum<Extremum::Max, Result::Index>(name, x, out, outer, n, inner);
    case ReduceOp::ArgMin:
      return extremum<Extremum::Min, Result::Index>(name, x, out, outer, n, inner);
  }
  TANDEM_FAIL("reduce: unknown op ", static_cast<int>(op));
}

}  // namespace cpu
}  // namespace tandem
