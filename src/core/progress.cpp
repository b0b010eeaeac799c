#include "layerprobe/core/progress.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace layerprobe {

using Clock = std::chrono::steady_clock;

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  char buffer[32];
  auto total = static_cast<long long>(seconds);
  if (seconds < 60) {
    std::snprintf(buffer, sizeof buffer, "%.1fs", seconds);
  } else if (total < 3600) {
    std::snprintf(buffer, sizeof buffer, "%lldm%02llds", total / 60, total % 60);
  } else {
    std::snprintf(buffer, sizeof buffer, "%lldh%02lldm%02llds", total / 3600, total / 60 % 60, total % 60);
  }
  return buffer;
}

ProgressMeter::ProgressMeter(std::string label, int64_t total, std::string unit, double log_interval_s)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      log_interval_s_(log_interval_s),
      // No live bar where info lines are off (--quiet, ranks other than 0 of a data-parallel run).
      tty_(::isatty(STDERR_FILENO) == 1 && spdlog::should_log(spdlog::level::info)),
      start_(Clock::now()),
      last_shown_(start_) {}

double ProgressMeter::seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

double ProgressMeter::rate() const {
  double s = seconds();
  return s > 0 ? done_ / s : 0.0;
}

std::string ProgressMeter::line(const std::string& detail) const {
  double r = rate();
  double eta = r > 0 ? (total_ - done_) / r : NAN;
  char buffer[256];
  std::snprintf(buffer, sizeof buffer, "%s %lld/%lld %s (%.1f%%), %.2f %s/s, ETA %s", label_.c_str(),
                static_cast<long long>(done_), static_cast<long long>(total_), unit_.c_str(),
                total_ > 0 ? 100.0 * done_ / total_ : 100.0, r, unit_.c_str(), format_duration(eta).c_str());
  std::string text = buffer;
  if (!detail.empty()) text += ", " + detail;
  return text;
}

void ProgressMeter::advance(int64_t n, const std::string& detail) {
  done_ += n;
  auto now = Clock::now();
  double since = std::chrono::duration<double>(now - last_shown_).count();
  if (tty_) {
    if (since < 0.25 && done_ < total_) return;
    std::fprintf(stderr, "\r\033[K%s", line(detail).c_str());
    std::fflush(stderr);
  } else {
    if (since < log_interval_s_) return;
    spdlog::info("{}", line(detail));
  }
  last_shown_ = now;
}

void ProgressMeter::finish(const std::string& detail) {
  if (tty_) std::fprintf(stderr, "\r\033[K");
  std::string text = label_ + " done: " + std::to_string(done_) + " " + unit_ + " in " + format_duration(seconds());
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, " (%.2f %s/s)", rate(), unit_.c_str());
  text += buffer;
  if (!detail.empty()) text += ", " + detail;
  spdlog::info("{}", text);
}

}  // namespace layerprobe
