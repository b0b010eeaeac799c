#include "layerprobe/probe/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <optional>

#include "layerprobe/core/python_str.hpp"

namespace layerprobe {

namespace {

// The results.csv metric columns, in the original's order.
struct MetricColumn {
  const char* name;
  std::function<std::optional<double>(const SquadEvaluation&)> value;
};

const std::vector<MetricColumn>& metric_columns() {
  static const std::vector<MetricColumn> columns = {
      {"exact", [](const SquadEvaluation& e) { return std::optional<double>(e.overall.exact); }},
      {"f1", [](const SquadEvaluation& e) { return std::optional<double>(e.overall.f1); }},
      {"exact_no_ans", [](const SquadEvaluation& e) { return e.no_ans ? std::optional<double>(e.no_ans->exact) : std::nullopt; }},
      {"f1_no_ans", [](const SquadEvaluation& e) { return e.no_ans ? std::optional<double>(e.no_ans->f1) : std::nullopt; }},
      {"exact_has_ans", [](const SquadEvaluation& e) { return e.has_ans ? std::optional<double>(e.has_ans->exact) : std::nullopt; }},
      {"f1_has_ans", [](const SquadEvaluation& e) { return e.has_ans ? std::optional<double>(e.has_ans->f1) : std::nullopt; }},
  };
  return columns;
}

std::string metric_cells(const SquadEvaluation& eval) {
  std::string out;
  for (const auto& column : metric_columns()) {
    auto v = column.value(eval);
    out += "," + (v ? python_float_repr(*v) : "");
  }
  return out;
}

std::string metric_header() {
  std::string out;
  for (const auto& column : metric_columns()) out += std::string(",") + column.name;
  return out;
}

std::string fixed(double value, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  return buf;
}

std::string pad_left(const std::string& s, size_t width) {
  return s.size() >= width ? s : std::string(width - s.size(), ' ') + s;
}

}  // namespace

std::string results_csv(const std::vector<LayerResult>& layers) {
  std::string out = "layer" + metric_header() + "\n";
  for (const auto& l : layers) out += std::to_string(l.layer) + metric_cells(l.eval) + "\n";
  return out;
}

std::string results_table(const std::vector<LayerResult>& layers) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> header = {"layer"};
  for (const auto& column : metric_columns()) header.emplace_back(column.name);
  rows.push_back(header);
  for (const auto& l : layers) {
    std::vector<std::string> row = {std::to_string(l.layer)};
    for (const auto& column : metric_columns()) {
      auto v = column.value(l.eval);
      row.push_back(v ? fixed(*v, 2) : "-");
    }
    rows.push_back(std::move(row));
  }
  std::vector<size_t> widths(header.size(), 0);
  for (const auto& row : rows)
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  std::string out;
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) out += (c ? "  " : "") + pad_left(row[c], widths[c]);
    out += "\n";
  }
  return out;
}

std::string summary_csv(const std::vector<RunResults>& runs) {
  std::string out = "kind,epoch,layer" + metric_header() + "\n";
  for (const auto& run : runs)
    for (const auto& l : run.layers)
      out += run.kind + "," + std::to_string(run.epoch) + "," + std::to_string(l.layer) + metric_cells(l.eval) + "\n";
  return out;
}

namespace {

std::string xml_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string num(double v) { return fixed(v, 2); }

// Plot geometry shared by both panels.
constexpr double kPanelWidth = 400, kPanelHeight = 300, kLeft = 60, kTop = 50, kGap = 90;
constexpr double kLegendRowHeight = 20;
const char* const kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                               "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

struct Axes {
  double x0;  // left edge of the panel's plot area
  int min_layer, max_layer;
  double y_min, y_max;

  double x(int layer) const {
    if (max_layer == min_layer) return x0 + kPanelWidth / 2;
    return x0 + kPanelWidth * (layer - min_layer) / static_cast<double>(max_layer - min_layer);
  }
  double y(double value) const { return kTop + kPanelHeight * (1 - (value - y_min) / (y_max - y_min)); }
};

std::string draw_axes(const Axes& axes, const std::string& title) {
  std::string out = "<text x=\"" + num(axes.x0 + kPanelWidth / 2) + "\" y=\"" + num(kTop - 15) +
                    "\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">" + title + "</text>\n";
  const double y_step = axes.y_max - axes.y_min <= 20 ? 2 : axes.y_max - axes.y_min <= 50 ? 5 : 10;
  for (double v = axes.y_min; v <= axes.y_max + 1e-9; v += y_step) {
    out += "<line x1=\"" + num(axes.x0) + "\" x2=\"" + num(axes.x0 + kPanelWidth) + "\" y1=\"" + num(axes.y(v)) +
           "\" y2=\"" + num(axes.y(v)) + "\" stroke=\"#dddddd\"/>\n";
    out += "<text x=\"" + num(axes.x0 - 6) + "\" y=\"" + num(axes.y(v) + 4) + "\" text-anchor=\"end\" font-size=\"11\">" +
           fixed(v, 0) + "</text>\n";
  }
  const int layer_step = std::max(1, (axes.max_layer - axes.min_layer) / 12 + 1);
  for (int layer = axes.min_layer; layer <= axes.max_layer; layer += layer_step)
    out += "<text x=\"" + num(axes.x(layer)) + "\" y=\"" + num(kTop + kPanelHeight + 16) +
           "\" text-anchor=\"middle\" font-size=\"11\">" + std::to_string(layer) + "</text>\n";
  out += "<rect x=\"" + num(axes.x0) + "\" y=\"" + num(kTop) + "\" width=\"" + num(kPanelWidth) + "\" height=\"" +
         num(kPanelHeight) + "\" fill=\"none\" stroke=\"#333333\"/>\n";
  out += "<text x=\"" + num(axes.x0 + kPanelWidth / 2) + "\" y=\"" + num(kTop + kPanelHeight + 34) +
         "\" text-anchor=\"middle\" font-size=\"12\">layer</text>\n";
  return out;
}

std::string draw_series(const Axes& axes, const RunResults& run, const char* color,
                        const std::function<double(const SquadEvaluation&)>& metric) {
  const std::string dash = run.kind == "pretrained" ? " stroke-dasharray=\"6 4\"" : "";
  std::string points, markers;
  for (const auto& l : run.layers) {
    const std::string px = num(axes.x(l.layer)), py = num(axes.y(metric(l.eval)));
    points += (points.empty() ? "" : " ") + px + "," + py;
    markers += "<circle cx=\"" + px + "\" cy=\"" + py + "\" r=\"3\" fill=\"" + color + "\"/>\n";
  }
  return "<polyline fill=\"none\" stroke=\"" + std::string(color) + "\" stroke-width=\"2\"" + dash + " points=\"" +
         points + "\"/>\n" + markers;
}

}  // namespace

std::string layers_svg(const std::vector<RunResults>& runs) {
  int min_layer = 0, max_layer = 0;
  double lo = 100, hi = 0;
  bool any = false;
  for (const auto& run : runs)
    for (const auto& l : run.layers) {
      min_layer = any ? std::min(min_layer, l.layer) : l.layer;
      max_layer = any ? std::max(max_layer, l.layer) : l.layer;
      lo = std::min({lo, l.eval.overall.exact, l.eval.overall.f1});
      hi = std::max({hi, l.eval.overall.exact, l.eval.overall.f1});
      any = true;
    }
  // Both panels share a y range rounded out to tens, so they compare at a glance.
  double y_min = std::max(0.0, std::floor(lo / 10) * 10), y_max = std::min(100.0, std::ceil(hi / 10) * 10);
  if (y_max - y_min < 10) {
    y_min = std::max(0.0, y_max - 10);
    y_max = y_min + 10;
  }
  const Axes em{kLeft, min_layer, max_layer, y_min, y_max};
  const Axes f1{kLeft + kPanelWidth + kGap, min_layer, max_layer, y_min, y_max};

  const double width = f1.x0 + kPanelWidth + 20;
  const double legend_top = kTop + kPanelHeight + 55;
  const double height = legend_top + kLegendRowHeight * static_cast<double>(runs.size()) + 10;
  std::string out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(width) + "\" height=\"" + num(height) +
                    "\" viewBox=\"0 0 " + num(width) + " " + num(height) + "\" font-family=\"sans-serif\">\n" +
                    "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  out += draw_axes(em, "Exact match (EM, %) per layer") + draw_axes(f1, "F1 (%) per layer");
  for (size_t i = 0; i < runs.size(); ++i) {
    const char* color = kColors[i % (sizeof kColors / sizeof kColors[0])];
    out += draw_series(em, runs[i], color, [](const SquadEvaluation& e) { return e.overall.exact; });
    out += draw_series(f1, runs[i], color, [](const SquadEvaluation& e) { return e.overall.f1; });
    const double y = legend_top + kLegendRowHeight * static_cast<double>(i);
    const std::string dash = runs[i].kind == "pretrained" ? " stroke-dasharray=\"6 4\"" : "";
    out += "<line x1=\"" + num(kLeft) + "\" x2=\"" + num(kLeft + 30) + "\" y1=\"" + num(y) + "\" y2=\"" + num(y) +
           "\" stroke=\"" + color + "\" stroke-width=\"2\"" + dash + "/>\n";
    out += "<text x=\"" + num(kLeft + 38) + "\" y=\"" + num(y + 4) + "\" font-size=\"12\">" +
           xml_escape(runs[i].kind + ", epoch " + std::to_string(runs[i].epoch)) + "</text>\n";
  }
  return out + "</svg>\n";
}

}  // namespace layerprobe
