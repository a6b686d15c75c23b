// ddp's gradient sum overlapping the backward (as PyTorch's DDP reducer): the parameters go in
// buckets of about `bucket_bytes`, in reverse order (roughly the order the backward finishes
// their gradients). During the step's last backward on this process (arm()), a hook after each
// parameter's gradient accumulation counts it done; a bucket whose parameters are all done is
// flattened and its all-reduce started while the backward goes on. Buckets start in bucket order
// on every process, so the collectives pair up whatever order the gradients finish in; finish()
// starts the rest (gradients the last backward did not reach, or every bucket on a process with no
// backward this step), waits, and writes the sums back.
#pragma once
#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <vector>

#include "omni/dist/autograd_node.h"

namespace omni::dist {

class ProcessGroup;

class GradBuckets {
 public:
  GradBuckets(ProcessGroup& group, const std::vector<at::Tensor>& params, int64_t bucket_bytes);
  ~GradBuckets();
  // Before this process's last backward of the step, with the loss it starts from: parameters
  // its graph does not reach are done at once (as DDP's find_unused_parameters), so their buckets
  // do not hold back the ones after them.
  void arm(const at::Tensor& loss = {});
  // Every gradient summed over the processes; a parameter no process computed one for has none
  // (AdamW leaves it alone, as one process would).
  void finish();
  size_t buckets() const { return buckets_.size(); }
  void ready(size_t param);  // the hook: param's gradient is final for this step

 private:
  struct Bucket {
    std::vector<size_t> params;
    at::Tensor flat;                // the gradients, summed in place (bf16 ones in fp32)
    std::vector<bool> had;          // which ones this process computed
    std::function<void()> wait;     // set once started
    size_t pending = 0;
  };
  void start(size_t b);

  ProcessGroup& group_;
  std::vector<at::Tensor> params_;
  std::vector<NodePtr> accumulators_;  // keep the hooks alive
  std::vector<size_t> bucket_of_;
  std::vector<Bucket> buckets_;
  size_t next_ = 0;  // the next bucket to start
  bool armed_ = false;
};

}  // namespace omni::dist
