// The unary and binary op records, now in the library's op registry
// (tandem/check.h, src/check/unary_binary.cpp), under the names the test
// suites use. The CPU reference suite (test_ops_elementwise.cpp), the CUDA
// parity suite (test_cuda_elementwise.cpp), gradcheck (grad_cases.h) and the
// op benchmarks (benchmarks/bench_ops.cpp) iterate over them; the helpers that
// draw a record's inputs and pick its tolerance are in test_util.h.
#pragma once

#include <tandem/check.h>
#include <tandem/tandem.h>

#include "op_cases.h"

namespace tt {

using tandem::check::binary_records;
using tandem::check::BinaryDomain;
using tandem::check::BinaryRecord;
using tandem::check::find_unary_record;
using tandem::check::kKinkMargin;
using tandem::check::TolClass;
using tandem::check::unary_records;
using tandem::check::UnaryRecord;
using tandem::check::UnaryVariant;

}  // namespace tt
