// `omni train`: supervised fine-tuning of any family that implements models::Trainable. One
// optimizer step reads as a few calls (llm.c's train_gpt2.c):
//
//   batch   = planner.next_step()                        micro-batches of sample indices (this process's)
//   counts  = sum of Trainable::plan over the batch      loss tokens of the whole global batch
//   for mb: losses = forward_train_batch(mb); (ce_w * sum(ce) / N_ce + mse_w * sum(gen) / N_gen).backward()
//   grads   summed over the processes                    ddp: buckets during the last backward;
//                                                        fsdp: reduce-scattered to the shards
//   norm    = clip_grad_norm(grads, max_grad_norm); set lr; adamw.step(); grads to none
//
// The trainer never switches on the family: freezing keys, losses and the exported layout are
// the family's (model.h).
#pragma once
#include <string>

#include "omni/train/config.h"

namespace omni::train {

struct TrainResult {
  int64_t steps = 0;  // optimizer steps done in total (resumed ones included)
  double last_loss = 0;
  std::string last_checkpoint;  // "" when none was written
  bool lead = true;             // the process that reports (rank 0 of a multi-process run)
};

TrainResult run_training(const Config& cfg);

}  // namespace omni::train
