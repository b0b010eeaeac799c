// The experiment-wide outputs of probe_evaluate exper: summary.csv, the two
// plots and report.md, from per-seed results.
#include <cmath>

#include "layerprobe/probe/study_report.hpp"
#include "test_support.hpp"

using namespace layerprobe;

namespace {

// An evaluation whose per-question scores give exactly these summaries:
// `answerable` questions all with f1 `has_f1`, the rest all right (NoAns 100).
SquadEvaluation study_eval(double overall_exact, double overall_f1, double has_f1) {
  SquadEvaluation e;
  e.overall = {overall_exact, overall_f1, 4};
  e.has_ans = ScoreSummary{has_f1, has_f1, 2};
  e.no_ans = ScoreSummary{100.0, 100.0, 2};
  e.questions = {{0, has_f1 / 100, true}, {0, has_f1 / 100, true}, {1, 1, false}, {1, 1, false}};
  return e;
}

RunResults study_run(const std::string& kind, int epoch, std::optional<uint64_t> seed, double f1) {
  RunResults run;
  run.kind = kind;
  run.epoch = epoch;
  run.seed = seed;
  run.layers = {{1, study_eval(50.0, f1, 2 * f1 - 100)}, {2, study_eval(50.0, f1 + 10, 2 * (f1 + 10) - 100)}};
  return run;
}

size_t occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}

std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> fields(1);
  for (char c : line) {
    if (c == ',') fields.emplace_back();
    else fields.back().push_back(c);
  }
  return fields;
}

std::string csv_line(const std::string& csv, size_t index) {
  size_t start = 0;
  for (size_t i = 0; i < index; ++i) start = csv.find('\n', start) + 1;
  return csv.substr(start, csv.find('\n', start) - start);
}

BootstrapOptions resamples(int64_t n) {
  BootstrapOptions o;
  o.resamples = n;
  return o;
}

BootstrapOptions no_bootstrap() { return resamples(0); }

}  // namespace

TEST(StudyReport, OneSeedKeepsTheOriginalColumnsAndLeavesTheSpreadEmpty) {
  const auto stats = layer_stats({study_run("pretrained", 3, std::nullopt, 52.5)}, no_bootstrap());
  const std::string csv = summary_csv(stats);
  const auto header = csv_fields(csv_line(csv, 0));
  ASSERT_GE(header.size(), 10u);
  EXPECT_EQ(csv_line(csv, 0).rfind("kind,epoch,layer,exact,f1,exact_no_ans,f1_no_ans,exact_has_ans,f1_has_ans,seeds,", 0), 0u);
  const auto row = csv_fields(csv_line(csv, 1));
  ASSERT_EQ(row.size(), header.size());
  EXPECT_EQ(row[0], "pretrained");
  EXPECT_EQ(row[2], "1");
  EXPECT_EQ(row[4], "52.5");   // f1, as Python prints it
  EXPECT_EQ(row[9], "1");      // seeds
  EXPECT_EQ(row[11], "");      // f1_std: none with one seed
  EXPECT_EQ(occurrences(csv, "\n"), 3u);
}

TEST(StudyReport, SeedsGiveTheMeanAndTheSampleStandardDeviation) {
  const auto stats = layer_stats({study_run("fine_tuned", 1, 1, 50.0), study_run("fine_tuned", 1, 2, 60.0)}, no_bootstrap());
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].seeds.size(), 2u);
  const auto& layer = stats[0].layers[0];
  EXPECT_DOUBLE_EQ(layer.mean[static_cast<size_t>(LayerMetric::f1)], 55.0);
  EXPECT_NEAR(layer.std[static_cast<size_t>(LayerMetric::f1)], std::sqrt(50.0), 1e-12);
  EXPECT_DOUBLE_EQ(stats[0].always_empty_f1, 50.0);
  const auto row = csv_fields(csv_line(summary_csv(stats), 1));
  EXPECT_EQ(row[4], "55.0");
  EXPECT_EQ(row[9], "2");
}

TEST(StudyReport, DifferencesToPretrainedAndControlAreWrittenPerLayer) {
  const BootstrapOptions bootstrap = resamples(50);
  const auto stats = layer_stats({study_run("pretrained", 1, std::nullopt, 60.0), study_run("fine_tuned", 1, std::nullopt, 70.0),
                                  study_run("control", 1, std::nullopt, 52.0)},
                                 bootstrap);
  ASSERT_EQ(stats.size(), 3u);
  EXPECT_EQ(stats[0].kind, "pretrained");
  EXPECT_EQ(stats[1].kind, "fine_tuned");
  EXPECT_EQ(stats[2].kind, "control");
  const auto& fine = stats[1].layers[0];
  EXPECT_DOUBLE_EQ(fine.minus.at("pretrained").at(LayerMetric::f1).value, 10.0);
  EXPECT_DOUBLE_EQ(fine.minus.at("control").at(LayerMetric::f1).value, 18.0);
  EXPECT_EQ(stats[0].layers[0].minus.count("pretrained"), 0u);
  EXPECT_EQ(stats[2].layers[0].minus.count("control"), 0u);
  const std::string csv = summary_csv(stats);
  const auto header = csv_fields(csv_line(csv, 0));
  auto column = [&](const std::string& name) {
    return static_cast<size_t>(std::find(header.begin(), header.end(), name) - header.begin());
  };
  ASSERT_LT(column("f1_minus_control_ci_high"), header.size());
  const auto fine_row = csv_fields(csv_line(csv, 3));
  EXPECT_EQ(fine_row[0], "fine_tuned");
  EXPECT_EQ(fine_row[column("f1_minus_control")], "18.0");
  EXPECT_EQ(fine_row[column("f1_minus_pretrained")], "10.0");
  EXPECT_FALSE(fine_row[column("f1_ci_low")].empty());
  EXPECT_TRUE(csv_fields(csv_line(csv, 1))[column("f1_minus_pretrained")].empty());
}

TEST(StudyReport, LayersSvgHasTwoPanelsBandsAndEscapedLegend) {
  auto runs = std::vector<RunResults>{study_run("fine_tuned", 1, 1, 50.0), study_run("fine_tuned", 1, 2, 60.0),
                                      study_run("pre<trained>&", 3, std::nullopt, 52.0)};
  const std::string svg = layers_svg(layer_stats(runs, no_bootstrap()));
  EXPECT_EQ(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0), 0u);
  EXPECT_NE(svg.find("Exact match (EM, %) per layer"), std::string::npos);
  EXPECT_NE(svg.find("F1 (%) per layer"), std::string::npos);
  EXPECT_EQ(occurrences(svg, "<polyline"), 4u);  // 2 series x 2 panels
  EXPECT_EQ(occurrences(svg, "<polygon"), 2u);   // the seeded series' band in each panel
  EXPECT_NE(svg.find("pre&lt;trained&gt;&amp;, epoch 3"), std::string::npos);
  EXPECT_EQ(svg.find("<trained>"), std::string::npos);
  EXPECT_EQ(occurrences(svg, "<text"), occurrences(svg, "</text>"));
}

TEST(StudyReport, ReportSvgHasThreePanelsTheBaselineAndCiBars) {
  const BootstrapOptions bootstrap = resamples(20);
  const auto stats = layer_stats({study_run("pretrained", 1, std::nullopt, 60.0), study_run("pretrained", 2, std::nullopt, 61.0),
                                  study_run("control", 2, std::nullopt, 52.0)},
                                 bootstrap);
  const std::string svg = report_svg(stats);
  for (const char* title : {"F1 (%)", "HasAns F1 (%)", "NoAns accuracy (%)"})
    EXPECT_NE(svg.find(std::string(">") + title + "<"), std::string::npos) << title;
  EXPECT_EQ(occurrences(svg, "<polyline"), 6u);  // the last epoch of 2 kinds x 3 panels
  EXPECT_EQ(occurrences(svg, "always &quot;&quot;"), 3u);
  EXPECT_NE(svg.find("stroke-dasharray=\"7 4\""), std::string::npos);  // the control, dashed
  EXPECT_NE(svg.find("pretrained, epoch 2"), std::string::npos);
  EXPECT_EQ(svg.find("pretrained, epoch 1"), std::string::npos);
  EXPECT_NE(svg.find("bars: 95% bootstrap interval"), std::string::npos);
}

TEST(StudyReport, MarkdownTablesGiveMeanSpreadGapAndCodelength) {
  const BootstrapOptions bootstrap = resamples(20);
  const auto stats = layer_stats({study_run("fine_tuned", 1, 1, 50.0), study_run("fine_tuned", 1, 2, 60.0),
                                  study_run("control", 1, 1, 52.0), study_run("control", 1, 2, 52.0)},
                                 bootstrap);
  ReportInfo info;
  info.experiment = "exper";
  info.dev_file = "dev.json";
  info.bootstrap = bootstrap;
  Codelength code;
  code.online_bits = {2000.0, 1000.0};
  code.uniform_bits = 4000.0;
  code.features = 10;
  info.codelength["fine_tuned"] = {{1, code}, {2, code}};
  const std::string md = report_md(stats, info);
  EXPECT_NE(md.find("## fine_tuned, epoch 1 (2 seeds (1, 2))"), std::string::npos) << md;
  EXPECT_NE(md.find("| layer | F1 | F1 95% CI |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 1 | 55.00 \u00b1 7.07 | ["), std::string::npos) << md;
  EXPECT_NE(md.find("| +3.00 ["), std::string::npos) << md;  // F1 - control at layer 1
  EXPECT_NE(md.find("| 2.0 | 2.00 |"), std::string::npos) << md;  // 2000 bits, compression 4000/2000
  EXPECT_NE(md.find("![F1, HasAns F1 and NoAns accuracy per layer](report.svg)"), std::string::npos);
  EXPECT_NE(md.find("always answering \"\" scores F1 50.00"), std::string::npos) << md;
}

TEST(StudyReport, SeedsScoredOnOtherQuestionsAreRefused) {
  auto a = study_run("fine_tuned", 1, 1, 50.0), b = study_run("fine_tuned", 1, 2, 60.0);
  b.layers[0].eval.questions.pop_back();
  EXPECT_THROW(layer_stats({a, b}, no_bootstrap()), Error);
}
