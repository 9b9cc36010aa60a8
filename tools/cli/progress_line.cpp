// The progress bar's line (tools/cli/cli.h): fitted to the terminal's width,
// dropping the less useful fields first so that a redraw never wraps (a
// wrapped line is a new line on every redraw).
#include <sys/ioctl.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cli.h"

namespace cli {

int terminal_columns() {
  struct winsize ws {};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  if (const char* c = std::getenv("COLUMNS")) {
    const int n = std::atoi(c);
    if (n > 0) return n;
  }
  return 80;
}

std::string progress_line(const ProgressFields& f, int columns) {
  auto fmt = [](const char* format, auto... v) {
    char buf[128];
    std::snprintf(buf, sizeof buf, format, v...);
    return std::string(buf);
  };
  const double frac =
      f.total > 0 ? static_cast<double>(f.done) / static_cast<double>(f.total) : 0.0;
  const std::string head =
      fmt("epoch %lld/%lld ", static_cast<long long>(f.epoch), static_cast<long long>(f.epochs)) +
      (f.validating ? "val " : "");
  const std::string counter =
      fmt("%lld/%lld", static_cast<long long>(f.done), static_cast<long long>(f.total));
  // Fields after the bar, most useful first; dropped from the end to fit.
  std::vector<std::string> tail;
  // The trainer reads its figures from a GPU every few steps: none yet
  // (NaN) at an epoch's first steps.
  if (!f.validating && std::isfinite(f.loss)) tail.push_back(fmt(" loss %.4f", f.loss));
  if (!f.validating && std::isfinite(f.accuracy)) {
    tail.push_back(fmt(" acc %.1f%%", f.accuracy * 100));
  }
  tail.push_back(" " + format_duration(f.elapsed) +
                 (std::isfinite(f.eta) ? " ETA " + format_duration(f.eta) : std::string()));
  if (!f.validating && f.images_per_second > 0) {
    tail.push_back(fmt(" %.0f img/s", f.images_per_second));
  }
  const int limit = std::max(columns - 1, 8);  // the last column would wrap on some terminals
  auto length = [&](int bar) {
    size_t n = head.size() + counter.size() + (bar > 0 ? static_cast<size_t>(bar) + 3 : 0);
    for (const std::string& t : tail) n += t.size();
    return static_cast<int>(n);
  };
  // Narrow the bar, then drop images/s, then the bar, then fields from the end:
  // the step counter and the elapsed time outlast the bar.
  int bar = 30;
  while (bar > 10 && length(bar) > limit) --bar;
  if (length(bar) > limit && !f.validating && f.images_per_second > 0) tail.pop_back();
  if (length(bar) > limit) bar = 0;
  while (length(bar) > limit && tail.size() > 1) tail.pop_back();
  std::string line = head + counter;
  if (bar > 0) {
    const int filled = static_cast<int>(frac * bar);
    line += " [" + std::string(static_cast<size_t>(filled), '#') +
            std::string(static_cast<size_t>(bar - filled), '.') + "]";
  }
  for (const std::string& t : tail) line += t;
  if (static_cast<int>(line.size()) > limit) line.resize(static_cast<size_t>(limit));
  return line;
}

}  // namespace cli
