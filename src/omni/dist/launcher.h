// `omni launch`: N local processes of one command with torchrun's variables (RANK, LOCAL_RANK,
// WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT). Their stderr is relayed line by line;
// when one fails, the others are stopped and the launch fails with that rank's last line.
#pragma once
#include <string>
#include <vector>

namespace omni::dist {

struct LaunchOptions {
  int nproc_per_node = 1, nnodes = 1, node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::vector<std::string> command;  // "omni" as the first word runs this omni binary
  double grace_s = 5;                // after a failure: SIGTERM, then SIGKILL after this long
};

// Runs the processes to the end; 0 when all succeed. A failure prints one
// "error: launch: rank R ...: <its last stderr line>" line and returns non-zero.
int launch(const LaunchOptions& o);

}  // namespace omni::dist
