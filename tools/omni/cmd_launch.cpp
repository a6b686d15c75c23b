// `omni launch --nproc_per_node N [--nnodes M --node_rank R --master_addr A --master_port P] -- CMD`:
// N local processes of CMD with torchrun's variables (omni/dist/launcher.h).
#include "commands.h"
#include "omni/dist/launcher.h"

namespace omni::cli {

void add_launch_command(CLI::App& app, Runner& run) {
  auto* cmd = app.add_subcommand("launch", "run a command in N processes with torchrun's variables (multi-process training)");
  auto o = std::make_shared<dist::LaunchOptions>();
  cmd->add_option("--nproc_per_node", o->nproc_per_node, "processes on this machine [1]");
  cmd->add_option("--nnodes", o->nnodes, "machines [1]");
  cmd->add_option("--node_rank", o->node_rank, "this machine's index [0]");
  cmd->add_option("--master_addr", o->master_addr, "address of rank 0's machine [127.0.0.1]");
  cmd->add_option("--master_port", o->master_port, "rendezvous port on it [29500]");
  cmd->add_option("command", o->command, "the command after --, e.g. -- omni train cfg.yaml")->required();
  cmd->footer("\nExample: omni launch --nproc_per_node 2 -- omni train examples/train/janus_tiny.yaml\n"
              "Every process gets RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT;\n"
              "when one fails the others are stopped and the launch exits non-zero with its last line.");
  cmd->callback([o, &run]() { run = [o]() { return dist::launch(*o); }; });
}

}  // namespace omni::cli
