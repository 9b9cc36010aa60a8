// The op registry: one record per op of include/tandem/op_list.h, everything a
// test, a benchmark or `tandem check` needs to know about it (PyTorch's OpInfo,
// ggml's test-backend-ops). A record holds the float64 reference (plain loops
// over doubles in src/check/reference.cpp, written without the library's ops),
// the inputs (shape, domain, layout: empty, size-1 dims, offset views,
// broadcast), the dtypes, the tolerance class and whether it has a backward.
//
// Its users: the CPU reference suite (tests/test_registry.cpp), the CUDA parity
// suite (same file), gradcheck (tests/grad_cases.h), the op benchmarks
// (benchmarks/bench_ops.cpp) and `tandem check`, which runs the records on the
// user's own device. ops_without_record() names the listed ops no record
// covers (a test fails while it is not empty).
#pragma once

#include <tandem/loss.h>
#include <tandem/op_list.h>
#include <tandem/ops.h>
#include <tandem/tensor.h>

#include <functional>
#include <string>
#include <vector>

namespace tandem::check {

// How close two devices, and a device and the float64 reference, must be
// (tolerance() turns a class into numbers).
enum class TolClass {
  Exact,           // selects, copies, negates, clamps, index ops: bit-identical
  Rounding,        // a few correctly rounded operations
  Transcendental,  // library math (exp, log, tanh, erf, pow; CUDA's are about
                   // 2 ulp, glibc's and SLEEF's about 1): 4x between devices
  Accumulate,      // sums over a row or a tensor (reductions, softmax, losses,
                   // batch norm, optimizer steps): the order of additions differs
  Gemm,            // GEMM and convolution (cuBLAS, cuDNN, oneDNN: blocked sums)
  Statistical,     // random ops: sample moments against the distribution's
};
const char* tol_class_name(TolClass c);

struct Tolerance {
  double rtol = 0.0;
  double atol = 0.0;
};
enum class Against { Reference, Device };  // float64 reference, or the CPU twin
// The tolerance of a class for outputs of dtype dt: |a - b| <= atol + rtol |b|.
// Base (Rounding): float32 rtol 1.3e-6, atol 1e-5 (PyTorch's); float64 1e-7.
Tolerance tolerance(TolClass c, DType dt, Against against);
// The backward of the device against the CPU backward (GEMM and sums in every
// gradient): 20x the base in float32, 100x in float64.
Tolerance backward_tolerance(TolClass c, DType dt);

// One input of a record. Floating inputs are drawn uniformly from [lo, hi),
// moved at least kink_margin away from every kink; index inputs are fixed. In
// an integer dtype (records that list one) the draws are integers in [lo, hi]
// (uint8: cut to [0, 255]).
struct InputSpec {
  Shape shape;
  double lo = -1.5, hi = 1.5;
  std::vector<double> kinks;        // where f or f' jumps (relu at 0, clamp's bounds)
  bool requires_grad = true;        // gradcheck and the backward check use it
  bool away_from_zero = false;      // |x| in [max(lo, 0.2), hi) with a random sign
  bool offset_view = false;         // a narrow() of a larger tensor: storage offset != 0
  double grid = 0.0;                // > 0: multiples of grid in [lo, hi] (ties are common)
  std::vector<int64_t> int_values;  // non-empty: a fixed int64 index tensor
};
constexpr double kKinkMargin = 0.1;

// Host arrays for the float64 references: row-major values and a shape.
struct Array {
  Shape shape;
  std::vector<double> v;
};
using OpFn = std::function<Tensor(const std::vector<Tensor>&)>;
using RefFn = std::function<Array(const std::vector<Array>&)>;

struct OpRecord {
  std::string op;      // the name in op_list.h this record covers
  std::string name;    // the case: op plus variant, e.g. "conv2d_stride2_pad"
  std::string family;  // "elementwise", "reduce", "loss", "matmul", "conv", ...
  std::vector<InputSpec> inputs;
  OpFn fn;    // calls the op on inputs of any device and dtype
  RefFn ref;  // the float64 reference (Statistical: the moments {mean, var})
  TolClass tol = TolClass::Rounding;
  bool differentiable = true;
  bool quick = true;  // in `tandem check --quick` (the larger variants are not)
  std::vector<DType> dtypes = {kFloat32, kFloat64};
};
// Every dtype (the slicing, copy and index records list them all).
const std::vector<DType>& all_dtypes();

// Every record, in family order (built once).
const std::vector<OpRecord>& op_records();
// The ops of op_list.h (every family), and those no record covers.
std::vector<std::string> listed_ops();
std::vector<std::string> ops_without_record();

// ---- Unary and binary ops: the records the elementwise suites read -------------------

struct UnaryVariant {
  double p0 = 0.0, p1 = 0.0;   // pow's exponent, clamp's bounds; unused elsewhere
  double lo = -8.0, hi = 8.0;  // the input domain
  std::vector<double> kinks;   // where f or f' jumps: no input lands near one
};
struct UnaryRecord {
  UnaryOp op;
  const char* name;                               // == op_name(op)
  double (*ref)(double x, double p0, double p1);  // the float64 reference
  std::vector<UnaryVariant> variants;             // the benchmarks time the first
  TolClass tol;
  bool differentiable = true;
  // The named public function, e.g. tandem::pow(x, v.p0).
  Tensor call(const Tensor& x, const UnaryVariant& v) const;
  // "pow(2.500000)" etc.; the plain name for ops without parameters.
  std::string variant_name(const UnaryVariant& v) const;
};
const std::vector<UnaryRecord>& unary_records();
const UnaryRecord* find_unary_record(UnaryOp op);

// How a binary op's operands are drawn, per dtype: never an integer overflow
// or a division by zero.
enum class BinaryDomain {
  Arithmetic,  // floats in [-2, 2); integers in [-50, 50]; uint8 a in [8, 15], b in [1, 4]
  Divisor,     // as Arithmetic, but |b| in [0.25, 2) for floats and integers a in
               // [0, 100], b in [1, 9] (truncation and flooring agree)
  Ties,        // a small grid (k/4 for floats, 0..4 for integers): ties are common
};
struct BinaryRecord {
  BinaryOp op;
  const char* name;  // == op_name(op)
  // The float64 reference; integral: the operands' dtype is an integer one.
  double (*ref)(double a, double b, double alpha, bool integral);
  BinaryDomain domain;
  bool differentiable;
};
const std::vector<BinaryRecord>& binary_records();
// The named public functions, e.g. tandem::add(a, b), tandem::add(a, 0.5).
Tensor call_binary(BinaryOp op, const Tensor& a, const Tensor& b);
Tensor call_binary_scalar(BinaryOp op, const Tensor& a, double s);

// ---- Slicing: the cases behind the "slice" family's records ------------------------

// One result of a slicing call: the input indices it picks in each dim of the
// input, outermost first (its elements are the cartesian product in row-major
// order), its shape (dims dropped by integer indices, added by None), and
// whether it shares the input's storage (the dense-range rule of tensor.h).
struct SlicePiece {
  std::vector<std::vector<int64_t>> picks;
  Shape shape;
  bool aliases = false;
};
// One call of slice, narrow, select, chunk, split, split_with_sizes, unbind or
// index, its reference written out by hand as the indices each piece picks
// (Python's / libtorch's meaning worked out in the case: negative and clamped
// ends, steps, Ellipsis, None). Its record (family "slice", named `record`)
// calls `fn` and joins the pieces (one piece: as it is; several: flattened
// and concatenated); the shapes and aliasing of the pieces are checked by the
// tests from this table (tests/test_ops_indexing.cpp, test_cuda_indexing.cpp).
struct SliceCase {
  std::string op;      // slice, narrow, select, chunk, split, ..., index
  std::string record;  // the record's name, e.g. "slice_neg_start_clamped_end"
  std::string call;    // the call as written, e.g. "slice(-1, -3, 100)"
  Shape input;
  std::function<std::vector<Tensor>(const Tensor&)> fn;
  std::vector<SlicePiece> pieces;
  bool quick = true;
};
const std::vector<SliceCase>& slice_cases();
// The float64 reference of one piece: x's values (row-major, of shape `input`)
// at the picked indices.
std::vector<double> slice_reference(const std::vector<double>& x, const Shape& input,
                                    const SlicePiece& p);

// ---- Running records ---------------------------------------------------------------

// Inputs of a record on the CPU in dtype dt (index inputs: int64), drawn from
// seed.
std::vector<Tensor> draw_inputs(const OpRecord& r, DType dt, uint64_t seed);
Array to_array(const Tensor& t);  // any tensor, any device, as float64 values

// One line of the check's table.
struct CheckRow {
  std::string name;   // the record's name
  std::string dtype;  // "float32"
  std::string shape;  // the first input's shape, e.g. "[2, 3, 7, 6]"
  std::string what;   // "forward", "backward", "forward vs float64", "backward (gradcheck)"
  double max_abs = 0.0, max_rel = 0.0;
  Tolerance tol;
  bool pass = false;
  std::string error;  // an exception's message, a shape mismatch
};

struct CheckOptions {
  Device device = Device(kCPU);              // CUDA: against the CPU; CPU: against float64
  std::vector<DType> dtypes = all_dtypes();  // those a record lists run
  std::string pattern;  // a record runs when its op or name contains this (empty: all)
  bool quick = false;   // only records marked quick, backward in float64 only
  uint64_t seed = 1234;
};
// Whether a record runs for this --ops pattern: its op or name contains one of
// the comma-separated parts, or its family is one (empty: every record).
bool record_matches(const OpRecord& r, const std::string& pattern);
// The rows of one record: forward (and backward) per dtype of options.dtypes.
std::vector<CheckRow> check_record(const OpRecord& r, const CheckOptions& options);
// Runs the matching records; `on_row` sees each row as it is made.
std::vector<CheckRow> run_check(const CheckOptions& options,
                                const std::function<void(const CheckRow&)>& on_row = nullptr);

}  // namespace tandem::check
