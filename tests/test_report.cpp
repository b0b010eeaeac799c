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
