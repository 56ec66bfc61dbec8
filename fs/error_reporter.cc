#include "fs/error_reporter.h"

#include <cerrno>
#include <chrono>

#include "common/log.h"
#include "common/metrics.h"
#include "fs/errno.h"

namespace modelfs {

ErrorReporter::ErrorReporter(MetricsRegistry* metrics, uint32_t lines_per_second)
    : metrics_(metrics), limiter_(lines_per_second) {}

bool ErrorReporter::IsNormalAnswer(const std::string& op, int err) {
  return (op == "lookup" && err == ENOENT) || (op == "getxattr" && err == ENODATA);
}

void ErrorReporter::Report(const char* op, int err, const std::function<std::string()>& path,
                           const std::string& cause) {
  const std::string name = ErrnoName(err);
  if (metrics_) metrics_->Value(Metric::kFuseErrors, {op, name})->Add(1);
  if (IsNormalAnswer(op, err)) {
    MODELFS_LOG(kDebug, "%s %s: %s (%s)", op, path().c_str(), name.c_str(), cause.c_str());
    return;
  }
  if (!LogEnabled(LogLevel::kWarn)) return;
  const double now =
      std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  const LineRateLimiter::Decision d = limiter_.Admit(now);
  if (!d.write) return;
  lines_written_.fetch_add(1, std::memory_order_relaxed);
  std::string more;
  if (d.suppressed > 0) more = " (" + std::to_string(d.suppressed) + " more error replies not logged)";
  MODELFS_LOG(kWarn, "%s %s failed with %s: %s%s", op, path().c_str(), name.c_str(), cause.c_str(),
              more.c_str());
}

}  // namespace modelfs
