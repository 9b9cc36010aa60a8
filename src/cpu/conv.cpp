// CPU convolution (NCHW, float32/float64): the reference twin of
// src/cuda/cudnn_conv.cpp (contracts in core/backend_decls.inc; pooling and
// batch norm are in cpu/pool.cpp and cpu/batch_norm.cpp).
//
// float32 convolution goes to oneDNN (cpu/dnnl_conv.cpp); what it does not
// take (float64, and TANDEM_CPU_ONEDNN=0) is im2col + OpenBLAS GEMM over a chunk of the batch at a
// time: the chunk's samples are unfolded in parallel (OpenMP over samples) into one column matrix
// col [C*R*S, B*P*Q], and one GEMM per group multiplies it (OpenBLAS threads the GEMM itself; it
// must not be called from inside an OpenMP loop, see cpu/blas.cpp). The chunk is sized so that col
// stays near kColBudget bytes. The backward passes use the same unfolding: grad_input is W^T *
// grad_y folded back (col2im, parallel over samples, each sample writing only its own plane),
// grad_weight accumulates grad_y * col^T over the chunks.
#include <algorithm>
#include <utility>

#include "cpu/cpu_utils.h"
#include "cpu/dnnl_conv.h"

namespace tandem {
namespace cpu {

namespace {

constexpr int64_t kColBudget = int64_t{64} << 20;  // bytes of the col buffer

int64_t chunk_size(const ConvShape& s, size_t elem) {
  const int64_t per_sample =
      std::max<int64_t>(1, s.c * s.r * s.s * s.p * s.q * static_cast<int64_t>(elem));
  return std::clamp<int64_t>(kColBudget / per_sample, 1, s.n);
}

// col[(c*R + u)*S + v][b*P*Q + i*Q + j] = x[b0 + b][c][i*sh - ph + u*dh][j*sw - pw + v*dw]
template <typename T>
void im2col(const T* x, const ConvShape& s, int64_t b0, int64_t nb, T* col) {
  const int64_t pq = s.p * s.q, cols = nb * pq;
  util::parallel_for(nb, s.c * s.r * s.s * pq, [&](int64_t b) {
    const T* xb = x + (b0 + b) * s.c * s.h * s.w;
    for (int64_t c = 0; c < s.c; ++c) {
      const T* plane = xb + c * s.h * s.w;
      for (int64_t u = 0; u < s.r; ++u) {
        for (int64_t v = 0; v < s.s; ++v) {
          T* row = col + ((c * s.r + u) * s.s + v) * cols + b * pq;
          for (int64_t i = 0; i < s.p; ++i) {
            const int64_t y = i * s.stride_h - s.pad_h + u * s.dil_h;
            T* out = row + i * s.q;
            if (y < 0 || y >= s.h) {
              std::fill(out, out + s.q, T(0));
              continue;
            }
            const T* line = plane + y * s.w;
            for (int64_t j = 0; j < s.q; ++j) {
              const int64_t xx = j * s.stride_w - s.pad_w + v * s.dil_w;
              out[j] = (xx >= 0 && xx < s.w) ? line[xx] : T(0);
            }
          }
        }
      }
    }
  });
}

// The adjoint of im2col: grad_x[b0 + b] = sum of col entries that read each position.
template <typename T>
void col2im(const T* col, const ConvShape& s, int64_t b0, int64_t nb, T* grad_x) {
  const int64_t pq = s.p * s.q, cols = nb * pq;
  util::parallel_for(nb, s.c * s.r * s.s * pq, [&](int64_t b) {
    T* gb = grad_x + (b0 + b) * s.c * s.h * s.w;
    std::fill(gb, gb + s.c * s.h * s.w, T(0));
    for (int64_t c = 0; c < s.c; ++c) {
      T* plane = gb + c * s.h * s.w;
      for (int64_t u = 0; u < s.r; ++u) {
        for (int64_t v = 0; v < s.s; ++v) {
          const T* row = col + ((c * s.r + u) * s.s + v) * cols + b * pq;
          for (int64_t i = 0; i < s.p; ++i) {
            const int64_t y = i * s.stride_h - s.pad_h + u * s.dil_h;
            if (y < 0 || y >= s.h) continue;
            T* line = plane + y * s.w;
            const T* in = row + i * s.q;
            for (int64_t j = 0; j < s.q; ++j) {
              const int64_t xx = j * s.stride_w - s.pad_w + v * s.dil_w;
              if (xx >= 0 && xx < s.w) line[xx] += in[j];
            }
          }
        }
      }
    }
  });
}

// mat [K, nb*P*Q] <-> y[b0 + b] [K, P*Q]
template <typename T>
void mat_to_nchw(const T* mat, const ConvShape& s, int64_t b0, int64_t nb, T* y) {
  const int64_t pq = s.p * s.q;
  util::parallel_for(nb, s.k * pq, [&](int64_t b) {
    for (int64_t k = 0; k < s.k; ++k)
      std::copy_n(mat + k * nb * pq + b * pq, pq, y + ((b0 + b) * s.k + k) * pq);
  });
}
template <typename T>
void nchw_to_mat(const T* y, const ConvShape& s, int64_t b0, int64_t nb, T* mat) {
  const int64_t pq = s.p * s.q;
  util::parallel_for(nb, s.k * pq, [&](int64_t b) {
    for (int64_t k = 0; k < s.k; ++k)
      std::copy_n(y + ((b0 + b) * s.k + k) * pq, pq, mat + k * nb * pq + b * pq);
  });
}

void check_conv(const char* what, const Tensor& x, const ConvShape& s) {
  TANDEM_CHECK(s.groups >= 1 && s.c % s.groups == 0 && s.k % s.groups == 0, what, ": channels ",
               s.c, " -> ", s.k, " are not divisible by groups ", s.groups);
  TANDEM_CHECK(is_floating(x.dtype()), what, ": expected float32 or float64, got ",
               dtype_name(x.dtype()));
}

Tensor cpu_buffer(Shape shape, DType dtype) {
  return empty(std::move(shape), TensorOptions(dtype));
}

}  // namespace

void conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const ConvShape& s,
                    Tensor& y) {
  check_conv("conv2d", x, s);
  if (dnnl_conv2d_forward(x, weight, bias, s, y)) return;
  const int64_t g = s.groups, kg = s.k / g, crs_g = (s.c / g) * s.r * s.s, pq = s.p * s.q;
  const int64_t chunk = chunk_size(s, element_size(x.dtype()));
  Tensor col = cpu_buffer({s.c * s.r * s.s, chunk * pq}, x.dtype());
  Tensor mat = cpu_buffer({s.k, chunk * pq}, x.dtype());
  TANDEM_DISPATCH_FLOATING(x.dtype(), "conv2d", [&] {
    using T = scalar_t;
    for (int64_t b0 = 0; b0 < s.n; b0 += chunk) {
      const int64_t nb = std::min(chunk, s.n - b0), cols = nb * pq;
      im2col(x.data_ptr<T>(), s, b0, nb, col.data_ptr<T>());
      // Group gi: W_g [kg, crs_g] x col_g [crs_g, cols] -> mat_g [kg, cols].
      const GemmShape gs{g, kg, cols, crs_g, kg * crs_g, crs_g * cols, kg * cols};
      gemm(Transpose::No, Transpose::No, gs, 1.0, weight, col, 0.0, mat);
      mat_to_nchw(mat.data_ptr<T>(), s, b0, nb, y.data_ptr<T>());
    }
    if (bias.defined()) {
      const T* bp = bias.data_ptr<T>();
      T* yp = y.data_ptr<T>();
      util::parallel_for(s.n * s.k, pq, [&](int64_t plane) {
        const T b = bp[plane % s.k];
        T* out = yp + plane * pq;
        for (int64_t i = 0; i < pq; ++i) out[i] += b;
      });
    }
  });
}

void conv2d_backward_input(const Tensor& grad_y, const Tensor& weight, const ConvShape& s,
                           Tensor& grad_x) {
  check_conv("conv2d backward", grad_y, s);
  if (dnnl_conv2d_backward_input(grad_y, weight, s, grad_x)) return;
  const int64_t g = s.groups, kg = s.k / g, crs_g = (s.c / g) * s.r * s.s, pq = s.p * s.q;
  const int64_t chunk = chunk_size(s, element_size(grad_y.dtype()));
  Tensor col = cpu_buffer({s.c * s.r * s.s, chunk * pq}, grad_y.dtype());
  Tensor mat = cpu_buffer({s.k, chunk * pq}, grad_y.dtype());
  TANDEM_DISPATCH_FLOATING(grad_y.dtype(), "conv2d backward", [&] {
    using T = scalar_t;
    for (int64_t b0 = 0; b0 < s.n; b0 += chunk) {
      const int64_t nb = std::min(chunk, s.n - b0), cols = nb * pq;
      nchw_to_mat(grad_y.data_ptr<T>(), s, b0, nb, mat.data_ptr<T>());
      // col_g [crs_g, cols] = W_g^T [crs_g, kg] x mat_g [kg, cols]
      const GemmShape gs{g, crs_g, cols, kg, kg * crs_g, kg * cols, crs_g * cols};
      gemm(Transpose::Yes, Transpose::No, gs, 1.0, weight, mat, 0.0, col);
      col2im(col.data_ptr<T>(), s, b0, nb, grad_x.data_ptr<T>());
    }
  });
}

void conv2d_backward_weight(const Tensor& x, const Tensor& grad_y, const ConvShape& s,
                            Tensor& grad_weight) {
  check_conv("conv2d backward", x, s);
  if (dnnl_conv2d_backward_weight(x, grad_y, s, grad_weight)) return;
  const int64_t g = s.groups, kg = s.k / g, crs_g = (s.c / g) * s.r * s.s, pq = s.p * s.q;
  const int64_t chunk = chunk_size(s, element_size(x.dtype()));
  Tensor col = cpu_buffer({s.c * s.r * s.s, chunk * pq}, x.dtype());
  Tensor mat = cpu_buffer({s.k, chunk * pq}, x.dtype());
  TANDEM_DISPATCH_FLOATING(x.dtype(), "conv2d backward", [&] {
    using T = scalar_t;
    for (int64_t b0 = 0; b0 < s.n; b0 += chunk) {
      const int64_t nb = std::min(chunk, s.n - b0), cols = nb * pq;
      im2col(x.data_ptr<T>(), s, b0, nb, col.data_ptr<T>());
      nchw_to_mat(grad_y.data_ptr<T>(), s, b0, nb, mat.data_ptr<T>());
      // gW_g [kg, crs_g] (+)= mat_g [kg, cols] x col_g^T [cols, crs_g]
      const GemmShape gs{g, kg, crs_g, cols, kg * cols, crs_g * cols, kg * crs_g};
      gemm(Transpose::No, Transpose::Yes, gs, 1.0, mat, col, b0 == 0 ? 0.0 : 1.0, grad_weight);
    }
  });
}

}  // namespace cpu
}  // namespace tandem
