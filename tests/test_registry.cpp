// The op registry (tandem/check.h) as tests: every op of op_list.h has a
// record; every record's CPU forward matches its float64 reference and its
// backward matches finite differences (float64); every record's CUDA forward
// and backward match the CPU's (skipped without a CUDA device).
#include <gtest/gtest.h>
#include <tandem/check.h>
#include <tandem/tandem.h>

#include <set>
#include <string>

#include "test_util.h"

namespace {

namespace ck = tandem::check;

TEST(RegistryCoverage, EveryListedOpHasARecord) {
  std::string missing;
  for (const std::string& op : ck::ops_without_record()) missing += " " + op;
  EXPECT_TRUE(missing.empty()) << "ops of op_list.h with no record in src/check/records.cpp:"
                               << missing;
  EXPECT_GE(ck::listed_ops().size(), 70u);  // the lists parsed
}

TEST(RegistryCoverage, RecordsAreWellFormed) {
  const auto listed = ck::listed_ops();
  const std::set<std::string> ops(listed.begin(), listed.end());
  std::set<std::string> names;
  for (const ck::OpRecord& r : ck::op_records()) {
    SCOPED_TRACE(r.name);
    EXPECT_TRUE(names.insert(r.name).second) << "two records named " << r.name;
    EXPECT_EQ(ops.count(r.op), 1u) << r.op << " is not in op_list.h";
    EXPECT_TRUE(r.fn && r.ref);
    EXPECT_FALSE(r.inputs.empty());
    EXPECT_FALSE(r.family.empty());
  }
}

// The checker must fail a wrong op: a record whose op is off by one ulp-ish.
TEST(RegistryCoverage, CheckFailsAWrongOp) {
  ck::OpRecord r = ck::op_records().front();
  const ck::OpFn right = r.fn;
  r.fn = [right](const std::vector<tandem::Tensor>& x) { return right(x) * 1.001; };
  int forward_rows = 0;
  for (const ck::CheckRow& row : ck::check_record(r, ck::CheckOptions{})) {
    if (row.what != "forward vs float64") continue;
    ++forward_rows;
    EXPECT_FALSE(row.pass) << row.name << " " << row.dtype;
  }
  EXPECT_EQ(forward_rows, 2);
}

class Registry : public ::testing::TestWithParam<size_t> {};

void expect_rows_pass(const std::vector<ck::CheckRow>& rows) {
  EXPECT_FALSE(rows.empty());
  for (const ck::CheckRow& r : rows)
    EXPECT_TRUE(r.pass) << r.name << " " << r.dtype << " " << r.shape << " " << r.what
                        << ": max abs " << r.max_abs << ", max rel " << r.max_rel << ", atol "
                        << r.tol.atol << ", rtol " << r.tol.rtol << " " << r.error;
}

TEST_P(Registry, CpuMatchesFloat64Reference) {
  expect_rows_pass(ck::check_record(ck::op_records()[GetParam()], ck::CheckOptions{}));
}

TEST_P(Registry, CudaMatchesCpu) {
  TANDEM_SKIP_WITHOUT_CUDA();
  ck::CheckOptions o;
  o.device = tandem::Device(tandem::kCUDA);
  expect_rows_pass(ck::check_record(ck::op_records()[GetParam()], o));
}

std::string record_name(const ::testing::TestParamInfo<size_t>& info) {
  std::string name = ck::op_records()[info.param].name;
  for (char& ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(AllRecords, Registry, ::testing::Range<size_t>(0, ck::op_records().size()),
                         record_name);

}  // namespace
