// The SVG writer of tandem/plot.h: a line chart (linear axes with "nice"
// ticks at 1, 2 or 5 times a power of ten, whole-number ticks for whole-number
// x values, log axes over decades; markers on short series; the legend right of
// the plot area) and a confusion-matrix heat map.
// Coordinates are written with two decimals; every piece of user text goes
// through xml_escape.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "tandem/error.h"
#include "tandem/plot.h"

namespace tandem {
namespace plot {

std::string xml_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    const unsigned char c = static_cast<unsigned char>(ch);
    switch (ch) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += (c < 0x20 && ch != '\t' && ch != '\n' && ch != '\r') || c == 0x7f ? '?' : ch;
    }
  }
  return out;
}

namespace {

// Palette: the ten "tab10" colours.
const char* const kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                               "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f", v);
  return buf;
}

void write_file(const std::string& path, const std::string& text, const char* who) {
  std::ofstream out(path);
  TANDEM_CHECK(out.good(), who, ": cannot open '", path, "' for writing");
  out << text;
  out.close();
  TANDEM_CHECK(!out.fail(), who, ": writing '", path, "' failed");
}

std::string svg_open(double width, double height) {
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" "
         "version=\"1.1\" width=\"" +
         num(width) + "\" height=\"" + num(height) + "\" viewBox=\"0 0 " + num(width) + " " +
         num(height) +
         "\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
}

std::string text_el(double x, double y, const std::string& text, const std::string& attrs) {
  return "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" " + attrs + ">" + xml_escape(text) +
         "</text>\n";
}

// A linear axis over [lo, hi] widened to multiples of a nice tick step.
struct Axis {
  double lo = 0.0, hi = 1.0, step = 0.2;
};

Axis nice_axis(double lo, double hi) {
  if (!(lo <= hi)) lo = 0.0, hi = 1.0;  // no finite data
  if (hi - lo < 1e-12 * std::max(1.0, std::abs(hi))) {
    const double pad = lo == 0.0 ? 1.0 : 0.5 * std::abs(lo);
    lo -= pad;
    hi += pad;
  }
  const double raw = (hi - lo) / 5.0;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  const double step = (f <= 1.0 ? 1.0 : f <= 2.0 ? 2.0 : f <= 5.0 ? 5.0 : 10.0) * mag;
  return {std::floor(lo / step) * step, std::ceil(hi / step) * step, step};
}

// A tick label with as many decimals as the step needs (steps are 1, 2 or 5
// times a power of ten: 0.2 -> 1 decimal, 0.05 -> 2, 50 -> 0).
std::string tick_label(double v, double step) {
  if (std::abs(v) < step * 1e-9) v = 0.0;
  char buf[48];
  if (std::max(std::abs(v), step) >= 1e6 || step < 1e-4) {
    std::snprintf(buf, sizeof(buf), "%.3g", v);
  } else {
    const int decimals = std::max(0, static_cast<int>(std::ceil(-std::log10(step) - 1e-9)));
    std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  }
  return buf;
}

int ticks(const Axis& a) { return static_cast<int>(std::lround((a.hi - a.lo) / a.step)); }

bool finite_point(double x, double y) { return std::isfinite(x) && std::isfinite(y); }

}  // namespace

// ---- Line chart -------------------------------------------------------------------------

namespace {

// An axis as drawn: the data range in axis units (log10 of the value on a log
// axis) and its ticks (value, label).
struct DrawnAxis {
  bool log = false;
  double lo = 0.0, hi = 1.0;
  std::vector<std::pair<double, std::string>> ticks;
  double pos(double v) const { return log ? std::log10(v) : v; }
};

DrawnAxis linear_axis(double lo, double hi, bool integer) {
  Axis a = nice_axis(lo, hi);
  if (integer && a.step < 1.0) {
    // Whole numbers (epochs): ticks 1 apart, never 0.5 or 0.2.
    a = {std::floor(lo <= hi ? lo : 0.0), std::ceil(lo <= hi ? hi : 1.0), 1.0};
    if (a.hi - a.lo < 1.0) a.lo -= 1.0, a.hi += 1.0;
  }
  DrawnAxis d;
  d.lo = a.lo;
  d.hi = a.hi;
  for (int i = 0; i <= ticks(a); ++i) {
    const double t = a.lo + i * a.step;
    d.ticks.emplace_back(t, tick_label(t, a.step));
  }
  return d;
}

// A log10 axis over [lo, hi] (both > 0): whole decades, ticks at powers of
// ten, plus 2x and 5x where it spans fewer than three decades.
DrawnAxis log_axis(double lo, double hi) {
  DrawnAxis d;
  d.log = true;
  d.lo = std::floor(std::log10(lo) + 1e-9);
  d.hi = std::ceil(std::log10(hi) - 1e-9);
  if (d.hi <= d.lo) d.hi = d.lo + 1;
  const bool minor = d.hi - d.lo < 3;
  for (double e = d.lo; e <= d.hi + 0.5; e += 1.0) {
    for (double m : {1.0, 2.0, 5.0}) {
      if (m != 1.0 && (!minor || e >= d.hi)) continue;
      const double v = m * std::pow(10.0, e);
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%g", v);
      d.ticks.emplace_back(std::log10(v), buf);
    }
  }
  return d;
}

bool use_log(ChartOptions::Scale scale, double lo, double hi) {
  if (scale == ChartOptions::Scale::Log) return lo <= hi && lo > 0;
  if (scale == ChartOptions::Scale::Linear) return false;
  return lo <= hi && lo > 0 && hi / lo >= 100.0;  // Auto: two decades or more
}

}  // namespace

std::string line_chart_svg(const std::string& title, const std::string& x_label,
                           const std::string& y_label, const std::vector<Series>& series) {
  return line_chart_svg(title, x_label, y_label, series, ChartOptions{});
}

std::string line_chart_svg(const std::string& title, const std::string& x_label,
                           const std::string& y_label, const std::vector<Series>& series,
                           const ChartOptions& options) {
  TANDEM_CHECK(!series.empty(), "line_chart: no series to plot");
  // The ranges of the finite points, and of the positive ones (for log axes).
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  double pxlo = INFINITY, pylo = INFINITY;
  bool integer_x = true;
  for (const Series& s : series) {
    TANDEM_CHECK(s.xs.size() == s.ys.size(), "line_chart: series '", s.name, "' has ", s.xs.size(),
                 " x values and ", s.ys.size(), " y values");
    for (size_t i = 0; i < s.xs.size(); ++i) {
      if (!finite_point(s.xs[i], s.ys[i])) continue;
      xlo = std::min(xlo, s.xs[i]);
      xhi = std::max(xhi, s.xs[i]);
      ylo = std::min(ylo, s.ys[i]);
      yhi = std::max(yhi, s.ys[i]);
      if (s.xs[i] > 0) pxlo = std::min(pxlo, s.xs[i]);
      if (s.ys[i] > 0) pylo = std::min(pylo, s.ys[i]);
      integer_x = integer_x && s.xs[i] == std::round(s.xs[i]);
    }
  }
  const bool xlog = use_log(options.x_scale, xlo, xhi), ylog = use_log(options.y_scale, ylo, yhi);
  // A log axis forced over data with values <= 0 leaves those points out.
  const DrawnAxis ax = xlog ? log_axis(pxlo, xhi) : linear_axis(xlo, xhi, integer_x);
  const DrawnAxis ay = ylog ? log_axis(pylo, yhi) : linear_axis(ylo, yhi, false);
  auto drawable = [&](double x, double y) {
    return finite_point(x, y) && (!xlog || x > 0) && (!ylog || y > 0);
  };

  // The legend sits right of the plot area, never over the data.
  size_t longest = 1;
  for (const Series& s : series) longest = std::max(longest, s.name.size());
  const double lw = 46 + 7.0 * static_cast<double>(std::min<size_t>(longest, 40));
  const double plot_w = 660, height = 460, left = 80, top = 50, bottom = 60;
  const double width = left + plot_w + 20 + lw + 10;
  const double pw = plot_w, ph = height - top - bottom;
  auto px = [&](double x) { return left + (ax.pos(x) - ax.lo) / (ax.hi - ax.lo) * pw; };
  auto py = [&](double y) { return top + ph - (ay.pos(y) - ay.lo) / (ay.hi - ay.lo) * ph; };
  auto tx = [&](double t) { return left + (t - ax.lo) / (ax.hi - ax.lo) * pw; };
  auto ty = [&](double t) { return top + ph - (t - ay.lo) / (ay.hi - ay.lo) * ph; };

  std::string svg = svg_open(width, height);
  svg += text_el(left + pw / 2, 28, title, "text-anchor=\"middle\" font-size=\"18\"");
  svg += "<g class=\"grid\" stroke=\"#dddddd\" stroke-width=\"1\">\n";
  std::string labels;
  for (const auto& [t, label] : ax.ticks) {
    svg += "<line x1=\"" + num(tx(t)) + "\" y1=\"" + num(top) + "\" x2=\"" + num(tx(t)) +
           "\" y2=\"" + num(top + ph) + "\"/>\n";
    labels += text_el(tx(t), top + ph + 18, label,
                      "class=\"tick\" text-anchor=\"middle\" font-size=\"12\"");
  }
  for (const auto& [t, label] : ay.ticks) {
    svg += "<line x1=\"" + num(left) + "\" y1=\"" + num(ty(t)) + "\" x2=\"" + num(left + pw) +
           "\" y2=\"" + num(ty(t)) + "\"/>\n";
    labels +=
        text_el(left - 8, ty(t) + 4, label, "class=\"tick\" text-anchor=\"end\" font-size=\"12\"");
  }
  svg += "</g>\n" + labels;
  svg += "<rect x=\"" + num(left) + "\" y=\"" + num(top) + "\" width=\"" + num(pw) +
         "\" height=\"" + num(ph) + "\" fill=\"none\" stroke=\"black\"/>\n";
  svg += text_el(left + pw / 2, height - 15, x_label + (xlog ? " (log scale)" : ""),
                 "text-anchor=\"middle\" font-size=\"14\"");
  svg += text_el(0, 0, y_label + (ylog ? " (log scale)" : ""),
                 "text-anchor=\"middle\" font-size=\"14\" transform=\"translate(20 " +
                     num(top + ph / 2) + ") rotate(-90)\"");

  for (size_t k = 0; k < series.size(); ++k) {
    const Series& s = series[k];
    const std::string color = kColors[k % 10];
    svg += "<g class=\"series\" fill=\"none\" stroke=\"" + color +
           "\" stroke-width=\"2\">\n<title>" + xml_escape(s.name) + "</title>\n";
    std::string points, markers;
    size_t drawn = 0;
    for (size_t i = 0; i < s.xs.size(); ++i) drawn += drawable(s.xs[i], s.ys[i]) ? 1 : 0;
    // Short series get a marker per point: one point draws no line at all.
    const bool mark = drawn <= static_cast<size_t>(std::max(options.markers_up_to, 0));
    auto flush = [&] {
      if (!points.empty()) svg += "<polyline points=\"" + points + "\"/>\n";
      points.clear();
    };
    for (size_t i = 0; i < s.xs.size(); ++i) {
      if (!drawable(s.xs[i], s.ys[i])) {
        flush();
        continue;
      }
      const std::string x = num(px(s.xs[i])), y = num(py(s.ys[i]));
      points += (points.empty() ? "" : " ") + x + "," + y;
      if (mark) {
        markers += "<circle class=\"marker\" cx=\"" + x + "\" cy=\"" + y + "\" r=\"3.5\" fill=\"" +
                   color + "\"/>\n";
      }
    }
    flush();
    svg += markers + "</g>\n";
  }
  // Legend, right of the plot area.
  const double lh = 8 + 20 * static_cast<double>(series.size());
  const double lx = left + pw + 20, ly = top;
  svg += "<g class=\"legend\">\n<rect x=\"" + num(lx) + "\" y=\"" + num(ly) + "\" width=\"" +
         num(lw) + "\" height=\"" + num(lh) +
         "\" fill=\"white\" fill-opacity=\"0.85\" stroke=\"#999999\"/>\n";
  for (size_t k = 0; k < series.size(); ++k) {
    const double y = ly + 16 + 20 * static_cast<double>(k);
    svg += "<line x1=\"" + num(lx + 8) + "\" y1=\"" + num(y - 4) + "\" x2=\"" + num(lx + 32) +
           "\" y2=\"" + num(y - 4) + "\" stroke=\"" + kColors[k % 10] + "\" stroke-width=\"2\"/>\n";
    svg += text_el(lx + 38, y, series[k].name, "font-size=\"12\"");
  }
  svg += "</g>\n</svg>\n";
  return svg;
}

void line_chart(const std::string& path, const std::string& title, const std::string& x_label,
                const std::string& y_label, const std::vector<Series>& series) {
  line_chart(path, title, x_label, y_label, series, ChartOptions{});
}

void line_chart(const std::string& path, const std::string& title, const std::string& x_label,
                const std::string& y_label, const std::vector<Series>& series,
                const ChartOptions& options) {
  write_file(path, line_chart_svg(title, x_label, y_label, series, options), "line_chart");
}

// ---- Confusion matrix ---------------------------------------------------------------------

std::string confusion_matrix_svg(const std::vector<std::vector<int64_t>>& matrix,
                                 const std::vector<std::string>& class_names,
                                 const std::string& title) {
  const size_t n = matrix.size();
  TANDEM_CHECK(n > 0, "confusion_matrix: the matrix is empty");
  TANDEM_CHECK(class_names.empty() || class_names.size() == n, "confusion_matrix: ", n,
               " classes but ", class_names.size(), " class names");
  for (size_t i = 0; i < n; ++i) {
    TANDEM_CHECK(matrix[i].size() == n, "confusion_matrix: row ", i, " has ", matrix[i].size(),
                 " entries, expected ", n, " (an N x N matrix)");
    for (size_t j = 0; j < n; ++j) {
      TANDEM_CHECK(matrix[i][j] >= 0, "confusion_matrix: entry (", i, ", ", j,
                   ") is negative: ", matrix[i][j]);
    }
  }
  auto name = [&](size_t i) { return class_names.empty() ? std::to_string(i) : class_names[i]; };
  size_t longest = 1;
  for (size_t i = 0; i < n; ++i) longest = std::max(longest, name(i).size());
  const double cell = std::max(14.0, std::min(56.0, 640.0 / static_cast<double>(n)));
  const double label_w = 12 + 7.0 * static_cast<double>(std::min<size_t>(longest, 24));
  const double left = 40 + label_w, top = 50, grid = cell * static_cast<double>(n);
  const double width = left + grid + 20, height = top + grid + label_w + 40;
  const double font = std::min(14.0, cell * 0.32);

  std::string svg = svg_open(width, height);
  svg += text_el(width / 2, 28, title, "text-anchor=\"middle\" font-size=\"18\"");
  for (size_t i = 0; i < n; ++i) {
    int64_t row_total = 0;
    for (int64_t v : matrix[i]) row_total += v;
    for (size_t j = 0; j < n; ++j) {
      const double frac =
          row_total > 0 ? static_cast<double>(matrix[i][j]) / static_cast<double>(row_total) : 0.0;
      // White (0) to dark blue (a whole row in one cell).
      const int r = static_cast<int>(std::lround(255 - frac * (255 - 8)));
      const int g = static_cast<int>(std::lround(255 - frac * (255 - 48)));
      const int b = static_cast<int>(std::lround(255 - frac * (255 - 107)));
      char fill[16];
      std::snprintf(fill, sizeof(fill), "#%02x%02x%02x", r, g, b);
      const double x = left + cell * static_cast<double>(j),
                   y = top + cell * static_cast<double>(i);
      svg += "<rect class=\"cell\" x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"" + num(cell) +
             "\" height=\"" + num(cell) + "\" fill=\"" + fill + "\" stroke=\"#cccccc\"><title>" +
             xml_escape(name(i)) + " -&gt; " + xml_escape(name(j)) + ": " +
             std::to_string(matrix[i][j]) + "</title></rect>\n";
      svg += text_el(x + cell / 2, y + cell / 2 + font * 0.35, std::to_string(matrix[i][j]),
                     "class=\"count\" text-anchor=\"middle\" font-size=\"" + num(font) +
                         "\" fill=\"" + (frac > 0.5 ? "white" : "black") + "\"");
    }
    svg += text_el(left - 6, top + cell * (static_cast<double>(i) + 0.5) + 4, name(i),
                   "class=\"row-label\" text-anchor=\"end\" font-size=\"12\"");
    const double cx = left + cell * (static_cast<double>(i) + 0.5), cy = top + grid + 8;
    svg += text_el(0, 0, name(i),
                   "class=\"column-label\" text-anchor=\"end\" font-size=\"12\" "
                   "transform=\"translate(" +
                       num(cx + 4) + " " + num(cy) + ") rotate(-60)\"");
  }
  svg += text_el(14, top + grid / 2, "true class",
                 "text-anchor=\"middle\" font-size=\"14\" transform=\"rotate(-90 14 " +
                     num(top + grid / 2) + ")\"");
  svg += text_el(left + grid / 2, height - 12, "predicted class",
                 "text-anchor=\"middle\" font-size=\"14\"");
  svg += "</svg>\n";
  return svg;
}

void confusion_matrix(const std::string& path, const std::vector<std::vector<int64_t>>& matrix,
                      const std::vector<std::string>& class_names, const std::string& title) {
  write_file(path, confusion_matrix_svg(matrix, class_names, title), "confusion_matrix");
}

void confusion_matrix(const std::string& path, const Tensor& matrix,
                      const std::vector<std::string>& class_names, const std::string& title) {
  TANDEM_CHECK(matrix.defined() && matrix.dim() == 2 && matrix.size(0) == matrix.size(1) &&
                   (matrix.dtype() == kInt64 || matrix.dtype() == kInt32),
               "confusion_matrix: expected an int32/int64 tensor [N, N], got ",
               matrix.defined() ? shape_str(matrix.sizes()) : std::string("an undefined tensor"),
               matrix.defined() ? std::string(" ") + dtype_name(matrix.dtype()) : std::string());
  const std::vector<int64_t> v = to_vector<int64_t>(matrix.to(kCPU).to(kInt64));
  const size_t n = static_cast<size_t>(matrix.size(0));
  std::vector<std::vector<int64_t>> rows(n, std::vector<int64_t>(n));
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j) rows[i][j] = v[i * n + j];
  confusion_matrix(path, rows, class_names, title);
}

}  // namespace plot
}  // namespace tandem
