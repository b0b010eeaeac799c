#include <sstream>

#include "layerprobe/probe/report.hpp"
#include "test_support.hpp"

using namespace layerprobe;

namespace {

SquadEvaluation make_eval(double exact, double f1, bool with_no_ans = true) {
  SquadEvaluation e;
  e.overall = {exact, f1, 6078};
  e.has_ans = ScoreSummary{exact / 2, f1 / 2, 2910};
  if (with_no_ans) e.no_ans = ScoreSummary{100.0, 100.0, 3168};
  return e;
}

std::vector<RunResults> sample_runs() {
  RunResults fine{"fine_tuned", 1, {{1, make_eval(52.122408687068116, 52.122408687068116)}, {2, make_eval(70.5, 74.25)}}};
  RunResults pre{"pretrained", 3, {{1, make_eval(52.0, 52.5)}, {2, make_eval(51.0, 53.0)}}};
  return {fine, pre};
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}

}  // namespace

TEST(Report, ResultsCsvHasTheOriginalColumnsAndPythonFloats) {
  std::vector<LayerResult> layers = {{1, make_eval(52.122408687068116, 52.122408687068116)}, {2, make_eval(70.5, 74.25, false)}};
  EXPECT_EQ(results_csv(layers),
            "layer,exact,f1,exact_no_ans,f1_no_ans,exact_has_ans,f1_has_ans\n"
            "1,52.122408687068116,52.122408687068116,100.0,100.0,26.061204343534058,26.061204343534058\n"
            "2,70.5,74.25,,,35.25,37.125\n");
}

TEST(Report, TableIsAligned) {
  std::vector<LayerResult> layers = {{1, make_eval(5.0, 6.0)}, {12, make_eval(77.25, 80.875, false)}};
  const std::string table = results_table(layers);
  std::istringstream in(table);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0].size(), lines[1].size());
  EXPECT_EQ(lines[1].size(), lines[2].size());
  EXPECT_EQ(lines[0].rfind("layer", 0), 0u);
  EXPECT_NE(lines[2].find("77.25"), std::string::npos);
  EXPECT_NE(lines[2].find("80.88"), std::string::npos);
  EXPECT_NE(lines[2].find(" - "), std::string::npos);  // no unanswerable questions
}

TEST(Report, SummaryCsvListsEveryKindEpochAndLayer) {
  const std::string csv = summary_csv(sample_runs());
  EXPECT_EQ(csv.substr(0, csv.find('\n')), "kind,epoch,layer,exact,f1,exact_no_ans,f1_no_ans,exact_has_ans,f1_has_ans");
  EXPECT_NE(csv.find("\nfine_tuned,1,2,70.5,74.25,100.0,100.0,35.25,37.125\n"), std::string::npos);
  EXPECT_NE(csv.find("\npretrained,3,1,52.0,52.5,"), std::string::npos);
  EXPECT_EQ(count(csv, "\n"), 5u);
}

TEST(Report, SvgHasTwoPanelsOneLinePerRunAndALegend) {
  auto runs = sample_runs();
  runs[1].kind = "pre<trained>&";
  const std::string svg = layers_svg(runs);
  EXPECT_EQ(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("Exact match (EM, %) per layer"), std::string::npos);
  EXPECT_NE(svg.find("F1 (%) per layer"), std::string::npos);
  EXPECT_EQ(count(svg, "<polyline"), 4u);       // 2 runs x 2 panels
  EXPECT_EQ(count(svg, "<circle"), 8u);         // one marker per layer and panel
  EXPECT_NE(svg.find("fine_tuned, epoch 1"), std::string::npos);
  EXPECT_NE(svg.find("pre&lt;trained&gt;&amp;, epoch 3"), std::string::npos);
  EXPECT_EQ(svg.find("<trained>"), std::string::npos);
  EXPECT_EQ(count(svg, "<text"), count(svg, "</text>"));
}
