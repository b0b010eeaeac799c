// Progress of long work: a live bar on a terminal, plain log lines otherwise,
// always with done/total, rate and ETA.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace layerprobe {

class ProgressMeter {
 public:
  ProgressMeter(std::string label, int64_t total, std::string unit = "features", double log_interval_s = 10.0);
  // Adds `n` finished units; `detail` (e.g. "loss 1.23") is shown with the counts.
  void advance(int64_t n, const std::string& detail = "");
  // Logs the final line (total time and mean rate).
  void finish(const std::string& detail = "");
  double seconds() const;
  double rate() const;  // units per second so far
  int64_t done() const { return done_; }

 private:
  std::string line(const std::string& detail) const;

  std::string label_, unit_;
  int64_t total_, done_ = 0;
  double log_interval_s_;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_shown_;
};

// "1h02m03s", "4m05s", "6.2s".
std::string format_duration(double seconds);

}  // namespace layerprobe
