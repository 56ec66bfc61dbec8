// ThreadPool: a fixed set of worker threads draining a FIFO of tasks. Used for prefetch fetches and
// background verification, so that neither runs on a FUSE worker's critical path.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace modelfs {

class ThreadPool {
 public:
  explicit ThreadPool(size_t threads);
  ~ThreadPool();  // runs no new tasks; waits for running ones to finish
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Queues `task`. Returns false (and drops the task) once shutdown has begun.
  bool Submit(std::function<void()> task);
  size_t queued() const;

 private:
  void Run();
  mutable std::mutex mu_;          // guards tasks_ and stopping_
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace modelfs
