#include "layerprobe/probe/study_report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <optional>

#include "layerprobe/core/common.hpp"
#include "layerprobe/core/python_str.hpp"
#include "layerprobe/probe/probe_variant.hpp"

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
    auto it = std::find_if(out.begin(), out.end(),
                           [&](const KindStats& o) { return o.kind == s.kind && o.variant == s.variant; });
    if (it == out.end()) out.push_back(s);
    else if (s.epoch > it->epoch) *it = s;
  }
  return out;
}

namespace {

ProbeVariant report_variant(const std::string& name) {
  if (name.empty()) return ProbeVariant{};
  return ProbeVariant::from_name(name).value_or(ProbeVariant{});
}

// SQuAD-task probes on one layer: the rows of summary.csv and the report's series (the tuned lens too).
bool one_layer_squad(const KindStats& s) {
  const auto v = report_variant(s.variant);
  return v.task == ProbeTask::squad && v.input == ProbeInput::layer;
}

// The architectures of a complexity sweep: one-layer SQuAD probes, not the tuned lens.
bool in_sweep(const KindStats& s) { return one_layer_squad(s) && !report_variant(s.variant).arch.is_lens(); }

bool is_tuned_lens(const KindStats& s) { return report_variant(s.variant).arch.is_lens(); }

std::string estimate_cells(const std::optional<Estimate>& e, bool with_ci) {
  if (!e) return with_ci ? ",,," : ",";
  return "," + csv_cell(e->value) + (with_ci ? "," + interval_cells(e->ci) : "");
}

// The variants' columns after the study's: the architecture, its complexity and Pareto place,
// the control task and selectivity, conditional probing.
const char* const kVariantColumns =
    ",probe,parameters,nuclear_norm,pareto,hypervolume,control_task_f1,control_task_f1_ci_low,control_task_f1_ci_high,"
    "selectivity,selectivity_ci_low,selectivity_ci_high,conditional_f1,conditional_f1_ci_low,conditional_f1_ci_high,"
    "embeddings_f1,embeddings_f1_ci_low,embeddings_f1_ci_high,conditional_gain,conditional_gain_ci_low,"
    "conditional_gain_ci_high";

std::string variant_cells(const KindStats& kind, const LayerStats& layer) {
  std::string out = "," + report_variant(kind.variant).arch.spec();
  out += "," + (kind.parameters > 0 ? std::to_string(kind.parameters) : std::string());
  out += "," + csv_cell(layer.nuclear_norm);
  out += "," + (std::isnan(layer.hypervolume) ? std::string() : std::string(layer.pareto ? "1" : "0"));
  out += "," + csv_cell(layer.hypervolume);
  out += estimate_cells(layer.control_task_f1, true) + estimate_cells(layer.selectivity, true);
  out += estimate_cells(layer.conditional_f1, true) + estimate_cells(layer.embeddings_f1, true) +
         estimate_cells(layer.conditional_gain, true);
  return out;
}

}  // namespace

std::string summary_csv(const std::vector<KindStats>& stats) {
  const bool variants = has_variants(stats);
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
  if (variants) out += kVariantColumns;
  out += "\n";
  for (const auto& kind : stats) {
    if (variants && !one_layer_squad(kind)) continue;  // their figures are columns of these rows
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
      if (variants) out += variant_cells(kind, layer);
      out += "\n";
    }
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
  // A paired difference instead of a metric (selectivity, conditional gain): may be negative.
  std::optional<Estimate> LayerStats::*estimate = nullptr;
};

double panel_mean(const Panel& panel, const LayerStats& l) {
  if (panel.estimate) {
    const auto& e = l.*(panel.estimate);
    return e ? e->value : NAN;
  }
  return l.mean[metric_at(panel.metric)];
}

double panel_sd(const Panel& panel, const LayerStats& l) { return panel.estimate ? NAN : l.std[metric_at(panel.metric)]; }

std::optional<Interval> panel_ci(const Panel& panel, const LayerStats& l) {
  if (panel.estimate) {
    const auto& e = l.*(panel.estimate);
    return e ? e->ci : std::nullopt;
  }
  return l.ci[metric_at(panel.metric)];
}

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
      const double mean = panel_mean(panel, l), sd = panel_sd(panel, l);
      add(mean);
      if (!std::isnan(sd)) add(mean - sd), add(mean + sd);
      if (const auto ci = panel_ci(panel, l)) add(ci->low), add(ci->high);
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
  if (panel.estimate) {  // a difference: any sign, zero in range
    y_min = std::floor(std::min(lo, 0.0) / 10) * 10;
    y_max = std::ceil(std::max(hi, 0.0) / 10) * 10;
  }
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
std::string draw_band(const PanelAxes& axes, const KindStats& s, const Panel& panel, const Style& style) {
  std::string upper, lower;
  for (const auto& l : s.layers) {
    const double mean = panel_mean(panel, l), sd = panel_sd(panel, l);
    if (std::isnan(mean) || std::isnan(sd)) return "";
    upper += svg_num(axes.x(l.layer)) + "," + svg_num(axes.y(std::min(axes.y_max, mean + sd))) + " ";
    lower = svg_num(axes.x(l.layer)) + "," + svg_num(axes.y(std::max(axes.y_min, mean - sd))) + " " + lower;
  }
  if (upper.empty()) return "";
  return "<polygon points=\"" + upper + lower + "\" fill=\"" + style.color + "\" fill-opacity=\"0.18\" stroke=\"none\"/>\n";
}

// 95% CI bars, nudged sideways per series so that they do not overlap.
std::string draw_ci_bars(const PanelAxes& axes, const KindStats& s, const Panel& panel, const Style& style, double nudge) {
  std::string out;
  for (const auto& l : s.layers) {
    const auto ci = panel_ci(panel, l);
    if (!ci || std::isnan(ci->low) || std::isnan(ci->high)) continue;
    const double x = axes.x(l.layer) + nudge;
    out += svg_line(x, axes.y(ci->low), x, axes.y(ci->high), style.color, " stroke-width=\"1.3\"");
    out += svg_line(x - 3, axes.y(ci->low), x + 3, axes.y(ci->low), style.color, " stroke-width=\"1.3\"");
    out += svg_line(x - 3, axes.y(ci->high), x + 3, axes.y(ci->high), style.color, " stroke-width=\"1.3\"");
  }
  return out;
}

std::string draw_means(const PanelAxes& axes, const KindStats& s, const Panel& panel, const Style& style) {
  std::string points, markers;
  for (const auto& l : s.layers) {
    const double mean = panel_mean(panel, l);
    if (std::isnan(mean)) continue;
    const std::string px = svg_num(axes.x(l.layer)), py = svg_num(axes.y(mean));
    points += (points.empty() ? "" : " ") + px + "," + py;
    markers += "<circle cx=\"" + px + "\" cy=\"" + py + "\" r=\"3\" fill=\"" + style.color + "\"/>\n";
  }
  if (points.empty()) return "";
  return "<polyline fill=\"none\" stroke=\"" + style.color + "\" stroke-width=\"2\"" + dash(style) + " points=\"" +
         points + "\"/>\n" + markers;
}

std::string draw_baseline(const PanelAxes& axes, double value, const std::string& label) {
  return svg_line(axes.x0, axes.y(value), axes.x0 + kPanelWidth, axes.y(value), "#555555",
              " stroke-width=\"1.5\" stroke-dasharray=\"2 3\"") +
         svg_text(axes.x0 + kPanelWidth - 4, axes.y(value) + (value >= axes.y_max - 1e-9 ? 13 : -4), "end", 10,
              label, " fill=\"#555555\"");
}

std::string legend_label(const KindStats& s) {
  if (s.kind == "head_lens") return "head lens (the model's own QA head)";
  if (s.epoch < 0) return svg_escape(s.kind);  // a series that is not a probe run (amnesic.svg)
  if (report_variant(s.variant).arch.is_lens()) return svg_escape("tuned lens (" + s.kind + ", epoch " + std::to_string(s.epoch) + ")");
  std::string label = s.kind + ", epoch " + std::to_string(s.epoch);
  if (!s.variant.empty()) label += ", " + report_variant(s.variant).arch.spec() + " probe";
  if (s.seeds.size() > 1) label += ", " + std::to_string(s.seeds.size()) + " seeds (band: mean \u00b1 SD)";
  return svg_escape(label);
}

std::string render(const std::vector<KindStats>& series, const std::vector<Style>& styles,
                   const std::vector<Panel>& panels) {
  // Room on the right for the last layer's CI bars, nudged up to 4 px per series beside it (with their caps).
  const double nudge_room = 2.0 * static_cast<double>(series.size()) + 8;
  const double width = kLeft + (kPanelWidth + kGap) * static_cast<double>(panels.size()) - kGap + std::max(20.0, nudge_room);
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
    for (size_t i = 0; i < series.size(); ++i) out += draw_band(axes, series[i], panels[p], styles[i]);
    if (panels[p].baseline) out += draw_baseline(axes, *panels[p].baseline, panels[p].estimate ? "0" : "always &quot;&quot;");
    for (size_t i = 0; i < series.size(); ++i) {
      const double nudge = (static_cast<double>(i) - (static_cast<double>(series.size()) - 1) / 2) * 4;
      out += draw_ci_bars(axes, series[i], panels[p], styles[i], nudge);
      out += draw_means(axes, series[i], panels[p], styles[i]);
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

std::vector<KindStats> report_series(const std::vector<KindStats>& stats) {
  if (!has_variants(stats)) return stats;
  std::optional<std::string> primary;
  for (const auto& s : stats)
    if (in_sweep(s) && (!primary || s.variant.empty())) primary = s.variant;
  std::vector<KindStats> out;
  for (const auto& s : stats)
    if ((primary && s.variant == *primary) || is_tuned_lens(s)) out.push_back(s);
  return out;
}

std::string layers_svg(const std::vector<KindStats>& all_stats) {
  const auto stats = report_series(all_stats);
  std::vector<Style> styles;
  for (size_t i = 0; i < stats.size(); ++i)
    styles.push_back({kPalette[i % (sizeof kPalette / sizeof kPalette[0])], stats[i].kind == "control"});
  return render(stats, styles,
                {{"Exact match (EM, %) per layer", LayerMetric::exact, std::nullopt},
                 {"F1 (%) per layer", LayerMetric::f1, std::nullopt}});
}

std::string report_svg(const std::vector<KindStats>& stats) {
  const auto series = last_epochs(report_series(stats));
  std::vector<Style> styles;
  for (size_t i = 0; i < series.size(); ++i) styles.push_back(kind_style(series[i].kind, i));
  const double always_empty = series.empty() ? NAN : series.front().always_empty_f1;
  auto baseline = [](double v) { return std::isnan(v) ? std::nullopt : std::optional<double>(v); };
  std::vector<Panel> panels = {{"F1 (%)", LayerMetric::f1, baseline(always_empty)},
                               {"HasAns F1 (%)", LayerMetric::f1_has_ans, 0.0},
                               {"NoAns accuracy (%)", LayerMetric::exact_no_ans, 100.0}};
  auto any = [&](std::optional<Estimate> LayerStats::*estimate) {
    return std::any_of(series.begin(), series.end(), [&](const KindStats& s) {
      return std::any_of(s.layers.begin(), s.layers.end(), [&](const LayerStats& l) { return (l.*estimate).has_value(); });
    });
  };
  if (any(&LayerStats::selectivity))
    panels.push_back({"Selectivity: F1 \u2212 control-task F1", LayerMetric::f1, 0.0, &LayerStats::selectivity});
  if (any(&LayerStats::conditional_gain))
    panels.push_back({"F1 of [layer l ; layer 0] \u2212 F1 of layer 0", LayerMetric::f1, 0.0, &LayerStats::conditional_gain});
  return render(series, styles, panels);
}

bool has_complexity_sweep(const std::vector<KindStats>& stats) {
  std::vector<std::string> archs;
  for (const auto& s : stats)
    if (in_sweep(s) && std::find(archs.begin(), archs.end(), s.variant) == archs.end()) archs.push_back(s.variant);
  return archs.size() > 1;
}

namespace {

// Layer l of L from light to dark blue.
std::string layer_color(int layer, int layers) {
  const double t = layers > 1 ? static_cast<double>(layer - 1) / (layers - 1) : 1.0;
  auto channel = [&](int from, int to) { return static_cast<int>(std::lround(from + (to - from) * t)); };
  char buf[16];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", channel(198, 8), channel(219, 48), channel(239, 107));
  return buf;
}

// Axes of a panel with any x range: ticks at whole x values, labelled by `x_label`.
struct FreeAxes {
  double x0, x_min, x_max, y_min, y_max;
  double x(double v) const { return x0 + kPanelWidth * (v - x_min) / (x_max - x_min); }
  double y(double v) const { return kTop + kPanelHeight * (1 - (v - y_min) / (y_max - y_min)); }
};

std::string draw_free_axes(const FreeAxes& axes, const std::string& title, const std::string& x_title,
                           const std::function<std::string(double)>& x_label) {
  std::string out = svg_text(axes.x0 + kPanelWidth / 2, kTop - 15, "middle", 16, svg_escape(title), " font-weight=\"bold\"");
  const double span = axes.y_max - axes.y_min;
  const double y_step = span <= 2 ? 0.2 : span <= 5 ? 0.5 : span <= 20 ? 2 : span <= 50 ? 5 : 10;
  for (double v = axes.y_min; v <= axes.y_max + 1e-9; v += y_step) {
    out += svg_line(axes.x0, axes.y(v), axes.x0 + kPanelWidth, axes.y(v), "#dddddd");
    out += svg_text(axes.x0 - 6, axes.y(v) + 4, "end", 11, decimal_text(v, y_step < 1 ? 1 : 0));
  }
  const double x_step = std::max(1.0, std::ceil((axes.x_max - axes.x_min) / 12));
  for (double v = std::ceil(axes.x_min); v <= axes.x_max + 1e-9; v += x_step)
    out += svg_text(axes.x(v), kTop + kPanelHeight + 16, "middle", 11, x_label(v));
  out += "<rect x=\"" + svg_num(axes.x0) + "\" y=\"" + svg_num(kTop) + "\" width=\"" + svg_num(kPanelWidth) + "\" height=\"" +
         svg_num(kPanelHeight) + "\" fill=\"none\" stroke=\"#333333\"/>\n";
  out += svg_text(axes.x0 + kPanelWidth / 2, kTop + kPanelHeight + 34, "middle", 12, x_title);
  return out;
}

}  // namespace

std::string complexity_svg(const std::vector<KindStats>& stats) {
  std::vector<KindStats> sweep;
  for (const auto& s : last_epochs(stats))
    if (in_sweep(s) && s.parameters > 0) sweep.push_back(s);
  std::vector<std::string> kinds;
  int layers = 0;
  double x_lo = INFINITY, x_hi = -INFINITY, f1_lo = 100, f1_hi = 0, hv_hi = 0;
  for (const auto& s : sweep) {
    if (std::find(kinds.begin(), kinds.end(), s.kind) == kinds.end()) kinds.push_back(s.kind);
    const double x = std::log10(static_cast<double>(s.parameters));
    x_lo = std::min(x_lo, x), x_hi = std::max(x_hi, x);
    for (const auto& l : s.layers) {
      layers = std::max(layers, l.layer);
      const double f1 = l.mean[metric_at(LayerMetric::f1)];
      if (!std::isnan(f1)) f1_lo = std::min(f1_lo, f1), f1_hi = std::max(f1_hi, f1);
      if (!std::isnan(l.hypervolume)) hv_hi = std::max(hv_hi, l.hypervolume);
    }
  }
  const size_t panels = kinds.size() + 1;
  const double width = kLeft + (kPanelWidth + kGap) * static_cast<double>(panels) - kGap + 20;
  const double legend_top = kTop + kPanelHeight + 55;
  const double height = legend_top + kLegendRowHeight * static_cast<double>(kinds.size() + 2) + 10;
  std::string out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + svg_num(width) + "\" height=\"" +
                    svg_num(height) + "\" viewBox=\"0 0 " + svg_num(width) + " " + svg_num(height) +
                    "\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  if (sweep.empty()) return out + "</svg>\n";
  const double x_min = std::floor(x_lo) - 0.25, x_max = std::ceil(x_hi) + 0.25;
  const double always_empty = sweep.front().always_empty_f1;  // the hypervolumes' floor
  if (!std::isnan(always_empty)) f1_lo = std::min(f1_lo, always_empty), f1_hi = std::max(f1_hi, always_empty);
  double y_min = std::max(0.0, std::floor(f1_lo / 10) * 10), y_max = std::min(100.0, std::ceil(f1_hi / 10) * 10);
  if (y_max - y_min < 10) y_min = std::max(0.0, y_max - 10), y_max = y_min + 10;
  auto power_of_ten = [](double v) { return "10^" + decimal_text(v, 0); };
  for (size_t k = 0; k < kinds.size(); ++k) {
    const FreeAxes axes{kLeft + (kPanelWidth + kGap) * static_cast<double>(k), x_min, x_max, y_min, y_max};
    out += draw_free_axes(axes, "F1 (%) against probe size: " + kinds[k], "parameters per layer's probe", power_of_ten);
    if (!std::isnan(always_empty))
      out += svg_line(axes.x0, axes.y(always_empty), axes.x0 + kPanelWidth, axes.y(always_empty), "#555555",
                      " stroke-width=\"1.5\" stroke-dasharray=\"2 3\"") +
             svg_text(axes.x0 + kPanelWidth - 4, axes.y(always_empty) - 4, "end", 10, "always &quot;&quot;",
                      " fill=\"#555555\"");
    for (int layer = 1; layer <= layers; ++layer) {
      struct Point {
        double x, f1;
        bool pareto;
      };
      std::vector<Point> points;
      for (const auto& s : sweep) {
        if (s.kind != kinds[k]) continue;
        for (const auto& l : s.layers)
          if (l.layer == layer && !std::isnan(l.mean[metric_at(LayerMetric::f1)]))
            points.push_back({std::log10(static_cast<double>(s.parameters)), l.mean[metric_at(LayerMetric::f1)], l.pareto});
      }
      std::sort(points.begin(), points.end(), [](const Point& a, const Point& b) { return a.x < b.x; });
      const std::string color = layer_color(layer, layers);
      std::string line;
      for (const auto& p : points) line += (line.empty() ? "" : " ") + svg_num(axes.x(p.x)) + "," + svg_num(axes.y(p.f1));
      if (!line.empty())
        out += "<polyline fill=\"none\" stroke=\"" + color + "\" stroke-width=\"1.5\" points=\"" + line + "\"/>\n";
      for (const auto& p : points)
        out += "<circle cx=\"" + svg_num(axes.x(p.x)) + "\" cy=\"" + svg_num(axes.y(p.f1)) + "\" r=\"3.5\" fill=\"" +
               (p.pareto ? color : std::string("white")) + "\" stroke=\"" + color + "\" stroke-width=\"1.5\"/>\n";
    }
  }
  const FreeAxes hv{kLeft + (kPanelWidth + kGap) * static_cast<double>(kinds.size()), 0.5, layers + 0.5, 0.0,
                    hv_hi > 0 ? std::ceil(hv_hi / 10) * 10 : 10.0};
  out += draw_free_axes(hv, "Pareto hypervolume per layer", "layer",
                        [](double v) { return decimal_text(v, 0); });
  for (size_t k = 0; k < kinds.size(); ++k) {
    const Style style = kind_style(kinds[k], k);
    std::string line, markers;
    for (int layer = 1; layer <= layers; ++layer) {
      double value = NAN;  // the same for every architecture of the kind
      for (const auto& s : sweep)
        for (const auto& l : s.layers)
          if (s.kind == kinds[k] && l.layer == layer && std::isnan(value)) value = l.hypervolume;
      if (std::isnan(value)) continue;
      const std::string px = svg_num(hv.x(layer)), py = svg_num(hv.y(value));
      line += (line.empty() ? "" : " ") + px + "," + py;
      markers += "<circle cx=\"" + px + "\" cy=\"" + py + "\" r=\"3\" fill=\"" + style.color + "\"/>\n";
    }
    if (!line.empty())
      out += "<polyline fill=\"none\" stroke=\"" + style.color + "\" stroke-width=\"2\"" + dash(style) + " points=\"" +
             line + "\"/>\n" + markers;
    const double y = legend_top + kLegendRowHeight * static_cast<double>(k);
    out += svg_line(kLeft, y, kLeft + 30, y, style.color, " stroke-width=\"2\"" + dash(style));
    int epoch = 0;
    for (const auto& s : sweep)
      if (s.kind == kinds[k]) epoch = s.epoch;
    out += svg_text(kLeft + 38, y + 4, "start", 12, svg_escape(kinds[k] + ", epoch " + std::to_string(epoch) + " (hypervolume)"));
  }
  const double notes = legend_top + kLegendRowHeight * static_cast<double>(kinds.size());
  out += svg_text(kLeft, notes + 4, "start", 12,
                  "one line per layer, layer 1 (light) to layer " + std::to_string(layers) +
                      " (dark); filled markers: on the layer's Pareto frontier");
  out += svg_text(kLeft, notes + kLegendRowHeight + 4, "start", 12,
                  "hypervolume: area dominated above (log10 of the largest probe + 1, always-&quot;&quot; F1), decades x F1 points");
  return out + "</svg>\n";
}

std::string amnesic_svg(const std::vector<AmnesicRow>& rows) {
  const char* const names[3] = {"model intact", "layer's start/end information erased (LEACE)",
                                "random subspace of the same rank erased (control)"};
  std::vector<KindStats> series(3);
  for (int c = 0; c < 3; ++c) {
    series[c].kind = names[c];
    series[c].epoch = -1;
    series[c].seeds = {std::nullopt};
    for (const auto& row : rows) {
      LayerStats layer;
      layer.layer = row.layer;
      layer.std.fill(NAN);
      layer.mean.fill(NAN);
      layer.mean[metric_at(LayerMetric::f1)] = row.f1[c];
      layer.mean[metric_at(LayerMetric::exact)] = row.exact[c];
      layer.mean[metric_at(LayerMetric::f1_has_ans)] = row.has_ans_f1[c];
      layer.mean[metric_at(LayerMetric::exact_no_ans)] = row.no_ans_f1[c];
      series[c].layers.push_back(layer);
    }
  }
  const std::vector<Style> styles = {{"#555555", true}, {"#d62728", false}, {"#1f77b4", false}};
  return render(series, styles,
                {{"F1 (%)", LayerMetric::f1, std::nullopt},
                 {"HasAns F1 (%)", LayerMetric::f1_has_ans, std::nullopt},
                 {"NoAns accuracy (%)", LayerMetric::exact_no_ans, std::nullopt}});
}

std::string amnesic_table_md(const std::vector<AmnesicRow>& rows) {
  std::string out = "| layer | rank | F1 intact | F1 erased | F1 random | HasAns F1 intact | erased | random | "
                    "NoAns acc. intact | erased | random |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& r : rows)
    out += "| " + std::to_string(r.layer) + " | " + std::to_string(r.rank) + " | " + decimal_text(r.f1[0], 2) + " | " +
           decimal_text(r.f1[1], 2) + " | " + decimal_text(r.f1[2], 2) + " | " + decimal_text(r.has_ans_f1[0], 2) +
           " | " + decimal_text(r.has_ans_f1[1], 2) + " | " + decimal_text(r.has_ans_f1[2], 2) + " | " +
           decimal_text(r.no_ans_f1[0], 2) + " | " + decimal_text(r.no_ans_f1[1], 2) + " | " +
           decimal_text(r.no_ans_f1[2], 2) + " |\n";
  return out;
}

std::vector<AmnesicRow> read_amnesic_csv(const std::filesystem::path& path) {
  const std::string text = read_file(path);
  std::vector<AmnesicRow> rows;
  size_t line_number = 0, at = 0;
  while (at < text.size()) {
    const size_t end = text.find('\n', at);
    const std::string line = text.substr(at, end == std::string::npos ? std::string::npos : end - at);
    at = end == std::string::npos ? text.size() : end + 1;
    if (++line_number == 1 || line.empty()) continue;
    std::vector<std::string> cells(1);
    for (char c : line) {
      if (c == ',') cells.emplace_back();
      else cells.back().push_back(c);
    }
    if (cells.size() != 14)
      throw Error("'" + path.string() + "' line " + std::to_string(line_number) + ": expected 14 columns, found " +
                  std::to_string(cells.size()) + "; rerun probe_tools amnesic");
    auto number = [&](size_t i) {
      if (cells[i].empty()) return static_cast<double>(NAN);
      try {
        return std::stod(cells[i]);
      } catch (const std::exception&) {
        throw Error("'" + path.string() + "' line " + std::to_string(line_number) + ": '" + cells[i] + "' is not a number");
      }
    };
    AmnesicRow row;
    row.layer = static_cast<int>(number(0));
    for (int c = 0; c < 3; ++c) {
      row.f1[c] = number(1 + static_cast<size_t>(c));
      row.exact[c] = number(4 + static_cast<size_t>(c));
      row.has_ans_f1[c] = number(7 + static_cast<size_t>(c));
      row.no_ans_f1[c] = number(10 + static_cast<size_t>(c));
    }
    row.rank = static_cast<int64_t>(number(13));
    rows.push_back(row);
  }
  return rows;
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

bool is_lens(const std::string& kind) { return kind.size() > 5 && kind.compare(kind.size() - 5, 5, "_lens") == 0; }

bool has_kind(const std::vector<KindStats>& stats, const std::string& kind) {
  return std::any_of(stats.begin(), stats.end(), [&](const KindStats& s) { return s.kind == kind; });
}

std::string estimate_text(const std::optional<Estimate>& e, bool sign) {
  if (!e) return "";
  return (sign ? signed_decimal_text(e->value, 2) : decimal_text(e->value, 2)) + (e->ci ? " " + ci_text(e->ci) : "");
}

bool any_layer(const KindStats& s, std::optional<Estimate> LayerStats::*estimate) {
  return std::any_of(s.layers.begin(), s.layers.end(), [&](const LayerStats& l) { return (l.*estimate).has_value(); });
}

CodelengthColumns kind_codelength(const std::map<std::string, std::vector<SeedCodelength>>& by_kind, const std::string& kind) {
  auto found = by_kind.find(kind);
  return codelength_columns(found == by_kind.end() ? std::vector<SeedCodelength>{} : found->second);
}

std::string kind_table(const KindStats& s, const std::vector<KindStats>& all, const ReportInfo& info) {
  const bool control = s.kind != "control" && !is_lens(s.kind) && has_kind(all, "control");
  const bool pretrained = s.kind != "pretrained" && s.kind != "control" && !is_lens(s.kind) && has_kind(all, "pretrained");
  const auto code = kind_codelength(info.codelength, s.kind);
  const auto control_code = kind_codelength(info.control_task_codelength, s.kind);
  const bool selectivity = any_layer(s, &LayerStats::selectivity), conditional = any_layer(s, &LayerStats::conditional_f1);
  std::string out = "| layer | F1 | F1 95% CI | HasAns F1 | NoAns acc. | EM |";
  std::string rule = "|---:|---:|:---:|---:|---:|---:|";
  if (control) out += " F1 \u2212 control |", rule += "---:|";
  if (pretrained) out += " F1 \u2212 pretrained |", rule += "---:|";
  if (!code.kbits.empty()) out += " codelength (kbits) | compression |", rule += "---:|---:|";
  if (selectivity) out += " control-task F1 | selectivity |", rule += "---:|---:|";
  if (!control_code.kbits.empty()) out += " control-task compression |", rule += "---:|";
  if (conditional) out += " F1 [l ; 0] | F1 layer 0 | gain over layer 0 |", rule += "---:|---:|---:|";
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
    if (selectivity) out += " " + estimate_text(l.control_task_f1, false) + " | " + estimate_text(l.selectivity, true) + " |";
    if (!control_code.kbits.empty())
      out += index < control_code.compression.size() ? " " + decimal_text(control_code.compression[index], 2) + " |" : " |";
    if (conditional)
      out += " " + estimate_text(l.conditional_f1, false) + " | " + estimate_text(l.embeddings_f1, false) + " | " +
             estimate_text(l.conditional_gain, true) + " |";
    out += "\n";
  }
  return out;
}

// Per kind (last epoch): each layer's F1 per architecture, * on the Pareto frontier, and the hypervolume.
std::string complexity_section(const std::vector<KindStats>& stats) {
  std::vector<KindStats> sweep;
  for (const auto& s : last_epochs(stats))
    if (in_sweep(s)) sweep.push_back(s);
  std::vector<std::string> kinds;
  for (const auto& s : sweep)
    if (std::find(kinds.begin(), kinds.end(), s.kind) == kinds.end()) kinds.push_back(s.kind);
  const auto reference = pareto_reference(stats);
  std::string out = "\n## Probe complexity\n\nF1 per layer of each probe architecture (parameters per layer; * = on the "
                    "layer's Pareto frontier of log10 parameters against F1), and the frontier's hypervolume above (" +
                    decimal_text(reference.complexity, 2) + ", " + decimal_text(reference.accuracy, 2) +
                    "): the largest probe's log10 parameters plus one decade, and the always-\"\" F1 (Pimentel et al. 2020; "
                    "units: decades x F1 points). Nuclear norms of the linear and low-rank probes are in summary.csv.\n\n"
                    "![F1 against probe parameters, and hypervolume per layer](complexity.svg)\n";
  for (const auto& kind : kinds) {
    std::vector<const KindStats*> archs;
    for (const auto& s : sweep)
      if (s.kind == kind) archs.push_back(&s);
    out += "\n### " + kind + ", epoch " + std::to_string(archs.front()->epoch) + "\n\n| layer |";
    std::string rule = "|---:|";
    for (const auto* a : archs)
      out += " " + report_variant(a->variant).arch.spec() + " (" + std::to_string(a->parameters) + ") |", rule += "---:|";
    out += " hypervolume |\n" + rule + "---:|\n";
    for (const auto& layer : archs.front()->layers) {
      out += "| " + std::to_string(layer.layer) + " |";
      double hypervolume = NAN;
      for (const auto* a : archs) {
        const auto it = std::find_if(a->layers.begin(), a->layers.end(), [&](const LayerStats& l) { return l.layer == layer.layer; });
        if (it == a->layers.end()) {
          out += " |";
          continue;
        }
        out += " " + decimal_text(it->mean[metric_at(LayerMetric::f1)], 2) + (it->pareto ? " *" : "") + " |";
        if (!std::isnan(it->hypervolume)) hypervolume = it->hypervolume;
      }
      out += " " + decimal_text(hypervolume, 2) + " |\n";
    }
  }
  return out;
}

std::string kind_heading(const KindStats& s) {
  if (s.kind == "head_lens") return "head lens (the fine-tuned model's own QA head on each layer; no training)";
  if (is_tuned_lens(s))
    return "tuned lens of " + s.kind + ", epoch " + std::to_string(s.epoch) +
           " (an affine translator per layer into the model's own QA head)";
  if (is_lens(s.kind)) return s.kind;
  return s.kind + ", epoch " + std::to_string(s.epoch) + " (" + seeds_text(s) + ")";
}

std::string variants_text(const std::vector<KindStats>& stats) {
  const auto series = report_series(stats);
  bool selectivity = false, conditional = false;
  for (const auto& s : series) selectivity |= any_layer(s, &LayerStats::selectivity), conditional |= any_layer(s, &LayerStats::conditional_f1);
  std::string out;
  if (!series.empty() && !series.front().variant.empty())
    out += "The tables follow the " + report_variant(series.front().variant).arch.spec() + " probes. ";
  if (selectivity)
    out += "The control task (Hewitt & Liang 2019; docs/methods.md) gives each token id a fixed pseudo-random score: a "
           "question's control answer starts at its context's best-scoring token and ends up to three tokens later, "
           "or is \"\" when that score is under a threshold set for SQuAD's unanswerable share. A probe can only "
           "memorise token types to solve it: selectivity = F1 \u2212 control-task F1, paired over questions. ";
  if (conditional)
    out += "Conditional probing (Hewitt et al. 2021): a probe on [layer l ; layer 0] against one on layer 0 (the "
           "embeddings) alone; the gain is what layer l adds beyond the non-contextual embeddings, paired. ";
  return out.empty() ? out : out + "\n\n";
}

}  // namespace

std::string report_md(const std::vector<KindStats>& stats, const ReportInfo& info) {
  std::string out = "# Probing report: " + info.experiment + "\n\n";
  const auto last = last_epochs(report_series(stats));
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
  out += variants_text(stats);
  if (has_kind(last, "head_lens"))
    out += "The head lens applies the fine-tuned model's own QA head (after its final norm, where the family has one) "
           "to every layer's hidden state, with no training, decoded as run_squad --do_eval decodes the model's "
           "answers; at the last layer it is the model's own answers.\n\n";
  out += "![F1, HasAns F1 and NoAns accuracy per layer](report.svg)\n";
  for (const auto& s : last)
    out += "\n## " + kind_heading(s) + "\n\n" + kind_table(s, last, info);
  if (has_complexity_sweep(stats)) out += complexity_section(stats);
  if (!info.amnesic.empty())
    out += "\n## Amnesic probing (LEACE)\n\nThe fine-tuned model's dev scores with each layer's answer-start and "
           "answer-end information erased inside its forward pass (probe_tools amnesic; details in "
           "[amnesic.md](amnesic.md)), against erasing a random subspace of the same rank.\n\n"
           "![amnesic probing per layer](amnesic.svg)\n\n" + amnesic_table_md(info.amnesic);
  return out;
}

}  // namespace layerprobe
