#include "layerprobe/core/progress.hpp"

#include "test_support.hpp"

using namespace layerprobe;

TEST(FormatDuration, ChoosesUnitsByMagnitude) {
  EXPECT_EQ(format_duration(6.24), "6.2s");
  EXPECT_EQ(format_duration(245), "4m05s");
  EXPECT_EQ(format_duration(3723), "1h02m03s");
  EXPECT_EQ(format_duration(-1), "?");
}

TEST(ProgressMeter, CountsWhatIsDone) {
  ProgressMeter meter("test", 10, "items", 1e9);
  meter.advance(3);
  meter.advance(4, "loss 1.0");
  EXPECT_EQ(meter.done(), 7);
  EXPECT_GT(meter.rate(), 0.0);
}
