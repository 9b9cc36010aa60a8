// The slicing cases of the op registry (tandem/check.h: SliceCase): slice,
// narrow, select, chunk, split, split_with_sizes, unbind and index, each with
// the input indices every piece picks written out by hand, the pieces' shapes
// and whether each aliases its input. records.cpp makes one record of each
// (family "slice"); the tests check the shapes and aliasing from this table.
#include <tandem/check.h>

namespace tandem::check {
namespace {

// a, a + step, ... below b: a literal Python range with a <= b, step >= 1.
std::vector<int64_t> range(int64_t a, int64_t b, int64_t step = 1) {
  std::vector<int64_t> v;
  for (int64_t i = a; i < b; i += step) v.push_back(i);
  return v;
}
std::vector<int64_t> all(int64_t n) { return range(0, n); }

using V = std::vector<Tensor>;
template <typename F>
std::function<V(const Tensor&)> one(F f) {
  return [f](const Tensor& x) { return V{f(x)}; };
}

std::vector<SliceCase> make_cases() {
  using namespace indexing;  // NOLINT(google-build-using-namespace)
  std::vector<SliceCase> r;
  auto add = [&](std::string op, std::string record, std::string call, Shape input,
                 std::function<V(const Tensor&)> fn, std::vector<SlicePiece> pieces) -> SliceCase& {
    r.push_back({std::move(op), std::move(record), std::move(call), std::move(input), std::move(fn),
                 std::move(pieces)});
    return r.back();
  };
  // The examples, on an image-like batch.
  add("slice", "slice_dim1", "slice(1, 0, 5)", {2, 7, 3, 4},
      one([](const Tensor& x) { return x.slice(1, 0, 5); }),
      {{{all(2), range(0, 5), all(3), all(4)}, {2, 5, 3, 4}, false}});
  add("narrow", "narrow_crop", "narrow(2, 2, 28)", {2, 3, 32, 32},
      one([](const Tensor& x) { return x.narrow(2, 2, 28); }),
      {{{all(2), all(3), range(2, 30), all(32)}, {2, 3, 28, 32}, false}});
  add("select", "select_dim1", "select(1, 0)", {3, 4, 5, 6},
      one([](const Tensor& x) { return x.select(1, 0); }),
      {{{all(3), {0}, all(5), all(6)}, {3, 5, 6}, false}});
  add("chunk", "chunk_uneven", "chunk(4, 1)", {2, 10, 3},
      [](const Tensor& x) { return x.chunk(4, 1); },
      {{{all(2), range(0, 3), all(3)}, {2, 3, 3}, false},
       {{all(2), range(3, 6), all(3)}, {2, 3, 3}, false},
       {{all(2), range(6, 9), all(3)}, {2, 3, 3}, false},
       {{all(2), {9}, all(3)}, {2, 1, 3}, false}});
  add("index", "index_crop", "index({Slice(), Slice(), Slice(2, 30), Slice(2, 30)})",
      {2, 3, 32, 32}, one([](const Tensor& x) {
        return x.index({Slice(), Slice(), Slice(2, 30), Slice(2, 30)});
      }),
      {{{all(2), all(3), range(2, 30), range(2, 30)}, {2, 3, 28, 28}, false}});
  // slice: negative and clamped ends, steps, empty results, dim 0 aliases.
  add("slice", "slice_negative_clamped", "slice(-1, -3, 100)", {4, 7},
      one([](const Tensor& x) { return x.slice(-1, -3, 100); }),
      {{{all(4), {4, 5, 6}}, {4, 3}, false}});
  add("slice", "slice_clamped_start", "slice(0, -100, 2)", {5, 3},
      one([](const Tensor& x) { return x.slice(0, -100, 2); }), {{{{0, 1}, all(3)}, {2, 3}, true}});
  add("slice", "slice_negative_ends", "slice(0, -4, -1)", {6, 2},
      one([](const Tensor& x) { return x.slice(0, -4, -1); }),
      {{{{2, 3, 4}, all(2)}, {3, 2}, true}});
  add("slice", "slice_step3", "slice(1, 1, None, 3)", {3, 8},
      one([](const Tensor& x) { return x.slice(1, 1, std::nullopt, 3); }),
      {{{all(3), {1, 4, 7}}, {3, 3}, false}});
  add("slice", "slice_empty", "slice(0, 4, 2)", {5, 3},
      one([](const Tensor& x) { return x.slice(0, 4, 2); }), {{{{}, all(3)}, {0, 3}, false}});
  add("slice", "slice_step2_dim0", "slice(0, 1, 5, 2)", {6, 2},
      one([](const Tensor& x) { return x.slice(0, 1, 5, 2); }),
      {{{{1, 3}, all(2)}, {2, 2}, false}});
  add("slice", "slice_dim0", "slice(0, 1, 3)", {5, 3, 2},
      one([](const Tensor& x) { return x.slice(0, 1, 3); }),
      {{{{1, 2}, all(3), all(2)}, {2, 3, 2}, true}});
  add("slice", "slice_outer_size1", "slice(1, 2) of [1, 5, 3]", {1, 5, 3},
      one([](const Tensor& x) { return x.slice(1, 2); }),
      {{{{0}, {2, 3, 4}, all(3)}, {1, 3, 3}, true}});
  add("slice", "slice_long_rows_step7", "slice(1, 5, None, 7) of [3, 100003]", {3, 100003},
      one([](const Tensor& x) { return x.slice(1, 5, std::nullopt, 7); }),
      {{{all(3), range(5, 100003, 7)}, {3, 14286}, false}})
      .quick = false;
  // narrow, select.
  add("narrow", "narrow_negative_start", "narrow(0, -3, 2)", {5, 4},
      one([](const Tensor& x) { return x.narrow(0, -3, 2); }), {{{{2, 3}, all(4)}, {2, 4}, true}});
  add("narrow", "narrow_empty", "narrow(-1, 1, 0)", {3, 4},
      one([](const Tensor& x) { return x.narrow(-1, 1, 0); }), {{{all(3), {}}, {3, 0}, false}});
  add("select", "select_negative", "select(-1, -2)", {3, 4, 5},
      one([](const Tensor& x) { return x.select(-1, -2); }),
      {{{all(3), all(4), {3}}, {3, 4}, false}});
  add("select", "select_dim0", "select(0, 2)", {4, 3},
      one([](const Tensor& x) { return x.select(0, 2); }), {{{{2}, all(3)}, {3}, true}});
  add("select", "select_outer_size1", "select(1, 3) of [1, 4, 3]", {1, 4, 3},
      one([](const Tensor& x) { return x.select(1, 3); }), {{{{0}, {3}, all(3)}, {1, 3}, true}});
  // chunk, split, split_with_sizes, unbind.
  add("chunk", "chunk_fewer_pieces", "chunk(4, 1) of 6 (3 pieces)", {2, 6},
      [](const Tensor& x) { return x.chunk(4, 1); },
      {{{all(2), {0, 1}}, {2, 2}, false},
       {{all(2), {2, 3}}, {2, 2}, false},
       {{all(2), {4, 5}}, {2, 2}, false}});
  add("chunk", "chunk_empty_dim", "chunk(3) of an empty dim", {0, 2},
      [](const Tensor& x) { return x.chunk(3); },
      {{{{}, all(2)}, {0, 2}, false},
       {{{}, all(2)}, {0, 2}, false},
       {{{}, all(2)}, {0, 2}, false}});
  add("chunk", "chunk_dim0", "chunk(2, 0)", {5, 2}, [](const Tensor& x) { return x.chunk(2, 0); },
      {{{{0, 1, 2}, all(2)}, {3, 2}, true}, {{{3, 4}, all(2)}, {2, 2}, true}});
  add("split", "split_last_dim", "split(3, 2)", {2, 3, 8},
      [](const Tensor& x) { return x.split(3, 2); },
      {{{all(2), all(3), {0, 1, 2}}, {2, 3, 3}, false},
       {{all(2), all(3), {3, 4, 5}}, {2, 3, 3}, false},
       {{all(2), all(3), {6, 7}}, {2, 3, 2}, false}});
  add("split_with_sizes", "split_with_sizes_zero", "split_with_sizes({1, 0, 4}, 1)", {3, 5, 2},
      [](const Tensor& x) {
        return x.split_with_sizes({1, 0, 4}, 1);
      },
      {{{all(3), {0}, all(2)}, {3, 1, 2}, false},
       {{all(3), {}, all(2)}, {3, 0, 2}, false},
       {{all(3), {1, 2, 3, 4}, all(2)}, {3, 4, 2}, false}});
  add("unbind", "unbind_dim1", "unbind(1)", {2, 3, 4}, [](const Tensor& x) { return x.unbind(1); },
      {{{all(2), {0}, all(4)}, {2, 4}, false},
       {{all(2), {1}, all(4)}, {2, 4}, false},
       {{all(2), {2}, all(4)}, {2, 4}, false}});
  // index: Ellipsis, None, integers, negative ends, steps.
  add("index", "index_ellipsis_int", "index({Ellipsis, 1})", {2, 3, 4}, one([](const Tensor& x) {
        return x.index({Ellipsis, 1});
      }),
      {{{all(2), all(3), {1}}, {2, 3}, false}});
  add("index", "index_none_ellipsis_step", "index({None, 1, Ellipsis, Slice(None, None, 2), None})",
      {3, 4, 5, 6}, one([](const Tensor& x) {
        return x.index({None, 1, Ellipsis, Slice(None, None, 2), None});
      }),
      {{{{1}, all(4), all(5), {0, 2, 4}}, {1, 4, 5, 3, 1}, false}});
  add("index", "index_negative_int", "index({-1, Slice(1, 3)})", {3, 4, 5},
      one([](const Tensor& x) {
        return x.index({-1, Slice(1, 3)});
      }),
      {{{{2}, {1, 2}, all(5)}, {2, 5}, true}});
  add("index", "index_negative_slices", "index({Slice(-2, None), Slice(None, -1)})", {4, 5},
      one([](const Tensor& x) {
        return x.index({Slice(-2, None), Slice(None, -1)});
      }),
      {{{{2, 3}, {0, 1, 2, 3}}, {2, 4}, false}});
  add("index", "index_ints_and_steps", "index({1, Slice(), 2, Slice(0, 7, 3)})", {3, 4, 5, 7},
      one([](const Tensor& x) {
        return x.index({1, Slice(), 2, Slice(0, 7, 3)});
      }),
      {{{{1}, all(4), {2}, {0, 3, 6}}, {4, 3}, false}});
  add("index", "index_nothing", "index({})", {2, 3},
      one([](const Tensor& x) { return x.index({}); }), {{{all(2), all(3)}, {2, 3}, true}});
  add("index", "index_none_of_0d", "index({None}) of a 0-dim tensor", {},
      one([](const Tensor& x) { return x.index({None}); }), {{{}, {1}, true}});
  return r;
}

}  // namespace

const std::vector<SliceCase>& slice_cases() {
  static const std::vector<SliceCase> cases = make_cases();
  return cases;
}

std::vector<double> slice_reference(const std::vector<double>& x, const Shape& in,
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

}  // namespace tandem::check
