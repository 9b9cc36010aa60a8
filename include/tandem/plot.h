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

// The SVG text of a line chart: axes with ticks, one polyline per series (and
// per run of finite points), a legend with the series names.
std::string line_chart_svg(const std::string& title, const std::string& x_label,
                           const std::string& y_label, const std::vector<Series>& series);
// Writes line_chart_svg(...) to `path`.
void line_chart(const std::string& path, const std::string& title, const std::string& x_label,
                const std::string& y_label, const std::vector<Series>& series);

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
