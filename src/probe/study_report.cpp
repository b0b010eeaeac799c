#include "layerprobe/probe/study_report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <optional>

#include "layerprobe/core/python_str.hpp"

namespace layerprobe {

namespace {

constexpr LayerMetric kSummaryMetrics[] = {LayerMetric::exact,         LayerMetric::f1,
                                           LayerMetric::exact_no_ans,  LayerMetric::f1_no_ans,
                                           LayerMetric::exact_has_ans, LayerMetric::f1_has_ans};

size_t metric_at(LayerMetric metric) { return static_cast<size_t>(metric); }

std::string csv_cell(double value) { return std::isnan(value) ? "" : python_float_repr(value); }

std::string interval_cells(const std::optional<Interval>& ci) {
  return ci ? csv_cell(ci->low) + "," + csv_cell(ci->high) : ",";
}

std::string decimal_text(double value, int decimals) {
  if (std::isnan(value)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  return buf;
}

std::string signed_decimal_text(double value, int decimals) {
  return (value >= 0 && !std::isnan(value) ? "+" : "") + decimal_text(value, decimals);
}

std::string seeds_text(const KindStats& stats) {
  if (stats.seeds.size() == 1 && !stats.seeds.front()) return "1 probe seed";
  std::string out = std::to_string(stats.seeds.size()) + (stats.seeds.size() == 1 ? " seed (" : " seeds (");
  for (size_t i = 0; i < stats.seeds.size(); ++i)
    out += (i ? ", " : "") + (stats.seeds[i] ? std::to_string(*stats.seeds[i]) : std::string("-"));
  return out + ")";
}

}  // namespace

std::vector<KindStats> last_epochs(const std::vector<KindStats>& stats) {
  std::vector<KindStats> out;
  for (const auto& s : stats) {
    auto it = std::find_if(out.begin(), out.end(), [&](const KindStats& o) { return o.kind == s.kind; });
    if (it == out.end()) out.push_back(s);
    else if (s.epoch > it->epoch) *it = s;
  }
  return out;
}

std::string summary_csv(const std::vector<KindStats>& stats) {
  std::string out = "kind,epoch,layer";
  for (auto m : kSummaryMetrics) out += std::string(",") + metric_name(m);
  out += ",seeds";
  for (auto m : kSummaryMetrics) out += std::string(",") + metric_name(m) + "_std";
  for (auto m : kSummaryMetrics) out += std::string(",") + metric_name(m) + "_ci_low," + metric_name(m) + "_ci_high";
  for (const auto& reference : reference_kinds())
    for (auto m : difference_metrics()) {
      const std::string name = std::string(metric_name(m)) + "_minus_" + reference;
      out += "," + name + "," + name + "_ci_low," + name + "_ci_high";
    }
  out += "\n";
  for (const auto& kind : stats)
    for (const auto& layer : kind.layers) {
      out += kind.kind + "," + std::to_string(kind.epoch) + "," + std::to_string(layer.layer);
      for (auto m : kSummaryMetrics) out += "," + csv_cell(layer.mean[metric_at(m)]);
      out += "," + std::to_string(kind.seeds.size());
      for (auto m : kSummaryMetrics) out += "," + csv_cell(layer.std[metric_at(m)]);
      for (auto m : kSummaryMetrics) out += "," + interval_cells(layer.ci[metric_at(m)]);
      for (const auto& reference : reference_kinds())
        for (auto m : difference_metrics()) {
          auto r = layer.minus.find(reference);
          const Estimate* e = nullptr;
          if (r != layer.minus.end())
            if (auto found = r->second.find(m); found != r->second.end()) e = &found->second;
          out += e ? "," + csv_cell(e->value) + "," + interval_cells(e->ci) : ",,,";
        }
      out += "\n";
    }
  return out;
}

// --- SVG -----------------------------------------------------------------------

namespace {

std::string svg_escape(const std::string& text) {
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

std::string svg_num(double v) { return decimal_text(v, 2); }

constexpr double kPanelWidth = 400, kPanelHeight = 300, kLeft = 60, kTop = 50, kGap = 90;
constexpr double kLegendRowHeight = 20;
const char* const kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                "#8c564b", "#e377c2", "#bcbd22", "#17becf"};

// How one series is drawn.
struct Style {
  std::string color;
  bool dashed = false;  // the control
};

struct Panel {
  std::string title;
  LayerMetric metric;
  std::optional<double> baseline;  // always answering ""
};

struct PanelAxes {
  double x0;
  int min_layer, max_layer;
  double y_min, y_max;

  double x(int layer) const {
    if (max_layer == min_layer) return x0 + kPanelWidth / 2;
    return x0 + kPanelWidth * (layer - min_layer) / static_cast<double>(max_layer - min_layer);
  }
  double y(double value) const { return kTop + kPanelHeight * (1 - (value - y_min) / (y_max - y_min)); }
};

std::string svg_text(double x, double y, const std::string& anchor, int size, const std::string& content,
                 const std::string& extra = "") {
  return "<text x=\"" + svg_num(x) + "\" y=\"" + svg_num(y) + "\" text-anchor=\"" + anchor + "\" font-size=\"" +
         std::to_string(size) + "\"" + extra + ">" + content + "</text>\n";
}

std::string svg_line(double x1, double y1, double x2, double y2, const std::string& stroke, const std::string& extra = "") {
  return "<line x1=\"" + svg_num(x1) + "\" y1=\"" + svg_num(y1) + "\" x2=\"" + svg_num(x2) + "\" y2=\"" + svg_num(y2) +
         "\" stroke=\"" + stroke + "\"" + extra + "/>\n";
}

std::string dash(const Style& style) { return style.dashed ? " stroke-dasharray=\"7 4\"" : ""; }

// Every value a panel shows, to fit its y range.
void extend_range(const std::vector<KindStats>& series, const Panel& panel, double& lo, double& hi) {
  auto add = [&](double v) {
    if (std::isnan(v)) return;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  };
  if (panel.baseline) add(*panel.baseline);
  for (const auto& s : series)
    for (const auto& l : s.layers) {
      const double mean = l.mean[metric_at(panel.metric)], sd = l.std[metric_at(panel.metric)];
      add(mean);
      if (!std::isnan(sd)) add(mean - sd), add(mean + sd);
      if (const auto& ci = l.ci[metric_at(panel.metric)]) add(ci->low), add(ci->high);
    }
}

PanelAxes panel_axes(const std::vector<KindStats>& series, const Panel& panel, double x0) {
  int min_layer = 0, max_layer = 0;
  bool any = false;
  for (const auto& s : series)
    for (const auto& l : s.layers) {
      min_layer = any ? std::min(min_layer, l.layer) : l.layer;
      max_layer = any ? std::max(max_layer, l.layer) : l.layer;
      any = true;
    }
  double lo = 100, hi = 0;
  extend_range(series, panel, lo, hi);
  double y_min = std::max(0.0, std::floor(lo / 10) * 10), y_max = std::min(100.0, std::ceil(hi / 10) * 10);
  if (y_max - y_min < 10) {
    y_min = std::max(0.0, std::min(y_min, y_max - 10));
    y_max = y_min + 10;
  }
  return {x0, min_layer, max_layer, y_min, y_max};
}

std::string draw_axes(const PanelAxes& axes, const std::string& title) {
  std::string out = svg_text(axes.x0 + kPanelWidth / 2, kTop - 15, "middle", 16, svg_escape(title), " font-weight=\"bold\"");
  const double y_step = axes.y_max - axes.y_min <= 20 ? 2 : axes.y_max - axes.y_min <= 50 ? 5 : 10;
  for (double v = axes.y_min; v <= axes.y_max + 1e-9; v += y_step) {
    out += svg_line(axes.x0, axes.y(v), axes.x0 + kPanelWidth, axes.y(v), "#dddddd");
    out += svg_text(axes.x0 - 6, axes.y(v) + 4, "end", 11, decimal_text(v, 0));
  }
  const int layer_step = std::max(1, (axes.max_layer - axes.min_layer) / 12 + 1);
  for (int layer = axes.min_layer; layer <= axes.max_layer; layer += layer_step)
    out += svg_text(axes.x(layer), kTop + kPanelHeight + 16, "middle", 11, std::to_string(layer));
  out += "<rect x=\"" + svg_num(axes.x0) + "\" y=\"" + svg_num(kTop) + "\" width=\"" + svg_num(kPanelWidth) + "\" height=\"" +
         svg_num(kPanelHeight) + "\" fill=\"none\" stroke=\"#333333\"/>\n";
  out += svg_text(axes.x0 + kPanelWidth / 2, kTop + kPanelHeight + 34, "middle", 12, "layer");
  return out;
}

// mean +- std over seeds as a translucent band (only with several seeds).
std::string draw_band(const PanelAxes& axes, const KindStats& s, LayerMetric metric, const Style& style) {
  std::string upper, lower;
  for (const auto& l : s.layers) {
    const double mean = l.mean[metric_at(metric)], sd = l.std[metric_at(metric)];
    if (std::isnan(mean) || std::isnan(sd)) return "";
    upper += svg_num(axes.x(l.layer)) + "," + svg_num(axes.y(std::min(axes.y_max, mean + sd))) + " ";
    lower = svg_num(axes.x(l.layer)) + "," + svg_num(axes.y(std::max(axes.y_min, mean - sd))) + " " + lower;
  }
  if (upper.empty()) return "";
  return "<polygon points=\"" + upper + lower + "\" fill=\"" + style.color + "\" fill-opacity=\"0.18\" stroke=\"none\"/>\n";
}

// 95% CI bars, nudged sideways per series so that they do not overlap.
std::string draw_ci_bars(const PanelAxes& axes, const KindStats& s, LayerMetric metric, const Style& style, double nudge) {
  std::string out;
  for (const auto& l : s.layers) {
    const auto& ci = l.ci[metric_at(metric)];
    if (!ci || std::isnan(ci->low) || std::isnan(ci->high)) continue;
    const double x = axes.x(l.layer) + nudge;
    out += svg_line(x, axes.y(ci->low), x, axes.y(ci->high), style.color, " stroke-width=\"1.3\"");
    out += svg_line(x - 3, axes.y(ci->low), x + 3, axes.y(ci->low), style.color, " stroke-width=\"1.3\"");
    out += svg_line(x - 3, axes.y(ci->high), x + 3, axes.y(ci->high), style.color, " stroke-width=\"1.3\"");
  }
  return out;
}

std::string draw_means(const PanelAxes& axes, const KindStats& s, LayerMetric metric, const Style& style) {
  std::string points, markers;
  for (const auto& l : s.layers) {
    const double mean = l.mean[metric_at(metric)];
    if (std::isnan(mean)) continue;
    const std::string px = svg_num(axes.x(l.layer)), py = svg_num(axes.y(mean));
    points += (points.empty() ? "" : " ") + px + "," + py;
    markers += "<circle cx=\"" + px + "\" cy=\"" + py + "\" r=\"3\" fill=\"" + style.color + "\"/>\n";
  }
  if (points.empty()) return "";
  return "<polyline fill=\"none\" stroke=\"" + style.color + "\" stroke-width=\"2\"" + dash(style) + " points=\"" +
         points + "\"/>\n" + markers;
}

std::string draw_baseline(const PanelAxes& axes, double value) {
  return svg_line(axes.x0, axes.y(value), axes.x0 + kPanelWidth, axes.y(value), "#555555",
              " stroke-width=\"1.5\" stroke-dasharray=\"2 3\"") +
         svg_text(axes.x0 + kPanelWidth - 4, axes.y(value) + (value >= axes.y_max - 1e-9 ? 13 : -4), "end", 10,
              "always &quot;&quot;", " fill=\"#555555\"");
}

std::string legend_label(const KindStats& s) {
  std::string label = s.kind + ", epoch " + std::to_string(s.epoch);
  if (s.seeds.size() > 1) label += ", " + std::to_string(s.seeds.size()) + " seeds (band: mean \u00b1 SD)";
  return svg_escape(label);
}

std::string render(const std::vector<KindStats>& series, const std::vector<Style>& styles,
                   const std::vector<Panel>& panels) {
  const double width = kLeft + (kPanelWidth + kGap) * static_cast<double>(panels.size()) - kGap + 20;
  const double legend_top = kTop + kPanelHeight + 55;
  const bool any_ci = std::any_of(series.begin(), series.end(), [](const KindStats& s) {
    return std::any_of(s.layers.begin(), s.layers.end(), [](const LayerStats& l) { return l.ci[0].has_value(); });
  });
  const double rows = static_cast<double>(series.size()) + (any_ci ? 1 : 0);
  const double height = legend_top + kLegendRowHeight * rows + 10;
  std::string out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + svg_num(width) + "\" height=\"" + svg_num(height) +
                    "\" viewBox=\"0 0 " + svg_num(width) + " " + svg_num(height) + "\" font-family=\"sans-serif\">\n" +
                    "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  for (size_t p = 0; p < panels.size(); ++p) {
    const PanelAxes axes = panel_axes(series, panels[p], kLeft + (kPanelWidth + kGap) * static_cast<double>(p));
    out += draw_axes(axes, panels[p].title);
    for (size_t i = 0; i < series.size(); ++i) out += draw_band(axes, series[i], panels[p].metric, styles[i]);
    if (panels[p].baseline) out += draw_baseline(axes, *panels[p].baseline);
    for (size_t i = 0; i < series.size(); ++i) {
      const double nudge = (static_cast<double>(i) - (static_cast<double>(series.size()) - 1) / 2) * 4;
      out += draw_ci_bars(axes, series[i], panels[p].metric, styles[i], nudge);
      out += draw_means(axes, series[i], panels[p].metric, styles[i]);
    }
  }
  for (size_t i = 0; i < series.size(); ++i) {
    const double y = legend_top + kLegendRowHeight * static_cast<double>(i);
    out += svg_line(kLeft, y, kLeft + 30, y, styles[i].color, " stroke-width=\"2\"" + dash(styles[i]));
    out += svg_text(kLeft + 38, y + 4, "start", 12, legend_label(series[i]));
  }
  if (any_ci)
    out += svg_text(kLeft, legend_top + kLegendRowHeight * static_cast<double>(series.size()) + 4, "start", 12,
                "bars: 95% bootstrap interval over questions");
  return out + "</svg>\n";
}

Style kind_style(const std::string& kind, size_t index) {
  if (kind == "pretrained") return {"#1f77b4", false};
  if (kind == "fine_tuned") return {"#d62728", false};
  if (kind == "control") return {"#555555", true};
  return {kPalette[index % (sizeof kPalette / sizeof kPalette[0])], false};
}

}  // namespace

std::string layers_svg(const std::vector<KindStats>& stats) {
  std::vector<Style> styles;
  for (size_t i = 0; i < stats.size(); ++i)
    styles.push_back({kPalette[i % (sizeof kPalette / sizeof kPalette[0])], stats[i].kind == "control"});
  return render(stats, styles,
                {{"Exact match (EM, %) per layer", LayerMetric::exact, std::nullopt},
                 {"F1 (%) per layer", LayerMetric::f1, std::nullopt}});
}

std::string report_svg(const std::vector<KindStats>& stats) {
  const auto series = last_epochs(stats);
  std::vector<Style> styles;
  for (size_t i = 0; i < series.size(); ++i) styles.push_back(kind_style(series[i].kind, i));
  const double always_empty = series.empty() ? NAN : series.front().always_empty_f1;
  auto baseline = [](double v) { return std::isnan(v) ? std::nullopt : std::optional<double>(v); };
  return render(series, styles,
                {{"F1 (%)", LayerMetric::f1, baseline(always_empty)},
                 {"HasAns F1 (%)", LayerMetric::f1_has_ans, 0.0},
                 {"NoAns accuracy (%)", LayerMetric::exact_no_ans, 100.0}});
}

// --- Markdown --------------------------------------------------------------------

namespace {

std::string mean_sd(const LayerStats& l, LayerMetric m) {
  const double sd = l.std[metric_at(m)];
  return decimal_text(l.mean[metric_at(m)], 2) + (std::isnan(sd) ? "" : " \u00b1 " + decimal_text(sd, 2));
}

std::string ci_text(const std::optional<Interval>& ci) {
  return ci ? "[" + decimal_text(ci->low, 2) + ", " + decimal_text(ci->high, 2) + "]" : "";
}

std::string difference_text(const LayerStats& l, const std::string& reference) {
  auto r = l.minus.find(reference);
  if (r == l.minus.end()) return "";
  auto e = r->second.find(LayerMetric::f1);
  if (e == r->second.end()) return "";
  return signed_decimal_text(e->second.value, 2) + (e->second.ci ? " " + ci_text(e->second.ci) : "");
}

// Mean over seeds of each layer's online bits and compression.
struct CodelengthColumns {
  std::vector<double> kbits, compression;
};

CodelengthColumns codelength_columns(const std::vector<SeedCodelength>& sets) {
  CodelengthColumns out;
  if (sets.empty()) return out;
  const size_t layers = sets.front().codelength.online_bits.size();
  out.kbits.assign(layers, 0.0);
  out.compression.assign(layers, 0.0);
  for (const auto& set : sets)
    for (size_t l = 0; l < layers && l < set.codelength.online_bits.size(); ++l) {
      out.kbits[l] += set.codelength.online_bits[l] / 1000.0 / static_cast<double>(sets.size());
      out.compression[l] += set.codelength.compression(l) / static_cast<double>(sets.size());
    }
  return out;
}

bool has_kind(const std::vector<KindStats>& stats, const std::string& kind) {
  return std::any_of(stats.begin(), stats.end(), [&](const KindStats& s) { return s.kind == kind; });
}

std::string kind_table(const KindStats& s, const std::vector<KindStats>& all, const ReportInfo& info) {
  const bool control = s.kind != "control" && has_kind(all, "control");
  const bool pretrained = s.kind != "pretrained" && s.kind != "control" && has_kind(all, "pretrained");
  auto found = info.codelength.find(s.kind);
  const auto code = codelength_columns(found == info.codelength.end() ? std::vector<SeedCodelength>{} : found->second);
  std::string out = "| layer | F1 | F1 95% CI | HasAns F1 | NoAns acc. | EM |";
  std::string rule = "|---:|---:|:---:|---:|---:|---:|";
  if (control) out += " F1 \u2212 control |", rule += "---:|";
  if (pretrained) out += " F1 \u2212 pretrained |", rule += "---:|";
  if (!code.kbits.empty()) out += " codelength (kbits) | compression |", rule += "---:|---:|";
  out += "\n" + rule + "\n";
  for (size_t i = 0; i < s.layers.size(); ++i) {
    const auto& l = s.layers[i];
    out += "| " + std::to_string(l.layer) + " | " + mean_sd(l, LayerMetric::f1) + " | " + ci_text(l.ci[metric_at(LayerMetric::f1)]) +
           " | " + mean_sd(l, LayerMetric::f1_has_ans) + " | " + mean_sd(l, LayerMetric::exact_no_ans) + " | " +
           mean_sd(l, LayerMetric::exact) + " |";
    if (control) out += " " + difference_text(l, "control") + " |";
    if (pretrained) out += " " + difference_text(l, "pretrained") + " |";
    const size_t index = static_cast<size_t>(l.layer - 1);
    if (!code.kbits.empty())
      out += index < code.kbits.size() ? " " + decimal_text(code.kbits[index], 1) + " | " + decimal_text(code.compression[index], 2) + " |"
                                       : " | |";
    out += "\n";
  }
  return out;
}

}  // namespace

std::string report_md(const std::vector<KindStats>& stats, const ReportInfo& info) {
  std::string out = "# Probing report: " + info.experiment + "\n\n";
  const auto last = last_epochs(stats);
  if (!last.empty() && !std::isnan(last.front().always_empty_f1))
    out += "Dev file `" + info.dev_file + "`; " + decimal_text(last.front().always_empty_f1, 2) +
           "% of its questions are unanswerable, so always answering \"\" scores F1 " +
           decimal_text(last.front().always_empty_f1, 2) + " (the dotted line in the plot).\n\n";
  out += "Per layer: F1, HasAns F1, NoAns accuracy and EM in %, as the mean \u00b1 sample standard deviation over "
         "probe seeds (one value with one seed). ";
  if (info.bootstrap.resamples > 0)
    out += "Intervals are " + decimal_text(100 * info.bootstrap.confidence, 0) + "% percentile bootstrap intervals over dev "
           "questions (" + std::to_string(info.bootstrap.resamples) + " resamples, seed " +
           std::to_string(info.bootstrap.seed) + ") of the seed-averaged per-question scores; differences to the "
           "control and to the pretrained model are paired (the same resamples for both, same layer and epoch). ";
  out += "The control is a randomly initialised encoder of the same architecture: F1 \u2212 control is the "
         "selectivity-style gap (Hewitt & Liang 2019). Codelength is epoch 1's online (prequential) code of the "
         "start and end targets (Voita & Titov 2020), averaged over seeds; compression is the uniform code's length "
         "over it.\n\n";
  out += "![F1, HasAns F1 and NoAns accuracy per layer](report.svg)\n";
  for (const auto& s : last)
    out += "\n## " + s.kind + ", epoch " + std::to_string(s.epoch) + " (" + seeds_text(s) + ")\n\n" +
           kind_table(s, last, info);
  return out;
}

}  // namespace layerprobe
