// One record per slicing case (slice, narrow, select, chunk, split,
// split_with_sizes, unbind, index): the call, and its reference written out by
// hand as the indices it picks in each dim of the input (Python's / libtorch's
// meaning worked out in the record, negative and clamped ends included) with
// the result's shape, and whether the result aliases the input (the dense-range
// rule of tensor.h). The CPU reference suite (test_ops_indexing.cpp), the CUDA
// parity suite (test_cuda_indexing.cpp) and gradcheck (grad_cases.h) iterate
// over these records.
#pragma once

#include <tandem/tandem.h>

#include <functional>
#include <string>
#include <vector>

namespace tt {

// One result tensor: the input indices it picks, per input dim, outermost
// first (its elements are those of the cartesian product in row-major order),
// and its shape (dims dropped by integer indices, added by None).
struct SlicePiece {
  std::vector<std::vector<int64_t>> picks;
  tandem::Shape shape;
  bool aliases;  // shares the input's storage (else a copy)
};

struct SliceRecord {
  std::string name;
  tandem::Shape input;
  std::function<std::vector<tandem::Tensor>(const tandem::Tensor&)> fn;
  std::vector<SlicePiece> pieces;
};

// a, a + step, ... below b: a literal Python range with a <= b, step >= 1.
inline std::vector<int64_t> picks_range(int64_t a, int64_t b, int64_t step = 1) {
  std::vector<int64_t> v;
  for (int64_t i = a; i < b; i += step) v.push_back(i);
  return v;
}
inline std::vector<int64_t> picks_all(int64_t n) { return picks_range(0, n); }

// The float64 reference of one piece: x's elements at the picked indices.
inline std::vector<double> slice_reference(const std::vector<double>& x, const tandem::Shape& in,
                                           const SlicePiece& p) {
  const size_t nd = in.size();
  std::vector<double> out;
  std::vector<size_t> j(nd, 0);
  for (const auto& pick : p.picks)
    if (pick.empty()) return out;
  for (;;) {
    int64_t flat = 0;
    for (size_t d = 0; d < nd; ++d) flat = flat * in[d] + p.picks[d][j[d]];
    out.push_back(x[static_cast<size_t>(flat)]);
    size_t d = nd;
    while (d > 0 && ++j[d - 1] == p.picks[d - 1].size()) j[--d] = 0;
    if (d == 0) return out;
  }
}

inline std::vector<SliceRecord> slice_records() {
  using namespace tandem::indexing;  // NOLINT(google-build-using-namespace)
  using tandem::Tensor;
  using V = std::vector<Tensor>;
  const auto one = [](auto f) { return [f](const Tensor& x) { return V{f(x)}; }; };
  const auto all = [](int64_t n) { return picks_all(n); };
  const auto range = [](int64_t a, int64_t b, int64_t step = 1) { return picks_range(a, b, step); };
  std::vector<SliceRecord> r;
  // The examples ("done when"), on an image-like batch.
  r.push_back({"slice(1, 0, 5)",
               {2, 7, 3, 4},
               one([](const Tensor& x) { return x.slice(1, 0, 5); }),
               {{{all(2), range(0, 5), all(3), all(4)}, {2, 5, 3, 4}, false}}});
  r.push_back({"narrow(2, 2, 28)",
               {2, 3, 32, 32},
               one([](const Tensor& x) { return x.narrow(2, 2, 28); }),
               {{{all(2), all(3), range(2, 30), all(32)}, {2, 3, 28, 32}, false}}});
  r.push_back({"select(1, 0)",
               {3, 4, 5, 6},
               one([](const Tensor& x) { return x.select(1, 0); }),
               {{{all(3), {0}, all(5), all(6)}, {3, 5, 6}, false}}});
  r.push_back({"chunk(4, 1)",
               {2, 10, 3},
               [](const Tensor& x) { return x.chunk(4, 1); },
               {{{all(2), range(0, 3), all(3)}, {2, 3, 3}, false},
                {{all(2), range(3, 6), all(3)}, {2, 3, 3}, false},
                {{all(2), range(6, 9), all(3)}, {2, 3, 3}, false},
                {{all(2), {9}, all(3)}, {2, 1, 3}, false}}});
  r.push_back({"index({Slice(), Slice(), Slice(2, 30), Slice(2, 30)})",
               {2, 3, 32, 32},
               one([](const Tensor& x) {
                 return x.index({Slice(), Slice(), Slice(2, 30), Slice(2, 30)});
               }),
               {{{all(2), all(3), range(2, 30), range(2, 30)}, {2, 3, 28, 28}, false}}});
  // slice: negative and clamped ends, steps, empty results, dim 0 aliases.
  r.push_back({"slice(-1, -3, 100)",
               {4, 7},
               one([](const Tensor& x) { return x.slice(-1, -3, 100); }),
               {{{all(4), {4, 5, 6}}, {4, 3}, false}}});
  r.push_back({"slice(0, -100, 2)",
               {5, 3},
               one([](const Tensor& x) { return x.slice(0, -100, 2); }),
               {{{{0, 1}, all(3)}, {2, 3}, true}}});
  r.push_back({"slice(0, -4, -1)",
               {6, 2},
               one([](const Tensor& x) { return x.slice(0, -4, -1); }),
               {{{{2, 3, 4}, all(2)}, {3, 2}, true}}});
  r.push_back({"slice(1, 1, None, 3)",
               {3, 8},
               one([](const Tensor& x) { return x.slice(1, 1, std::nullopt, 3); }),
               {{{all(3), {1, 4, 7}}, {3, 3}, false}}});
  r.push_back({"slice(0, 4, 2) (empty)",
               {5, 3},
               one([](const Tensor& x) { return x.slice(0, 4, 2); }),
               {{{{}, all(3)}, {0, 3}, false}}});
  r.push_back({"slice(0, 1, 5, 2)",
               {6, 2},
               one([](const Tensor& x) { return x.slice(0, 1, 5, 2); }),
               {{{{1, 3}, all(2)}, {2, 2}, false}}});
  r.push_back({"slice(0, 1, 3)",
               {5, 3, 2},
               one([](const Tensor& x) { return x.slice(0, 1, 3); }),
               {{{{1, 2}, all(3), all(2)}, {2, 3, 2}, true}}});
  r.push_back({"slice(1, 2) of [1, 5, 3] (outer dim of size 1)",
               {1, 5, 3},
               one([](const Tensor& x) { return x.slice(1, 2); }),
               {{{{0}, {2, 3, 4}, all(3)}, {1, 3, 3}, true}}});
  r.push_back({"slice(1, 5, None, 7) long rows",
               {3, 100003},
               one([](const Tensor& x) { return x.slice(1, 5, std::nullopt, 7); }),
               {{{all(3), range(5, 100003, 7)}, {3, 14286}, false}}});
  // narrow, select.
  r.push_back({"narrow(0, -3, 2)",
               {5, 4},
               one([](const Tensor& x) { return x.narrow(0, -3, 2); }),
               {{{{2, 3}, all(4)}, {2, 4}, true}}});
  r.push_back({"narrow(-1, 1, 0) (empty)",
               {3, 4},
               one([](const Tensor& x) { return x.narrow(-1, 1, 0); }),
               {{{all(3), {}}, {3, 0}, false}}});
  r.push_back({"select(-1, -2)",
               {3, 4, 5},
               one([](const Tensor& x) { return x.select(-1, -2); }),
               {{{all(3), all(4), {3}}, {3, 4}, false}}});
  r.push_back({"select(0, 2)",
               {4, 3},
               one([](const Tensor& x) { return x.select(0, 2); }),
               {{{{2}, all(3)}, {3}, true}}});
  r.push_back({"select(1, 3) of [1, 4, 3]",
               {1, 4, 3},
               one([](const Tensor& x) { return x.select(1, 3); }),
               {{{{0}, {3}, all(3)}, {1, 3}, true}}});
  // chunk, split, split_with_sizes, unbind.
  r.push_back({"chunk(4, 1) of 6 (3 pieces)",
               {2, 6},
               [](const Tensor& x) { return x.chunk(4, 1); },
               {{{all(2), {0, 1}}, {2, 2}, false},
                {{all(2), {2, 3}}, {2, 2}, false},
                {{all(2), {4, 5}}, {2, 2}, false}}});
  r.push_back({"chunk(3) of an empty dim",
               {0, 2},
               [](const Tensor& x) { return x.chunk(3); },
               {{{{}, all(2)}, {0, 2}, false},
                {{{}, all(2)}, {0, 2}, false},
                {{{}, all(2)}, {0, 2}, false}}});
  r.push_back({"chunk(2, 0)",
               {5, 2},
               [](const Tensor& x) { return x.chunk(2, 0); },
               {{{{0, 1, 2}, all(2)}, {3, 2}, true}, {{{3, 4}, all(2)}, {2, 2}, true}}});
  r.push_back({"split(3, 2)",
               {2, 3, 8},
               [](const Tensor& x) { return x.split(3, 2); },
               {{{all(2), all(3), {0, 1, 2}}, {2, 3, 3}, false},
                {{all(2), all(3), {3, 4, 5}}, {2, 3, 3}, false},
                {{all(2), all(3), {6, 7}}, {2, 3, 2}, false}}});
  r.push_back({"split_with_sizes({1, 0, 4}, 1)",
               {3, 5, 2},
               [](const Tensor& x) {
                 return x.split_with_sizes({1, 0, 4}, 1);
               },
               {{{all(3), {0}, all(2)}, {3, 1, 2}, false},
                {{all(3), {}, all(2)}, {3, 0, 2}, false},
                {{all(3), {1, 2, 3, 4}, all(2)}, {3, 4, 2}, false}}});
  r.push_back({"unbind(1)",
               {2, 3, 4},
               [](const Tensor& x) { return x.unbind(1); },
               {{{all(2), {0}, all(4)}, {2, 4}, false},
                {{all(2), {1}, all(4)}, {2, 4}, false},
                {{all(2), {2}, all(4)}, {2, 4}, false}}});
  // index: Ellipsis, None, integers, negative ends, steps.
  r.push_back({"index({Ellipsis, 1})",
               {2, 3, 4},
               one([](const Tensor& x) {
                 return x.index({Ellipsis, 1});
               }),
               {{{all(2), all(3), {1}}, {2, 3}, false}}});
  r.push_back({"index({None, 1, Ellipsis, Slice(None, None, 2), None})",
               {3, 4, 5, 6},
               one([](const Tensor& x) {
                 return x.index({None, 1, Ellipsis, Slice(None, None, 2), None});
               }),
               {{{{1}, all(4), all(5), {0, 2, 4}}, {1, 4, 5, 3, 1}, false}}});
  r.push_back({"index({-1, Slice(1, 3)})",
               {3, 4, 5},
               one([](const Tensor& x) {
                 return x.index({-1, Slice(1, 3)});
               }),
               {{{{2}, {1, 2}, all(5)}, {2, 5}, true}}});
  r.push_back({"index({Slice(-2, None), Slice(None, -1)})",
               {4, 5},
               one([](const Tensor& x) {
                 return x.index({Slice(-2, None), Slice(None, -1)});
               }),
               {{{{2, 3}, {0, 1, 2, 3}}, {2, 4}, false}}});
  r.push_back({"index({1, Slice(), 2, Slice(0, 7, 3)})",
               {3, 4, 5, 7},
               one([](const Tensor& x) {
                 return x.index({1, Slice(), 2, Slice(0, 7, 3)});
               }),
               {{{{1}, all(4), {2}, {0, 3, 6}}, {4, 3}, false}}});
  r.push_back({"index({})",
               {2, 3},
               one([](const Tensor& x) { return x.index({}); }),
               {{{all(2), all(3)}, {2, 3}, true}}});
  r.push_back({"index({None}) of a 0-dim tensor",
               {},
               one([](const Tensor& x) { return x.index({None}); }),
               {{{}, {1}, true}}});
  return r;
}

}  // namespace tt
