// What the subcommands share: the registry of what each command runs, the
// options several commands take, and the messages for command words and
// repeated options that CLI11 does not give.
#include "commands.h"

#include <omp.h>

#include <algorithm>
#include <limits>
#include <map>

namespace cli {
namespace {

constexpr int kMaxThreads = 1024;

// The function each command runs (run_when_parsed).
std::map<const CLI::App*, std::function<int()>>& runners() {
  static std::map<const CLI::App*, std::function<int()>> r;
  return r;
}

// The subcommands of `cmd` in the order they were declared.
std::vector<const CLI::App*> children(const CLI::App& cmd) {
  return cmd.get_subcommands(std::function<bool(const CLI::App*)>());
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      // A swap of two neighbouring letters counts as one edit.
      const bool swap = i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (swap && a[i - 1] != b[j - 1]) row[j] = std::min(row[j], diag);
      diag = up;
    }
  }
  return row[b.size()];
}

}  // namespace

void run_when_parsed(CLI::App* cmd, std::function<int()> run) { runners()[cmd] = std::move(run); }

ParsedCommand parsed_command(const CLI::App& app) {
  ParsedCommand p;
  const CLI::App* cmd = &app;
  while (!cmd->get_subcommands().empty()) {
    cmd = cmd->get_subcommands().front();
    p.name += " " + cmd->get_name();
  }
  const auto it = runners().find(cmd);
  if (it != runners().end()) p.run = &it->second;
  return p;
}

CLI::Validator whole_number(int64_t lo, int64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& text) -> std::string {
        const std::string range = (hi == std::numeric_limits<int64_t>::max()
                                       ? "must be a whole number >= " + std::to_string(lo)
                                       : "must be a whole number from " + std::to_string(lo) +
                                             " to " + std::to_string(hi)) +
                                  ", got '" + text + "'";
        size_t used = 0;
        long long v = 0;
        try {
          v = std::stoll(text, &used);
        } catch (const std::exception&) {
          return range;
        }
        if (used != text.size() || v < lo || v > hi) return range;
        return std::string();
      },
      "INT in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
}

void add_threads_option(CLI::App* cmd, int* threads) {
  cmd->add_option("--threads", *threads,
                  "CPU (OpenMP) threads (default: all cores, or OMP_NUM_THREADS; idle threads "
                  "wait passively unless OMP_WAIT_POLICY is set)")
      ->check(whole_number(1, kMaxThreads))
      // Runs after the check above (CLI11 applies validators in order).
      ->each([](const std::string& n) { omp_set_num_threads(std::stoi(n)); });
}

void add_data_options(CLI::App* cmd, DataArgs* d) {
  cmd->add_option("--data", d->data,
                  "CIFAR-10: a directory of the binary files, the official tarball, or an image "
                  "tree/archive (default: the cache, $TANDEM_CIFAR10, else a download)");
  cmd->add_option("--synthetic", d->synthetic,
                  "use N random CIFAR-shaped training images (and N/4 test images) instead of "
                  "CIFAR-10, for tests and demos")
      ->check(whole_number(1, kMaxSynthetic));
}

void add_device_option(CLI::App* cmd, std::string* device, const std::string& help,
                       const std::vector<std::string>& choices) {
  cmd->add_option("--device", *device, help)->check(CLI::IsMember(choices))->capture_default_str();
}

std::string check_command_words(const CLI::App& app, int argc, char** argv) {
  std::string prefix = "tandem";
  const CLI::App* parent = &app;
  for (int i = 1; i < argc; ++i) {
    const std::string word = argv[i];
    if (word.empty() || word[0] == '-') return "";
    const std::vector<const CLI::App*> known = children(*parent);
    if (known.empty()) return "";  // a command's own arguments
    const auto it = std::find_if(known.begin(), known.end(),
                                 [&word](const CLI::App* c) { return c->get_name() == word; });
    if (it == known.end()) {
      std::string best, list;
      size_t best_d = 3;  // suggest within two edits
      for (const CLI::App* c : known) {
        const std::string& k = c->get_name();
        list += (list.empty() ? "" : ", ") + k;
        const size_t d = edit_distance(word, k);
        if (d < best_d) best_d = d, best = k;
      }
      std::string msg = prefix + ": unknown command '" + word + "'";
      if (!best.empty()) msg += "; did you mean '" + prefix + " " + best + "'?";
      return msg + "\nCommands: " + list + ". Run '" + prefix + " --help' for more.";
    }
    prefix += " " + word;
    parent = *it;
  }
  return "";
}

std::string command_of(const CLI::App& app, int argc, char** argv) {
  std::string prefix = "tandem";
  const CLI::App* parent = &app;
  for (int i = 1; i < argc; ++i) {
    const std::vector<const CLI::App*> known = children(*parent);
    const auto it = std::find_if(known.begin(), known.end(),
                                 [&](const CLI::App* c) { return c->get_name() == argv[i]; });
    if (it == known.end()) break;
    prefix += std::string(" ") + argv[i];
    parent = *it;
  }
  return prefix;
}

std::string repeated_option_message(const std::string& what, int argc, char** argv) {
  const std::string name = what.substr(0, what.find(':'));
  if (name.empty() || name[0] != '-') return "";
  std::vector<std::string> values;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == name) {
      values.push_back(i + 1 < argc ? argv[i + 1] : "");
    } else if (a.rfind(name + "=", 0) == 0) {
      values.push_back(a.substr(name.size() + 1));
    }
  }
  if (values.size() < 2) return "";
  std::string list;
  for (const std::string& v : values) list += (list.empty() ? "" : ", ") + v;
  return name + " was given " + std::to_string(values.size()) + " times (" + list +
         "); give it once";
}

}  // namespace cli
