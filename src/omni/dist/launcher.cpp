#include "omni/dist/launcher.h"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "omni/core/error.h"

namespace omni::dist {
namespace {
volatile std::sig_atomic_t g_stop_signal = 0;
void on_signal(int s) { g_stop_signal = s; }

struct Child {
  pid_t pid = -1;
  int err_fd = -1;  // read end of its stderr
  int rank = 0;
  bool alive = true;
  int status = 0;
  std::string partial, last_line;
  std::vector<std::string> errors;  // its "error: " lines, held back for the launch's last line
  bool stopped = false;             // exited after the launcher began stopping the ranks
};

constexpr char kErrorPrefix[] = "error: ";  // how every omni error line starts (main.cpp)
constexpr size_t kErrorPrefixLen = sizeof kErrorPrefix - 1;
bool is_error_line(const std::string& line) { return line.compare(0, kErrorPrefixLen, kErrorPrefix) == 0; }

// One whole line of a rank's stderr: relayed, but an "error: " line is held back, so that a bad
// config every rank reads is the launch's one error line, not one per rank plus the launcher's.
void relay_line(Child& c, const std::string& line) {
  if (is_error_line(line)) {
    c.errors.push_back(line);
  } else {
    const std::string out = line + "\n";
    (void)!write(STDERR_FILENO, out.data(), out.size());
  }
  if (!line.empty() && line.find_first_not_of(" \r\t") != std::string::npos) c.last_line = line;
}

void relay(Child& c) {
  char buf[4096];
  const ssize_t n = read(c.err_fd, buf, sizeof buf);
  if (n <= 0) {
    if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
      close(c.err_fd);
      c.err_fd = -1;
      if (!c.partial.empty()) relay_line(c, c.partial);
      c.partial.clear();
    }
    return;
  }
  c.partial.append(buf, static_cast<size_t>(n));
  size_t nl;
  while ((nl = c.partial.find('\n')) != std::string::npos) {
    const std::string line = c.partial.substr(0, nl);
    c.partial.erase(0, nl + 1);
    relay_line(c, line);
  }
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
                                  strsignal(WTERMSIG(status)) + ")";
  return "stopped";
}
}  // namespace

int launch(const LaunchOptions& o) {
  if (o.nproc_per_node < 1) throw Error("--nproc_per_node", "must be at least 1");
  // A process per GPU or per few cores; 10^5 forked until the memory ran out, and the launcher,
  // stuck in fork, ignored SIGTERM.
  constexpr int kMaxProcsPerNode = 256;
  if (o.nproc_per_node > kMaxProcsPerNode)
    throw Error("--nproc_per_node " + std::to_string(o.nproc_per_node),
                "at most " + std::to_string(kMaxProcsPerNode) + " processes on one machine");
  if (o.nnodes < 1) throw Error("--nnodes", "must be at least 1");
  if (o.node_rank < 0 || o.node_rank >= o.nnodes) throw Error("--node_rank", "must be in [0, nnodes)");
  if (o.master_port < 1 || o.master_port > 65535) throw Error("--master_port", "must be in [1, 65535]");
  if (o.command.empty()) throw Error("launch", "no command (usage: omni launch --nproc_per_node N -- omni train cfg.yaml)");
  std::vector<std::string> cmd = o.command;
  if (cmd[0] == "omni") {  // this binary, whatever PATH says
    std::error_code ec;
    const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) cmd[0] = self.string();
  }
  const int world = o.nproc_per_node * o.nnodes;

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  std::vector<Child> kids(static_cast<size_t>(o.nproc_per_node));
  const pid_t launcher = getpid();
  for (int i = 0; i < o.nproc_per_node; ++i) {
    int fds[2];
    if (pipe(fds) != 0) throw Error("launch", std::string("pipe: ") + std::strerror(errno));
    const int rank = o.node_rank * o.nproc_per_node + i;
    const pid_t pid = fork();
    if (pid < 0) throw Error("launch", std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
      // A launcher killed outright (SIGKILL, OOM) takes its ranks with it instead of orphaning them.
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != launcher) _exit(1);  // it died before the prctl
      close(fds[0]);
      dup2(fds[1], STDERR_FILENO);
      close(fds[1]);
      for (const auto& k : kids)
        if (k.err_fd >= 0) close(k.err_fd);
      setenv("RANK", std::to_string(rank).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(i).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(o.nproc_per_node).c_str(), 1);
      setenv("MASTER_ADDR", o.master_addr.c_str(), 1);
      setenv("MASTER_PORT", std::to_string(o.master_port).c_str(), 1);
      std::vector<char*> argv;
      for (auto& a : cmd) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execvp(argv[0], argv.data());
      std::fprintf(stderr, "error: %s: %s\n", cmd[0].c_str(), std::strerror(errno));
      _exit(127);
    }
    close(fds[1]);
    kids[static_cast<size_t>(i)].pid = pid;
    kids[static_cast<size_t>(i)].err_fd = fds[0];
    kids[static_cast<size_t>(i)].rank = rank;
  }

  int failed = -1;  // index of the first child that failed
  bool stopping = false;
  auto stop_started = std::chrono::steady_clock::now();
  bool killed = false;
  auto stop_all = [&](int sig) {
    for (auto& k : kids)
      if (k.alive) kill(k.pid, sig);
  };
  while (true) {
    std::vector<pollfd> fds;
    std::vector<Child*> who;
    for (auto& k : kids)
      if (k.err_fd >= 0) {
        fds.push_back({k.err_fd, POLLIN, 0});
        who.push_back(&k);
      }
    if (!fds.empty()) {
      const int r = poll(fds.data(), fds.size(), 100);
      if (r > 0)
        for (size_t j = 0; j < fds.size(); ++j)
          if (fds[j].revents & (POLLIN | POLLHUP | POLLERR)) relay(*who[j]);
    } else {
      usleep(100 * 1000);
    }
    bool any_alive = false;
    for (size_t j = 0; j < kids.size(); ++j) {
      auto& k = kids[j];
      if (!k.alive) continue;
      int status = 0;
      const pid_t w = waitpid(k.pid, &status, WNOHANG);
      if (w == k.pid) {
        k.alive = false;
        k.status = status;
        const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        k.stopped = stopping;
        if (!ok && failed < 0 && !stopping) {
          failed = static_cast<int>(j);
          stopping = true;
          stop_started = std::chrono::steady_clock::now();
          stop_all(SIGTERM);
        }
      } else {
        any_alive = true;
      }
    }
    if (g_stop_signal && !stopping) {
      stopping = true;
      stop_started = std::chrono::steady_clock::now();
      stop_all(SIGTERM);
    }
    if (stopping && !killed &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - stop_started).count() > o.grace_s) {
      stop_all(SIGKILL);
      killed = true;
    }
    const bool pipes_open = std::any_of(kids.begin(), kids.end(), [](const Child& k) { return k.err_fd >= 0; });
    if (!any_alive && !pipes_open) break;
    if (!any_alive && stopping) {  // a grandchild may hold a pipe open: do not wait for it
      for (auto& k : kids)
        if (k.err_fd >= 0) relay(k);
      break;
    }
  }
  for (auto& k : kids)
    if (k.err_fd >= 0) close(k.err_fd);
  if (failed >= 0) {
    // The first rank to fail names the launch's one error line, with its own error (or its last
    // line); another rank's different error from before the stop is relayed above it, the same
    // error and what the stopped ranks said on the way down are not.
    const auto& k = kids[static_cast<size_t>(failed)];
    const std::string cause = k.errors.empty() ? k.last_line : k.errors.back().substr(kErrorPrefixLen);
    std::set<std::string> said;
    for (size_t e = 0; e + 1 < k.errors.size(); ++e)
      if (said.insert(k.errors[e]).second) std::fprintf(stderr, "%s\n", k.errors[e].c_str());
    if (!k.errors.empty()) said.insert(k.errors.back());
    for (const auto& other : kids)
      if (&other != &k && !other.stopped)
        for (const auto& e : other.errors)
          if (said.insert(e).second) std::fprintf(stderr, "%s\n", e.c_str());
    std::fprintf(stderr, "error: launch: rank %d %s%s%s\n", k.rank, describe(k.status).c_str(), cause.empty() ? "" : ": ",
                 cause.c_str());
    return 1;
  }
  if (!g_stop_signal)  // held, but the launch did not fail (a rank said "error:" and exited 0)
    for (const auto& k : kids)
      for (const auto& e : k.errors) std::fprintf(stderr, "%s\n", e.c_str());
  if (g_stop_signal) {
    std::fprintf(stderr, "error: launch: interrupted (signal %d); stopped all ranks\n", static_cast<int>(g_stop_signal));
    return 128 + static_cast<int>(g_stop_signal);
  }
  return 0;
}

}  // namespace omni::dist
