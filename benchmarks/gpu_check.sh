#!/usr/bin/env bash
# The GPU checks in one script, for a machine with a CUDA GPU (none of this runs in CI, which has no GPU):
#
#   1. every gpu-marked test: CUDA training and resume, mixed precision, evaluate on CUDA against the CPU,
#      a one-rank NCCL group (the command of `tox -e gpu`);
#   2. when torch sees two or more GPUs, a real two-GPU run: torchrun, NCCL, `segkit run` on synthetic
#      data, then `segkit evaluate` of its best checkpoint in one process; its log ends with the run's
#      metrics.csv, whose pooled validation figures for that epoch should equal evaluate's (the slow
#      tests assert this for 2 and 3 CPU processes under gloo);
#   3. the model speed benchmarks on CUDA (the command of `tox -e bench`, model speed only): the fast
#      path trains and infers under bf16 autocast there, as `segkit run` does.
#
# It writes OUT/summary.md: one table, a row per check (what ran, the result, seconds), and each check's
# full log beside it. Usage, from anywhere:
#
#   benchmarks/gpu_check.sh [OUT]            # OUT defaults to gpu-check/
#   USE_TOX=1 benchmarks/gpu_check.sh        # through tox's gpu and bench envs (they install from PyPI)
#   PYTHON=/path/to/python benchmarks/gpu_check.sh   # an interpreter that already has segkit installed
#
# Without tox (the default) the same pytest commands run with $PYTHON, for machines that cannot reach a
# package registry. Exit status: 0 when every check that ran passed, 1 otherwise; no GPU is exit 2.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu-check}
PYTHON=${PYTHON:-python3}
BENCH_ARGS=${BENCH_ARGS:---bench-rounds 3}
mkdir -p "$OUT"
summary="$OUT/summary.md"
failed=0

gpus=$("$PYTHON" -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)') || {
  echo "gpu_check: $PYTHON cannot import torch" >&2; exit 2; }
if [ "$gpus" -lt 1 ]; then
  echo "gpu_check: torch sees no CUDA GPU here; nothing to check" >&2
  exit 2
fi
device=$("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name(0), "-", torch.__version__)')
{
  echo "# segkit GPU checks"
  echo
  echo "$gpus GPU(s): $device; commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); $(date -u +%FT%TZ)"
  echo
  echo "| check | command | result | seconds |"
  echo "| --- | --- | --- | --- |"
} >"$summary"

# check NAME LOG COMMAND...: runs COMMAND, its output to OUT/LOG, and adds its row to the table. The result
# column is pytest's closing line when there is one, else the exit status.
check() {
  local name=$1 log=$2
  shift 2
  local started=$SECONDS status result
  echo "gpu_check: $name: $*"
  "$@" >"$OUT/$log" 2>&1
  status=$?
  result=$(grep -E '^=+ .*(passed|failed|error|skipped).* in [0-9.]+s' "$OUT/$log" | tail -1 | sed 's/=//g; s/^ *//; s/ *$//')
  [ -n "$result" ] || result="exit $status"
  [ "$status" -eq 0 ] || { failed=1; result="FAILED ($result)"; }
  echo "| $name | \`$*\` | $result | $((SECONDS - started)) |" >>"$summary"
}

if [ "${USE_TOX:-0}" = 1 ]; then
  check "gpu-marked tests" gpu-tests.log tox -e gpu -- -p no:cacheprovider
else
  check "gpu-marked tests" gpu-tests.log "$PYTHON" -m pytest -m gpu -p no:cacheprovider -ra
fi

if [ "$gpus" -ge 2 ]; then
  run_dir="$OUT/torchrun"
  rm -rf "$run_dir"
  check "torchrun, 2 GPUs (NCCL): train" torchrun.log "$PYTHON" -m torch.distributed.run --standalone \
    --nproc_per_node=2 -m segkit run --dataset synthetic --model unet --model-option base_channels=16 \
    --image-size 64 --epochs 2 --batch-size 8 --device cuda --workers 0 --quiet --out "$run_dir"
  # The run's pooled validation figures (records of rank 0) against one process evaluating the checkpoint.
  best=$(find "$run_dir" -name best.pt | head -1)
  if [ -n "$best" ]; then
    check "torchrun, 2 GPUs: one-process evaluate of best.pt" torchrun-evaluate.log \
      "$PYTHON" -m segkit evaluate "$best" --split valid --device cuda:0
    { echo; echo "The run's records ($(dirname "$best")/metrics.csv):"; cat "$(dirname "$best")/metrics.csv"; } \
      >>"$OUT/torchrun-evaluate.log" 2>&1
  else
    echo "| torchrun, 2 GPUs: one-process evaluate of best.pt | - | FAILED (no best.pt under $run_dir) | 0 |" >>"$summary"
    failed=1
  fi
else
  echo "| torchrun, 2 GPUs | - | not run: torch sees $gpus GPU | 0 |" >>"$summary"
fi

# shellcheck disable=SC2086  # BENCH_ARGS is a list of options
if [ "${USE_TOX:-0}" = 1 ]; then
  check "model speed, CUDA, bf16 fast path" bench.log tox -e bench -- benchmarks/test_model_speed.py \
    --bench-device cuda --benchmark-json "$PWD/$OUT/bench.json" $BENCH_ARGS
else
  check "model speed, CUDA, bf16 fast path" bench.log "$PYTHON" -m pytest benchmarks/test_model_speed.py -p no:randomly \
    -p no:cacheprovider --bench-device cuda --benchmark-json "$OUT/bench.json" $BENCH_ARGS
fi
# The benchmark's own table (a row per model and mode) is the part of its log after its heading.
awk '/segkit speed/{found=1} found' "$OUT/bench.log" >"$OUT/bench-table.txt" 2>/dev/null || true

echo >>"$summary"
echo "Logs: $(cd "$OUT" && ls ./*.log | tr '\n' ' ')" >>"$summary"
cat "$summary"
exit "$failed"
