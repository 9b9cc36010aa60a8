// `tandem check`: every record of the op registry (tandem/check.h) run on this
// machine's GPU against the CPU, forward and backward, as a table; without a
// GPU, the CPU against the float64 references and finite differences. Exit 0
// when every check passes, 1 when one fails, 2 for a usage error.
#include <tandem/check.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "cli.h"
#include "commands.h"

namespace cli {
namespace {

struct CheckArgs {
  std::string device = "auto";
  std::string ops;
  std::string dtype;  // empty: every dtype
  bool quick = false;
  bool json_output = false;
};
CheckArgs& args() {
  static CheckArgs a;
  return a;
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2e", v);
  return buf;
}

void print_row(const tandem::check::CheckRow& r) {
  std::printf("%-44s %-8s %-16s %-21s %9s %9s %9s %9s  %s\n", r.name.c_str(), r.dtype.c_str(),
              r.shape.c_str(), r.what.c_str(), number(r.max_abs).c_str(), number(r.max_rel).c_str(),
              number(r.tol.atol).c_str(), number(r.tol.rtol).c_str(),
              r.pass ? "ok" : ("FAIL" + (r.error.empty() ? "" : ": " + r.error)).c_str());
  std::fflush(stdout);
}

json row_json(const tandem::check::CheckRow& r) {
  return json{{"op", r.name},       {"dtype", r.dtype},     {"shape", r.shape},
              {"check", r.what},    {"max_abs", r.max_abs}, {"max_rel", r.max_rel},
              {"atol", r.tol.atol}, {"rtol", r.tol.rtol},   {"pass", r.pass},
              {"error", r.error}};
}

int run_check_command();

}  // namespace

void add_check(CLI::App& app) {
  CheckArgs& a = args();
  CLI::App* cmd = app.add_subcommand(
      "check", "every op on this GPU against the CPU (no GPU: the CPU against float64)");
  cmd->footer(R"(Examples:
  tandem check --quick                   # the first thing to run on a new GPU machine
  tandem check --ops conv,pool --dtype float32
  tandem check --device cpu --json > cpu-check.json
Forward and backward of every op record (tandem/check.h); a row per check:
the max abs/rel error against the CPU (or the float64 reference), the
tolerance (atol + rtol * |expected|) and the verdict. Exit 0 when all pass,
1 when any fails.)");
  cmd->add_option("--device", a.device, "auto (cuda where usable, else cpu), cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--ops", a.ops,
                  "only records whose op, name or family contains one of these "
                  "(comma-separated, e.g. conv,softmax)");
  cmd->add_option("--dtype", a.dtype,
                  "float32, float64, int32, int64 or uint8 (default: every dtype a record "
                  "lists; integer dtypes: the slicing records)")
      ->check(CLI::IsMember({"float32", "float64", "int32", "int64", "uint8"}));
  cmd->add_flag("--quick", a.quick, "the small records only (about 30 s on a GPU)");
  cmd->add_flag("--json", a.json_output, "the rows and a summary as JSON");
  run_when_parsed(cmd, [] { return run_check_command(); });
}

namespace {

int run_check_command() {
  namespace ck = tandem::check;
  const CheckArgs& a = args();
  ck::CheckOptions o;
  o.pattern = a.ops;
  o.quick = a.quick;
  if (!a.dtype.empty())
    for (td::DType dt : ck::all_dtypes())
      if (a.dtype == td::dtype_name(dt)) o.dtypes = {dt};
  std::string note;
  if (a.device != "cpu") {
    if (td::cuda::is_available()) {
      o.device = td::Device(td::kCUDA);
    } else {
      const td::BuildInfo info = td::build_info();
      note = "no usable CUDA device (" +
             (info.cuda_built ? info.cuda_unusable_reason : std::string("CUDA backend not built")) +
             "): checking the CPU against the float64 reference instead";
    }
  }
  bool any = false;
  for (const ck::OpRecord& r : ck::op_records()) any = any || ck::record_matches(r, a.ops);
  if (!any)
    throw UsageError("--ops '" + a.ops + "' matches no op record (tandem check --json lists them)");
  const std::string against =
      o.device.is_cpu() ? "the float64 reference (forward) and finite differences (backward)"
                        : "the CPU";
  if (!note.empty()) std::cerr << "tandem check: " << note << "\n";
  if (!a.json_output) {
    std::printf("tandem check: %s against %s%s\n", o.device.str().c_str(), against.c_str(),
                a.quick ? " (--quick)" : "");
    std::printf("%-44s %-8s %-16s %-21s %9s %9s %9s %9s  %s\n", "op", "dtype", "shape", "check",
                "max_abs", "max_rel", "atol", "rtol", "verdict");
  }
  const auto rows = ck::run_check(o, a.json_output ? nullptr : print_row);
  size_t failed = 0;
  json list = json::array();
  std::string failures;
  for (const ck::CheckRow& r : rows) {
    if (!r.pass) {
      ++failed;
      if (failures.size() < 400) failures += " " + r.name + "(" + r.dtype + ", " + r.what + ")";
    }
    if (a.json_output) list.push_back(row_json(r));
  }
  if (a.json_output) {
    std::cout << json{{"device", o.device.str()}, {"against", against}, {"note", note},
                      {"checks", rows.size()},    {"failed", failed},   {"rows", list}}
                     .dump(2)
              << "\n";
  } else {
    std::printf("%zu checks on %s: %zu failed%s%s\n", rows.size(), o.device.str().c_str(), failed,
                failed ? ":" : "", failures.c_str());
  }
  return failed == 0 ? kExitOk : kExitRuntime;
}

}  // namespace

}  // namespace cli
