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

}  // namespace layerprobe
