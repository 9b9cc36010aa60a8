// Small SVG charts for training reports, written by tandem itself (no plotting
// library): loss/accuracy curves and confusion matrices. The output is
// standalone SVG 1.1 (well-formed XML) that any browser opens.
//
//   plot::line_chart("loss.svg", "Training loss", "epoch", "loss",
//                    {{"train", epochs, train_loss}, {"test", epochs, test_loss}});
//   plot::confusion_matrix("confusion.svg", counts, {"airplane", "automobile", ...});
//
// Text is XML-escaped; points with a NaN or infinite coordinate are left out
// (a series' line is broken there).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tandem/tensor.h"

namespace tandem {
namespace plot {

struct Series {
  std::string name;
  std::vector<double> xs, ys;  // the same length
};

// How a line chart draws its axes and points.
struct ChartOptions {
  // Auto: a log10 axis when every value is > 0 and the largest is at least
  // 100 times the smallest (two decades: a loss from 2.3 to 0.001), else
  // linear. Log: log10 (values <= 0 are left out). Linear: always linear.
  enum class Scale : int8_t { Auto, Linear, Log };
  Scale x_scale = Scale::Linear;
  Scale y_scale = Scale::Auto;
  // A series with at most this many drawable points gets a circle marker per
  // point (a single point draws no line otherwise); 0: no markers.
  int markers_up_to = 40;
};

// The SVG text of a line chart: axes with ticks (whole numbers only when
// every x is a whole number, as epochs are), one polyline per series (and per
// run of finite points), markers on short series, a legend with the series
// names right of the plot area (never over the data).
std::string line_chart_svg(const std::string& title, const std::string& x_label,
                           const std::string& y_label, const std::vector<Series>& series);
std::string line_chart_svg(const std::string& title, const std::string& x_label,
                           const std::string& y_label, const std::vector<Series>& series,
                           const ChartOptions& options);
// Writes line_chart_svg(...) to `path`.
void line_chart(const std::string& path, const std::string& title, const std::string& x_label,
                const std::string& y_label, const std::vector<Series>& series);
void line_chart(const std::string& path, const std::string& title, const std::string& x_label,
                const std::string& y_label, const std::vector<Series>& series,
                const ChartOptions& options);

// The SVG text of a confusion-matrix heat map: matrix[true][predicted] counts
// (N x N, >= 0), one cell per entry with its count, coloured by the fraction
// of its row (the true class), rows and columns labelled with `class_names`
// (N of them; empty: "0", "1", ...).
std::string confusion_matrix_svg(const std::vector<std::vector<int64_t>>& matrix,
                                 const std::vector<std::string>& class_names,
                                 const std::string& title = "Confusion matrix");
void confusion_matrix(const std::string& path, const std::vector<std::vector<int64_t>>& matrix,
                      const std::vector<std::string>& class_names,
                      const std::string& title = "Confusion matrix");
// The same from an integer tensor [N, N] (int32 or int64, on any device).
void confusion_matrix(const std::string& path, const Tensor& matrix,
                      const std::vector<std::string>& class_names,
                      const std::string& title = "Confusion matrix");

// `text` with &, <, >, " and ' escaped and characters that XML 1.0 forbids
// (control characters other than tab, newline, carriage return) replaced by '?'.
std::string xml_escape(const std::string& text);

}  // namespace plot
}  // namespace tandem
