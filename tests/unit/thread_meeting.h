// A reusable barrier for `n` threads standing in for the processes of a distributed run.
#pragma once
#include <condition_variable>
#include <mutex>

namespace omni::testing {

class Meeting {
 public:
  explicit Meeting(int n) : n_(n) {}
  void wait() {
    std::unique_lock<std::mutex> l(m_);
    const int gen = gen_;
    if (++count_ == n_) {
      count_ = 0;
      ++gen_;
      cv_.notify_all();
    } else {
      cv_.wait(l, [&] { return gen != gen_; });
    }
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  int n_, count_ = 0, gen_ = 0;
};

}  // namespace omni::testing
