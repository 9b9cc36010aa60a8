// cat, stack, index_select, gather, one_hot.
#include "autograd/record.h"
#include "ops/dispatch.h"
#include "ops/record_empty.h"
#include "tandem/ops.h"

namespace tandem {

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  TANDEM_CHECK(!tensors.empty(), "cat: expected a non-empty list of tensors");
  // Like PyTorch, 1-D empty tensors are skipped (a common "start from nothing" idiom).
  std::vector<Tensor> parts;
  for (size_t i = 0; i < tensors.size(); ++i) {
    detail::check_defined("cat", tensors[i]);
    if (!(tensors[i].dim() == 1 && tensors[i].numel() == 0)) parts.push_back(tensors[i]);
  }
  if (parts.empty()) return tensors[0].clone();
  const Tensor& first = parts[0];
  TANDEM_CHECK(first.dim() > 0, "cat: zero-dimensional tensors cannot be concatenated");
  const int64_t d = detail::normalize_dim("cat", dim, first.dim());
  Shape out_shape = first.sizes();
  out_shape[static_cast<size_t>(d)] = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Tensor& t = parts[i];
    detail::check_same_device("cat", first, t);
    detail::check_same_dtype("cat", first, t);
    bool same = t.dim() == first.dim();
    for (int64_t k = 0; same && k < t.dim(); ++k) same = k == d || t.size(k) == first.size(k);
    TANDEM_CHECK(same, "cat: tensor ", i, " has shape ", shape_str(t.sizes()), " but expected ",
                 shape_str(first.sizes()), " except in dim ", d);
    out_shape[static_cast<size_t>(d)] += t.size(d);
  }
  Tensor out = empty(out_shape, TensorOptions(first.dtype()).device(first.device()));
  const int64_t rows = detail::prod(out_shape, 0, d);
  const int64_t dst_cols = detail::prod(out_shape, d, first.dim());
  int64_t offset = 0;
  for (const Tensor& t : parts) {
    const int64_t cols = detail::prod(t.sizes(), d, t.dim());
    if (t.numel() > 0)
      TANDEM_BACKEND_CALL(out.device(), copy_2d, t, out, rows, cols, dst_cols, offset);
    offset += cols;
  }
  if (autograd::should_record_list(parts)) {
    std::vector<int64_t> lengths;
    for (const Tensor& t : parts) lengths.push_back(t.size(d));
    autograd::record(out, "cat", parts, {},
                     [d, lengths](const Tensor& g, const std::vector<Tensor>&) {
                       std::vector<Tensor> grads;
                       int64_t start = 0;
                       for (int64_t len : lengths) {
                         grads.push_back(g.narrow(d, start, len));
                         start += len;
                       }
                       return grads;
                     });
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  TANDEM_CHECK(!tensors.empty(), "stack: expected a non-empty list of tensors");
  detail::check_defined("stack", tensors[0]);
  const int64_t d = detail::normalize_dim("stack", dim, tensors[0].dim() + 1);
  std::vector<Tensor> expanded;
  for (size_t i = 0; i < tensors.size(); ++i) {
    detail::check_defined("stack", tensors[i]);
    TANDEM_CHECK(tensors[i].sizes() == tensors[0].sizes(), "stack: tensor ", i, " has shape ",
                 shape_str(tensors[i].sizes()), " but tensor 0 has ",
                 shape_str(tensors[0].sizes()));
    expanded.push_back(tensors[i].unsqueeze(d));
  }
  return cat(expanded, d);
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  detail::check_defined("index_select", x);
  detail::check_defined("index_select", index, "index");
  detail::check_same_device("index_select", x, index);
  detail::check_index_dtype("index_select", index);
  TANDEM_CHECK(index.dim() <= 1, "index_select: index must be 1-D, got ", shape_str(index.sizes()));
  const Tensor input = x.dim() == 0 ? x.view({1}) : x;
  const int64_t d = detail::normalize_dim("index_select", dim, input.dim());
  Shape out_shape = input.sizes();
  out_shape[static_cast<size_t>(d)] = index.numel();
  if (x.dim() == 0) out_shape = index.dim() == 0 ? Shape{} : Shape{index.numel()};
  Tensor out = empty(out_shape, TensorOptions(x.dtype()).device(x.device()));
  if (out.numel() == 0) return detail::record_empty(out, "index_select", {x});
  TANDEM_CHECK(input.size(d) > 0, "index_select: cannot select from an empty dimension");
  TANDEM_BACKEND_CALL(x.device(), index_select, input, index, out,
                      detail::prod(input.sizes(), 0, d), input.size(d),
                      detail::prod(input.sizes(), d + 1, input.dim()));
  if (autograd::should_record(x)) {
    Shape src_shape = input.sizes();
    src_shape[static_cast<size_t>(d)] = index.numel();
    autograd::record(out, "index_select", {x}, {index},
                     [d, src_shape, in_shape = input.sizes(), x_shape = x.sizes()](
                         const Tensor& g, const std::vector<Tensor>& s) {
                       const Tensor zero =
                           zeros(in_shape, TensorOptions(g.dtype()).device(g.device()));
                       return std::vector<Tensor>{
                           index_add(zero, d, s[0].view({-1}), g.view(src_shape)).view(x_shape)};
                     });
  }
  return out;
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  detail::check_defined("gather", x);
  detail::check_defined("gather", index, "index");
  detail::check_same_device("gather", x, index);
  detail::check_index_dtype("gather", index);
  TANDEM_CHECK(x.dim() > 0 && index.dim() == x.dim(), "gather: index ", shape_str(index.sizes()),
               " must have as many dims as the input ", shape_str(x.sizes()));
  const int64_t d = detail::normalize_dim("gather", dim, x.dim());
  for (int64_t k = 0; k < x.dim(); ++k) {
    TANDEM_CHECK(k == d || index.size(k) == x.size(k), "gather: index ", shape_str(index.sizes()),
                 " and input ", shape_str(x.sizes()), " must match in every dim except dim ", d);
  }
  Tensor out = empty(index.sizes(), TensorOptions(x.dtype()).device(x.device()));
  if (out.numel() == 0) return detail::record_empty(out, "gather", {x});
  TANDEM_CHECK(x.size(d) > 0, "gather: cannot gather from an empty dimension");
  TANDEM_BACKEND_CALL(x.device(), gather, x, index, out, detail::prod(x.sizes(), 0, d), x.size(d),
                      index.size(d), detail::prod(x.sizes(), d + 1, x.dim()));
  if (autograd::should_record(x)) {
    autograd::record(out, "gather", {x}, {index},
                     [d, x_shape = x.sizes()](const Tensor& g, const std::vector<Tensor>& s) {
                       const Tensor zero =
                           zeros(x_shape, TensorOptions(g.dtype()).device(g.device()));
                       return std::vector<Tensor>{scatter_add(zero, d, s[0], g)};
                     });
  }
  return out;
}

Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  detail::check_defined("scatter_add", x);
  detail::check_defined("scatter_add", index, "index");
  detail::check_defined("scatter_add", src, "source");
  detail::check_same_device("scatter_add", x, index);
  detail::check_same_device("scatter_add", x, src);
  detail::check_same_dtype("scatter_add", x, src);
  detail::check_floating("scatter_add", x);
  detail::check_index_dtype("scatter_add", index);
  TANDEM_CHECK(x.dim() > 0 && index.dim() == x.dim() && index.sizes() == src.sizes(),
               "scatter_add: index ", shape_str(index.sizes()), " and source ",
               shape_str(src.sizes()), " must have the same shape and as many dims as the input ",
               shape_str(x.sizes()));
  const int64_t d = detail::normalize_dim("scatter_add", dim, x.dim());
  for (int64_t k = 0; k < x.dim(); ++k) {
    TANDEM_CHECK(k == d || index.size(k) == x.size(k), "scatter_add: index ",
                 shape_str(index.sizes()), " and input ", shape_str(x.sizes()),
                 " must match in every dim except dim ", d);
  }
  Tensor out = x.detach().clone();
  if (src.numel() > 0) {  // else out is x, still recorded: x's gradient passes through
    TANDEM_CHECK(x.size(d) > 0, "scatter_add: cannot scatter into an empty dimension");
    TANDEM_BACKEND_CALL(x.device(), scatter_add, src, index, out, detail::prod(x.sizes(), 0, d),
                        x.size(d), index.size(d), detail::prod(x.sizes(), d + 1, x.dim()));
  }
  if (autograd::should_record(x, src)) {
    autograd::record(out, "scatter_add", {x, src}, {index},
                     [d](const Tensor& g, const std::vector<Tensor>& s) {
                       return std::vector<Tensor>{g, gather(g, d, s[0])};
                     });
  }
  return out;
}

Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  detail::check_defined("index_add", x);
  detail::check_defined("index_add", index, "index");
  detail::check_defined("index_add", src, "source");
  detail::check_same_device("index_add", x, index);
  detail::check_same_device("index_add", x, src);
  detail::check_same_dtype("index_add", x, src);
  detail::check_floating("index_add", x);
  detail::check_index_dtype("index_add", index);
  TANDEM_CHECK(index.dim() <= 1, "index_add: index must be 1-D, got ", shape_str(index.sizes()));
  TANDEM_CHECK(x.dim() > 0, "index_add: the input must have at least one dim");
  const int64_t d = detail::normalize_dim("index_add", dim, x.dim());
  Shape expected = x.sizes();
  expected[static_cast<size_t>(d)] = index.numel();
  TANDEM_CHECK(src.sizes() == expected, "index_add: source ", shape_str(src.sizes()),
               " must have shape ", shape_str(expected), " (the input's with dim ", d,
               " of the index's length)");
  Tensor out = x.detach().clone();
  if (src.numel() > 0) {  // else out is x, still recorded: x's gradient passes through
    TANDEM_CHECK(x.size(d) > 0, "index_add: cannot add into an empty dimension");
    TANDEM_BACKEND_CALL(x.device(), index_add, src, index, out, detail::prod(x.sizes(), 0, d),
                        x.size(d), detail::prod(x.sizes(), d + 1, x.dim()));
  }
  if (autograd::should_record(x, src)) {
    autograd::record(out, "index_add", {x, src}, {index},
                     [d](const Tensor& g, const std::vector<Tensor>& s) {
                       return std::vector<Tensor>{g, index_select(g, d, s[0])};
                     });
  }
  return out;
}

Tensor one_hot(const Tensor& labels, int64_t num_classes, const TensorOptions& options) {
  detail::check_defined("one_hot", labels, "labels");
  detail::check_index_dtype("one_hot", labels);
  TANDEM_CHECK(num_classes > 0, "one_hot: num_classes must be positive, got ", num_classes);
  Shape out_shape = labels.sizes();
  out_shape.push_back(num_classes);
  // The result lives with the labels; options choose the dtype.
  Tensor out = zeros(out_shape, TensorOptions(options.dtype()).device(labels.device()));
  if (out.numel() > 0) TANDEM_BACKEND_CALL(labels.device(), one_hot, labels, out, num_classes);
  return out;
}

}  // namespace tandem
