#!/usr/bin/env bash
# omni launch + multi-process training on torch c10d (Gloo over loopback): 2 processes train what
# 1 process trains on the same global batch (fsdp and ddp: per-step losses and final weights
# identical), for Janus, BAGEL and SenseNova-U1; sharded checkpoints resume at another process
# count; a killed rank stops the launch with a clear line instead of a hang; a port in use, an
# unreachable master and bad launch flags give one error line.
# usage: launch.sh OMNI_BIN FIXTURES_DIR SOURCE_DIR
set -euo pipefail
omni=$1 fixtures=$2 src=$3
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; pkill -9 -P "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
source "$(dirname "$0")/lib/common.sh"
col() { grep -o "\"$2\":[^,]*" "$1" | cut -d: -f2; }
# close A B: the two columns of numbers agree within 1e-9 relative (sums taken in another order)
close() { paste <(echo "$1") <(echo "$2") | awk '{ d = $1 - $2; if (d < 0) d = -d; m = $1 < 0 ? -$1 : $1;
  if (NF != 2 || d > 1e-9 * (m + 1e-30)) bad = 1 } END { exit bad }'; }
cd "$src"
# A port per run from this script's PID, so parallel ctest jobs do not collide.
port=$((20000 + ($$ % 20000)))

# 1. 1 process vs 2 processes on the same global batch (2 micro-batches of 1 sample per step).
same_as_one() {  # same_as_one NAME CONFIG ARGS...: 5 steps each way
  local name=$1 cfg=$2; shift 2
  local args=("$cfg" --train.max_steps 5 --train.micro_batch_size 1 --train.global_batch_size 2 --train.save_steps 0
              --train.save_hf_weights true --train.warmup_steps 0 "$@")
  "$omni" --log warn train "${args[@]}" --train.output_dir "$tmp/$name.1" > /dev/null
  port=$((port + 1))
  "$omni" --log warn launch --nproc_per_node 2 --master_port $port -- omni train "${args[@]}" \
    --train.output_dir "$tmp/$name.2" > "$tmp/$name.log" || fail "$name: launch failed"
  grep -q "trained 5 steps" "$tmp/$name.log" || fail "$name: one summary line from rank 0: $(cat "$tmp/$name.log")"
  [ "$(grep -c trained "$tmp/$name.log")" -eq 1 ] || fail "$name: only rank 0 reports"
  close "$(col "$tmp/$name.1/metrics.jsonl" grad_norm)" "$(col "$tmp/$name.2/metrics.jsonl" grad_norm)" ||
    fail "$name: grad_norm differs between 1 and 2 processes"
  for c in loss ce_loss gen_loss tokens; do
    [ "$(col "$tmp/$name.1/metrics.jsonl" $c)" = "$(col "$tmp/$name.2/metrics.jsonl" $c)" ] ||
      fail "$name: $c differs between 1 and 2 processes: $(col "$tmp/$name.1/metrics.jsonl" $c | tr '\n' ' ') vs $(col "$tmp/$name.2/metrics.jsonl" $c | tr '\n' ' ')"
  done
  local w=checkpoints/global_step_5
  if [ "$mode" = fsdp ]; then
    [ -f "$tmp/$name.2/$w/model.shard-1-of-2.safetensors" ] || fail "$name: no sharded checkpoint: $(ls "$tmp/$name.2/$w")"
  else
    cmp -s "$tmp/$name.1/$w/model.safetensors" "$tmp/$name.2/$w/model.safetensors" || fail "$name: final checkpoints differ"
  fi
  # the exported model folder (gathered from the shards under fsdp) holds the same weights
  for f in "$tmp/$name.1/$w"/hf_ckpt/*.safetensors; do
    cmp -s "$f" "$tmp/$name.2/$w/hf_ckpt/$(basename "$f")" || fail "$name: final $(basename "$f") differs between 1 and 2 processes"
  done
}
mode=fsdp  # the default
same_as_one janus examples/train/janus_tiny.yaml
same_as_one bagel examples/train/bagel_tiny.yaml
same_as_one u1 examples/train/u1_tiny.yaml --data.cfg_txt_uncond_drop_prob 0.5
# the understanding rows detached (their loss reaches no decoder layer: every layer's backward
# still runs on every process) and a frozen ViT
same_as_one bagel_freeze examples/train/bagel_tiny.yaml --train.freeze_und true --train.freeze_vit true
mode=ddp
# 10 kB buckets: many all-reduces started during the backward, in bucket order on both processes
same_as_one janus_ddp examples/train/janus_tiny.yaml --train.data_parallel_mode ddp --train.ddp_bucket_mb 0.01
same_as_one bagel_ddp examples/train/bagel_tiny.yaml --train.data_parallel_mode ddp

# 1b. Checkpoints are world-size free: 3 steps on 2 processes, then 3 more resumed on 1 process,
# log what 6 steps on 1 process log (the data order and every draw depend on the step, not the rank).
args=(examples/train/janus_tiny.yaml --train.micro_batch_size 1 --train.global_batch_size 2 --train.save_hf_weights false
      --train.lr_scheduler constant --train.warmup_steps 0 --train.save_steps 3)
"$omni" --log warn train "${args[@]}" --train.max_steps 6 --train.output_dir "$tmp/straight" > /dev/null
port=$((port + 1))
"$omni" --log warn launch --nproc_per_node 2 --master_port $port -- omni train "${args[@]}" --train.max_steps 3 \
  --train.output_dir "$tmp/split" > /dev/null || fail "resume: first half on 2 processes"
"$omni" --log warn train "${args[@]}" --train.max_steps 6 --train.load_path auto --train.output_dir "$tmp/split" > /dev/null
[ "$(col "$tmp/straight/metrics.jsonl" loss)" = "$(col "$tmp/split/metrics.jsonl" loss)" ] ||
  fail "resume across world sizes: $(col "$tmp/straight/metrics.jsonl" loss | tr '\n' ' ') vs $(col "$tmp/split/metrics.jsonl" loss | tr '\n' ' ')"
cmp -s "$tmp/straight/checkpoints/global_step_6/model.safetensors" "$tmp/split/checkpoints/global_step_6/model.safetensors" ||
  fail "resume across world sizes: final weights differ"
# ... and the other way: 3 steps on 1 process, 3 more sharded over 3 processes (a global batch of 2
# on 3 processes: one of them runs null passes), the same losses.
"$omni" --log warn train "${args[@]}" --train.max_steps 3 --train.output_dir "$tmp/split3" > /dev/null
port=$((port + 1))
"$omni" --log warn launch --nproc_per_node 3 --master_port $port -- omni train "${args[@]}" --train.max_steps 6 \
  --train.load_path auto --train.output_dir "$tmp/split3" > /dev/null || fail "resume: second half on 3 processes"
[ -f "$tmp/split3/checkpoints/global_step_6/model.shard-2-of-3.safetensors" ] || fail "resume on 3: no sharded checkpoint"
[ "$(col "$tmp/straight/metrics.jsonl" loss)" = "$(col "$tmp/split3/metrics.jsonl" loss)" ] ||
  fail "resume 1 -> 3 processes: $(col "$tmp/straight/metrics.jsonl" loss | tr '\n' ' ') vs $(col "$tmp/split3/metrics.jsonl" loss | tr '\n' ' ')"

# 2. A rank killed mid-run: the launch stops every rank and fails with a line naming it, well
# within the collective timeout (no hang).
port=$((port + 1))
"$omni" --log warn launch --nproc_per_node 2 --master_port $port -- omni train examples/train/janus_tiny.yaml \
  --train.max_steps 100000 --train.save_steps 0 --train.save_hf_weights false --train.dist_timeout_s 60 \
  --train.output_dir "$tmp/kill" > /dev/null 2> "$tmp/kill.err" &
launcher=$!; pids+=($launcher)
for _ in $(seq 1 600); do [ -s "$tmp/kill/metrics.jsonl" ] && break; sleep 0.1; done
[ -s "$tmp/kill/metrics.jsonl" ] || fail "kill: training never started: $(cat "$tmp/kill.err")"
victim=$(pgrep -P $launcher | tail -1)
kill -9 "$victim"
start=$SECONDS
set +e; wait $launcher; rc=$?; set -e
[ $rc -ne 0 ] || fail "kill: the launch succeeded"
[ $((SECONDS - start)) -lt 30 ] || fail "kill: took $((SECONDS - start)) s to stop"
grep -q "^error: launch: rank [01] " "$tmp/kill.err" || fail "kill: no launch error line: $(tail -3 "$tmp/kill.err")"
pgrep -P $launcher > /dev/null && fail "kill: ranks left running"

# 3. A port in use: a second run on the same rendezvous port fails with one clear line.
port=$((port + 1))
WORLD_SIZE=2 RANK=0 MASTER_PORT=$port "$omni" --log warn train examples/train/janus_tiny.yaml \
  --train.output_dir "$tmp/holder" > /dev/null 2>&1 &
holder=$!; pids+=($holder); disown $holder
sleep 1
set +e
err=$(WORLD_SIZE=2 RANK=0 MASTER_PORT=$port "$omni" --log warn train examples/train/janus_tiny.yaml \
  --train.output_dir "$tmp/second" --train.dist_timeout_s 5 2>&1 >/dev/null); rc=$?
set -e
[ $rc -ne 0 ] && [ $rc -lt 128 ] || fail "port in use: rc $rc"
grep -q "^error: rendezvous at 127.0.0.1:$port" <<<"$err" || fail "port in use: $err"
[ "$(wc -l <<<"$err")" -eq 1 ] || fail "port in use: more than one line: $err"
kill -9 $holder 2>/dev/null || true

# 3b. An unreachable master (nobody listening there; a name that does not resolve): one line
# within train.dist_timeout_s.
for addr in 127.0.0.1 no-such-host.invalid; do
  port=$((port + 1))
  set +e
  err=$(WORLD_SIZE=2 RANK=1 MASTER_ADDR=$addr MASTER_PORT=$port "$omni" --log warn train examples/train/janus_tiny.yaml \
    --train.output_dir "$tmp/unreachable" --train.dist_timeout_s 3 2>&1 >/dev/null); rc=$?
  set -e
  [ $rc -ne 0 ] && [ $rc -lt 128 ] || fail "unreachable master $addr: rc $rc"
  grep -q "^error: rendezvous at $addr:$port: .*(is the master reachable?)$" <<<"$err" || fail "unreachable master $addr: $err"
  [ "$(wc -l <<<"$err")" -eq 1 ] || fail "unreachable master $addr: more than one line: $err"
done

# 4. Bad launch input.
# a bad config every rank reads: one line from the launch (the ranks' own error lines are held back)
expect_error "launch: rank [01] exited with code 1: $tmp/none.yaml: cannot read the config file" \
  "$omni" launch --nproc_per_node 2 -- omni train "$tmp/none.yaml"
expect_error "launch: rank [01] exited with code 1: --train.lr: expected a number, got 'fast'" \
  "$omni" launch --nproc_per_node 2 -- omni train examples/train/janus_tiny.yaml --train.lr fast
expect_error "nproc_per_node" "$omni" launch --nproc_per_node 0 -- omni train x.yaml
expect_error "node_rank" "$omni" launch --nproc_per_node 1 --nnodes 1 --node_rank 1 -- omni train x.yaml
expect_error "WORLD_SIZE" env WORLD_SIZE=two "$omni" train examples/train/janus_tiny.yaml --train.output_dir "$tmp/bad"
expect_error "RANK" env WORLD_SIZE=2 RANK=5 "$omni" train examples/train/janus_tiny.yaml --train.output_dir "$tmp/bad"
expect_error "at most 256 processes on one machine" "$omni" launch --nproc_per_node 100000 -- omni train x.yaml

# 5. A launcher killed outright (SIGKILL: no handler runs) takes its ranks with it.
"$omni" --log warn launch --nproc_per_node 2 --master_port $((port + 7)) -- sleep 60 &
lpid=$!
kids=""
for _ in $(seq 50); do
  kids=$(cat /proc/$lpid/task/$lpid/children 2>/dev/null || true)
  [ "$(wc -w <<<"$kids")" -eq 2 ] && break
  sleep 0.1
done
[ "$(wc -w <<<"$kids")" -eq 2 ] || fail "launch did not start 2 ranks: '$kids'"
kill -9 $lpid
wait $lpid 2>/dev/null || true
for _ in $(seq 50); do
  alive=0
  for k in $kids; do kill -0 "$k" 2>/dev/null && alive=1; done
  [ $alive -eq 0 ] && break
  sleep 0.1
done
[ $alive -eq 0 ] || { kill $kids 2>/dev/null; fail "ranks $kids outlived their killed launcher"; }
echo "launch: all checks passed"
