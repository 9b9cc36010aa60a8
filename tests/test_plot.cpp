// SVG charts (tandem/plot.h): the output is parsed by a small XML
// well-formedness checker written here (and by Python's xml.dom.minidom when
// python3 is on the PATH) and its content checked: series names, polyline
// point counts with NaN/inf left out, N*N cells with their counts, escaping.
#include <gtest/gtest.h>
#include <tandem/plot.h>
#include <tandem/tandem.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "test_util.h"

namespace {

using namespace tandem;  // NOLINT
using tt::expect_error;

// ---- A minimal XML parser: elements, attributes, text, entities, comments -------------

struct Element {
  std::string name;
  std::map<std::string, std::string> attrs;
  std::string text;  // decoded character data directly inside
};

class XmlChecker {
 public:
  explicit XmlChecker(std::string s) : s_(std::move(s)) {}

  // Empty when `s` is one well-formed element (after an optional prolog).
  std::string check() {
    try {
      skip_space();
      if (s_.compare(i_, 5, "<?xml") == 0) {
        const size_t end = s_.find("?>", i_);
        if (end == std::string::npos) return "unterminated prolog";
        i_ = end + 2;
      }
      skip_misc();
      element();
      skip_misc();
      if (i_ != s_.size()) return "content after the root element at " + std::to_string(i_);
      return "";
    } catch (const std::string& e) {
      return e + " at byte " + std::to_string(i_);
    }
  }
  const std::vector<Element>& elements() const { return elements_; }
  std::vector<const Element*> by_name(const std::string& name) const {
    std::vector<const Element*> out;
    for (const Element& e : elements_)
      if (e.name == name) out.push_back(&e);
    return out;
  }

 private:
  static bool name_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == ':' ||
           c == '.';
  }
  void skip_space() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  void skip_misc() {
    for (;;) {
      skip_space();
      if (s_.compare(i_, 4, "<!--") != 0) return;
      const size_t end = s_.find("-->", i_);
      if (end == std::string::npos) throw std::string("unterminated comment");
      i_ = end + 3;
    }
  }
  std::string name() {
    const size_t start = i_;
    while (i_ < s_.size() && name_char(s_[i_])) ++i_;
    if (i_ == start) throw std::string("expected a name");
    return s_.substr(start, i_ - start);
  }
  // Character data up to `stop`, with entities decoded; '<' is not allowed.
  std::string chars(char stop) {
    std::string out;
    while (i_ < s_.size() && s_[i_] != stop) {
      const char c = s_[i_];
      if (c == '<') throw std::string("'<' in character data");
      if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r') {
        throw std::string("control character");
      }
      if (c == '&') {
        const size_t semi = s_.find(';', i_);
        if (semi == std::string::npos) throw std::string("unterminated entity");
        const std::string ent = s_.substr(i_ + 1, semi - i_ - 1);
        static const std::map<std::string, char> known = {
            {"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''}};
        if (known.count(ent)) {
          out += known.at(ent);
        } else if (ent.size() > 1 && ent[0] == '#') {
          out += '?';
        } else {
          throw std::string("unknown entity &" + ent + ";");
        }
        i_ = semi + 1;
        continue;
      }
      out += c;
      ++i_;
    }
    return out;
  }
  void expect(char c) {
    if (i_ >= s_.size() || s_[i_] != c) throw std::string("expected '") + c + "'";
    ++i_;
  }
  void element() {
    expect('<');
    Element e;
    e.name = name();
    const size_t index = elements_.size();
    elements_.push_back(e);
    for (;;) {
      const size_t before = i_;
      skip_space();
      if (s_.compare(i_, 2, "/>") == 0) {
        i_ += 2;
        return;
      }
      if (i_ < s_.size() && s_[i_] == '>') {
        ++i_;
        break;
      }
      if (i_ == before) throw std::string("expected whitespace before an attribute");
      const std::string key = name();
      expect('=');
      if (i_ >= s_.size() || (s_[i_] != '"' && s_[i_] != '\'')) {
        throw std::string("unquoted attribute");
      }
      const char q = s_[i_++];
      const std::string value = chars(q);
      expect(q);
      if (elements_[index].attrs.count(key)) throw std::string("duplicate attribute " + key);
      elements_[index].attrs[key] = value;
    }
    for (;;) {  // content
      elements_[index].text += chars('<');
      if (i_ >= s_.size()) throw std::string("unclosed <" + elements_[index].name + ">");
      if (s_.compare(i_, 4, "<!--") == 0) {
        skip_misc();
      } else if (s_.compare(i_, 2, "</") == 0) {
        i_ += 2;
        if (name() != elements_[index].name) throw std::string("mismatched end tag");
        skip_space();
        expect('>');
        return;
      } else {
        element();
      }
    }
  }

  std::string s_;
  size_t i_ = 0;
  std::vector<Element> elements_;
};

TEST(XmlChecker, RejectsMalformedDocuments) {
  for (const char* bad : {"<a>", "<a></b>", "<a x=1/>", "<a>&nope;</a>", "<a>1 < 2</a>", "<a/><b/>",
                          "<a x=\"1\" x=\"2\"/>", "<a>\x01</a>"}) {
    const std::string doc = bad;
    EXPECT_NE(XmlChecker(doc).check(), "") << bad;
  }
  const std::string good = "<?xml version=\"1.0\"?>\n<a k='v'><!-- c --><b>&amp;&lt;</b><c/></a>\n";
  XmlChecker ok(good);
  EXPECT_EQ(ok.check(), "");
  EXPECT_EQ(ok.by_name("b")[0]->text, "&<");
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Python's parser as a second opinion, where python3 exists.
void python_parses(const std::string& path) {
  if (std::system("python3 -c 'pass' >/dev/null 2>&1") != 0) return;
  const std::string cmd =
      "python3 -c \"import xml.dom.minidom,sys; xml.dom.minidom.parse(sys.argv[1])\" '" + path +
      "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << path;
}

size_t count_points(const std::string& points) {
  std::istringstream in(points);
  std::string p;
  size_t n = 0;
  while (in >> p) {
    EXPECT_NE(p.find(','), std::string::npos) << p;
    ++n;
  }
  return n;
}

// ---- Line chart -------------------------------------------------------------------------

TEST(LineChart, SeriesLegendTicksAndSkippedPoints) {
  const std::vector<double> noise = tt::to_doubles(tt::random_tensor({23}, kFloat64, 0.1, 2.5));
  plot::Series loss{"train <loss> & \"more\"", {}, {}}, acc{"test's accuracy", {}, {}};
  for (int i = 0; i < 23; ++i) {
    loss.xs.push_back(i);
    loss.ys.push_back(noise[static_cast<size_t>(i)]);
    acc.xs.push_back(i * 0.5);
    acc.ys.push_back(i == 4 ? NAN : i == 9 ? INFINITY : 0.1 * i);
  }
  plot::Series single{"one point", {3.0}, {1.0}};
  const tt::ScratchDir dir;
  const std::string path = dir.path("line.svg");
  plot::line_chart(path, "Loss & accuracy <epoch>", "epoch", "value", {loss, acc, single});
  const std::string svg = read_file(path);
  XmlChecker xml(svg);
  ASSERT_EQ(xml.check(), "") << svg.substr(0, 400);
  python_parses(path);
  EXPECT_EQ(xml.elements()[0].name, "svg");
  EXPECT_EQ(xml.elements()[0].attrs.at("xmlns"), "http://www.w3.org/2000/svg");
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_EQ(svg.find("inf"), std::string::npos);

  // One polyline for loss, three runs for acc (broken at 4 and 9), one for the single point.
  const auto lines = xml.by_name("polyline");
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(count_points(lines[0]->attrs.at("points")), 23u);
  EXPECT_EQ(count_points(lines[1]->attrs.at("points")), 4u);
  EXPECT_EQ(count_points(lines[2]->attrs.at("points")), 4u);
  EXPECT_EQ(count_points(lines[3]->attrs.at("points")), 13u);
  EXPECT_EQ(count_points(lines[4]->attrs.at("points")), 1u);

  std::vector<std::string> texts;
  for (const Element* t : xml.by_name("text")) texts.push_back(t->text);
  auto has = [&](const std::string& s) {
    return std::find(texts.begin(), texts.end(), s) != texts.end();
  };
  EXPECT_TRUE(has("Loss & accuracy <epoch>"));
  EXPECT_TRUE(has("train <loss> & \"more\""));  // legend entries, unescaped by the parser
  EXPECT_TRUE(has("test's accuracy"));
  EXPECT_TRUE(has("epoch"));
  EXPECT_TRUE(has("value"));
  EXPECT_NE(svg.find("train &lt;loss&gt; &amp; &quot;more&quot;"), std::string::npos);
  // x runs over [0, 22]: nice ticks 0, 5, ..., 25.
  EXPECT_TRUE(has("0") && has("5") && has("25"));
  int ticks = 0;
  for (const Element* t : xml.by_name("text")) ticks += t->attrs.count("class") != 0;
  EXPECT_GE(ticks, 8);
  // Every point lies inside the plot area.
  for (const Element* l : lines) {
    std::istringstream in(l->attrs.at("points"));
    std::string p;
    while (in >> p) {
      const double x = std::stod(p.substr(0, p.find(','))),
                   y = std::stod(p.substr(p.find(',') + 1));
      EXPECT_GE(x, 79.99);
      EXPECT_LE(x, 740.01);
      EXPECT_GE(y, 49.99);
      EXPECT_LE(y, 400.01);
    }
  }
}

TEST(LineChart, ConstantAndAllNonFiniteSeries) {
  const std::string svg = plot::line_chart_svg("t", "x", "y", {{"flat", {1, 2, 3}, {5, 5, 5}}});
  XmlChecker xml(svg);
  ASSERT_EQ(xml.check(), "");
  EXPECT_EQ(count_points(xml.by_name("polyline")[0]->attrs.at("points")), 3u);
  const std::string empty =
      plot::line_chart_svg("t", "x", "y", {{"nothing", {NAN, 1.0}, {1.0, -INFINITY}}});
  XmlChecker xml2(empty);
  ASSERT_EQ(xml2.check(), "");
  EXPECT_TRUE(xml2.by_name("polyline").empty());
  EXPECT_EQ(empty.find("nan"), std::string::npos);
}

// The tick labels of the x axis (text-anchor middle) and y axis (end).
std::vector<std::string> tick_labels(const XmlChecker& xml, const std::string& anchor) {
  std::vector<std::string> out;
  for (const Element* t : xml.by_name("text")) {
    if (t->attrs.count("class") != 0 && t->attrs.at("class") == "tick" &&
        t->attrs.at("text-anchor") == anchor) {
      out.push_back(t->text);
    }
  }
  return out;
}

// Issue 24: a 1-epoch run drew blank plots (a polyline of one point draws nothing).
TEST(LineChart, ShortSeriesGetMarkers) {
  const std::string svg =
      plot::line_chart_svg("Loss", "epoch", "loss", {{"train", {1}, {2.3}}, {"val", {1}, {2.2}}});
  XmlChecker xml(svg);
  ASSERT_EQ(xml.check(), "");
  EXPECT_EQ(xml.by_name("circle").size(), 2u);
  // A long series has none (the line shows it).
  std::vector<double> xs, ys;
  for (int i = 1; i <= 300; ++i) xs.push_back(i), ys.push_back(1.0 / i + 1);
  XmlChecker long_xml(plot::line_chart_svg("t", "x", "y", {{"long", xs, ys}}));
  ASSERT_EQ(long_xml.check(), "");
  EXPECT_TRUE(long_xml.by_name("circle").empty());
}

// Issue 24: a 2-epoch run had ticks 1.0, 1.2, ... 2.0; epochs are whole numbers.
TEST(LineChart, WholeNumberXGetsWholeNumberTicks) {
  XmlChecker xml(plot::line_chart_svg("t", "epoch", "y", {{"train", {1, 2}, {0.3, 0.5}}}));
  ASSERT_EQ(xml.check(), "");
  const std::vector<std::string> xt = tick_labels(xml, "middle");
  ASSERT_FALSE(xt.empty());
  for (const std::string& t : xt) EXPECT_EQ(t.find('.'), std::string::npos) << t;
  EXPECT_NE(std::find(xt.begin(), xt.end(), "1"), xt.end());
  EXPECT_NE(std::find(xt.begin(), xt.end(), "2"), xt.end());
  // One epoch: still whole numbers.
  XmlChecker one(plot::line_chart_svg("t", "epoch", "y", {{"train", {1}, {0.3}}}));
  ASSERT_EQ(one.check(), "");
  for (const std::string& t : tick_labels(one, "middle")) EXPECT_EQ(t.find('.'), std::string::npos);
}

// Issue 24: the legend (top right inside the plot) covered the train curve's
// last epochs; it now sits right of the plot area.
TEST(LineChart, LegendIsOutsideThePlotArea) {
  XmlChecker xml(plot::line_chart_svg(
      "t", "epoch", "acc",
      {{"train", {1, 2, 3}, {0.5, 0.8, 0.99}}, {"validation", {1, 2, 3}, {0.4, 0.6, 0.7}}}));
  ASSERT_EQ(xml.check(), "");
  const Element* frame = nullptr;  // the plot area: the rect with fill none, stroke black
  const Element* legend = nullptr;
  for (const Element* r : xml.by_name("rect")) {
    if (r->attrs.count("stroke") && r->attrs.at("stroke") == "black") frame = r;
    if (r->attrs.count("stroke") && r->attrs.at("stroke") == "#999999") legend = r;
  }
  ASSERT_NE(frame, nullptr);
  ASSERT_NE(legend, nullptr);
  const double plot_right = std::stod(frame->attrs.at("x")) + std::stod(frame->attrs.at("width"));
  EXPECT_GE(std::stod(legend->attrs.at("x")), plot_right);
  const double svg_width = std::stod(xml.elements()[0].attrs.at("width"));
  EXPECT_LE(std::stod(legend->attrs.at("x")) + std::stod(legend->attrs.at("width")), svg_width);
}

// Issue 24: a long run's loss (2.3 down to 1e-4) squashed into an L; a range
// over two decades or more gets a log axis by default, or when asked.
TEST(LineChart, LogScaleOverDecades) {
  std::vector<double> xs, ys;
  for (int i = 1; i <= 1700; ++i) xs.push_back(i), ys.push_back(2.3 / i);
  XmlChecker xml(plot::line_chart_svg("Loss", "epoch", "loss", {{"train", xs, ys}}));
  ASSERT_EQ(xml.check(), "");
  const std::vector<std::string> yt = tick_labels(xml, "end");
  for (const char* want : {"0.001", "0.01", "0.1", "1", "10"}) {
    EXPECT_NE(std::find(yt.begin(), yt.end(), want), yt.end()) << want;
  }
  bool labelled = false;
  for (const Element* t : xml.by_name("text")) labelled |= t->text == "loss (log scale)";
  EXPECT_TRUE(labelled);
  // Accuracy from 0.1 to 0.9 stays linear; Scale::Linear / Log force either.
  XmlChecker acc(plot::line_chart_svg("t", "epoch", "acc", {{"a", {1, 2, 3}, {0.1, 0.5, 0.9}}}));
  ASSERT_EQ(acc.check(), "");
  for (const Element* t : acc.by_name("text"))
    EXPECT_EQ(t->text.find("log scale"), std::string::npos);
  plot::ChartOptions linear;
  linear.y_scale = plot::ChartOptions::Scale::Linear;
  const std::string lin = plot::line_chart_svg("t", "epoch", "loss", {{"train", xs, ys}}, linear);
  EXPECT_EQ(lin.find("log scale"), std::string::npos);
  plot::ChartOptions logxy;
  logxy.x_scale = logxy.y_scale = plot::ChartOptions::Scale::Log;
  XmlChecker lg(plot::line_chart_svg("t", "epoch", "loss", {{"train", xs, ys}}, logxy));
  ASSERT_EQ(lg.check(), "");
  const std::vector<std::string> xt = tick_labels(lg, "middle");
  EXPECT_NE(std::find(xt.begin(), xt.end(), "1000"), xt.end());
  // Every point of the log-log chart lies inside the plot area.
  std::istringstream in(lg.by_name("polyline")[0]->attrs.at("points"));
  std::string p;
  while (in >> p) {
    const double x = std::stod(p.substr(0, p.find(','))), y = std::stod(p.substr(p.find(',') + 1));
    EXPECT_GE(x, 79.99);
    EXPECT_LE(x, 740.01);
    EXPECT_GE(y, 49.99);
    EXPECT_LE(y, 400.01);
  }
}

TEST(LineChart, Errors) {
  expect_error([] { plot::line_chart_svg("t", "x", "y", {}); }, "line_chart: no series to plot");
  expect_error(
      [] {
        plot::line_chart_svg("t", "x", "y", {{"bad", {1, 2}, {1}}});
      },
      "line_chart: series 'bad' has 2 x values and 1 y values");
  expect_error(
      [] {
        plot::line_chart("/nonexistent-dir/a.svg", "t", "x", "y", {{"s", {1}, {1}}});
      },
      "line_chart: cannot open '/nonexistent-dir/a.svg' for writing");
}

// ---- Confusion matrix ---------------------------------------------------------------------

TEST(ConfusionMatrix, CellsCountsAndLabels) {
  for (int64_t n : {1, 3, 10}) {
    const std::vector<double> r = tt::to_doubles(tt::random_tensor({n, n}, kInt64, 0, 999));
    std::vector<std::vector<int64_t>> m(static_cast<size_t>(n));
    std::vector<std::string> names;
    for (int64_t i = 0; i < n; ++i) {
      names.push_back("class <" + std::to_string(i) + "> & co");
      for (int64_t j = 0; j < n; ++j) m[i].push_back(static_cast<int64_t>(r[i * n + j]));
    }
    const tt::ScratchDir dir;
    const std::string path = dir.path("confusion.svg");
    plot::confusion_matrix(path, m, names, "Test \"confusion\"");
    const std::string svg = read_file(path);
    XmlChecker xml(svg);
    ASSERT_EQ(xml.check(), "") << n;
    python_parses(path);
    size_t cells = 0;
    for (const Element* rect : xml.by_name("rect")) cells += rect->attrs.count("class") != 0;
    EXPECT_EQ(cells, static_cast<size_t>(n * n));
    std::vector<std::string> counts, rows, columns;
    for (const Element* t : xml.by_name("text")) {
      if (!t->attrs.count("class")) continue;
      const std::string& c = t->attrs.at("class");
      (c == "count" ? counts : c == "row-label" ? rows : columns).push_back(t->text);
    }
    ASSERT_EQ(counts.size(), static_cast<size_t>(n * n));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) EXPECT_EQ(counts[i * n + j], std::to_string(m[i][j]));
    EXPECT_EQ(rows, names);
    EXPECT_EQ(columns, names);
  }
  // A tensor works too; unnamed classes are numbered; an all-zero row is fine.
  const tt::ScratchDir dir;
  const std::string path = dir.path("confusion2.svg");
  plot::confusion_matrix(path, from_vector<int32_t>({0, 0, 3, 4}, {2, 2}), {});
  XmlChecker xml(read_file(path));
  ASSERT_EQ(xml.check(), "");
  EXPECT_EQ(xml.by_name("rect").size(), 1u + 4u);  // background + cells
}

TEST(ConfusionMatrix, Errors) {
  expect_error([] { plot::confusion_matrix_svg({}, {}); }, "confusion_matrix: the matrix is empty");
  expect_error(
      [] {
        plot::confusion_matrix_svg({{1, 2}, {3}}, {});
      },
      "confusion_matrix: row 1 has 1 entries, expected 2 (an N x N matrix)");
  expect_error(
      [] {
        plot::confusion_matrix_svg({{1, -2}, {3, 4}}, {});
      },
      "confusion_matrix: entry (0, 1) is negative: -2");
  expect_error(
      [] {
        plot::confusion_matrix_svg({{1, 2}, {3, 4}}, {"a"});
      },
      "confusion_matrix: 2 classes but 1 class names");
  expect_error(
      [] {
        plot::confusion_matrix("x.svg", tt::random_tensor({2, 3}, kInt64, 0, 5), {});
      },
      "confusion_matrix: expected an int32/int64 tensor [N, N], got [2, 3] int64");
  expect_error(
      [] {
        plot::confusion_matrix("x.svg", tt::random_tensor({2, 2}, kFloat32), {});
      },
      "got [2, 2] float32");
  expect_error([] { plot::confusion_matrix("/nonexistent-dir/c.svg", {{1}}, {}); },
               "confusion_matrix: cannot open '/nonexistent-dir/c.svg' for writing");
}

TEST(XmlEscape, EscapesAndReplacesForbiddenCharacters) {
  EXPECT_EQ(plot::xml_escape("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&apos;f");
  EXPECT_EQ(plot::xml_escape(std::string("x\x01y\tz\x7f", 6)), "x?y\tz?");
  EXPECT_EQ(plot::xml_escape("naïve"), "naïve");  // UTF-8 passes through
}

}  // namespace
