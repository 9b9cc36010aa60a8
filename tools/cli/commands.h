// The `tandem` subcommands as CLI11 declares them. Each subcommand's file has an
// add_<command>(app) that declares its options (each option once, bound to its
// *Args struct in cli.h) and names, with run_when_parsed, the function that runs
// it; main.cpp calls the add_* functions, parses, and runs the one given.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

#include "cli.h"

namespace cli {

void add_train(CLI::App& app);    // train.cpp
void add_eval(CLI::App& app);     // train.cpp
void add_predict(CLI::App& app);  // predict.cpp
void add_bench(CLI::App& app);    // bench.cpp: bench train, bench ops
void add_data(CLI::App& app);     // data.cpp: data get, data import
void add_info(CLI::App& app);     // info.cpp
void add_check(CLI::App& app);    // check.cpp: the op registry on this machine

// `run` is what `cmd` does: main calls it after parsing when `cmd` is the
// command given. It returns the exit status.
void run_when_parsed(CLI::App* cmd, std::function<int()> run);

// The command given on the command line and its words ("tandem bench ops"),
// once app.parse has returned; {nullptr, "tandem"} when none was.
struct ParsedCommand {
  const std::function<int()>* run = nullptr;
  std::string name = "tandem";
};
ParsedCommand parsed_command(const CLI::App& app);

// ---- Options several commands share (commands.cpp) ----------------------------------

// A whole-number option in [lo, hi] (CLI11's own range check prints DBL_MAX's
// 309 digits and lets "-1" wrap into an unsigned option).
CLI::Validator whole_number(int64_t lo, int64_t hi);
// --threads N: OpenMP threads for this run (set when the option is parsed).
void add_threads_option(CLI::App* cmd, int* threads);
// --data and --synthetic.
void add_data_options(CLI::App* cmd, DataArgs* d);
// --device: one of `choices` ("auto", "cpu", "cuda", ...).
void add_device_option(CLI::App* cmd, std::string* device, const std::string& help,
                       const std::vector<std::string>& choices = {"auto", "cpu", "cuda"});

// ---- Messages CLI11 does not give (commands.cpp) ------------------------------------

// `tandem trian`: names the unknown command word and the nearest command of
// `app`'s tree ("" when the command words are known).
std::string check_command_words(const CLI::App& app, int argc, char** argv);
// `--epochs 1 --epochs 2` (CLI11's ArgumentMismatch `what`): names the option
// and the values given; "" when it is another mismatch.
std::string repeated_option_message(const std::string& what, int argc, char** argv);
// The command words given on the command line ("tandem bench train").
std::string command_of(const CLI::App& app, int argc, char** argv);

}  // namespace cli
