#!/usr/bin/env bash
# One GPU check of zoo (issue 26): on a CUDA machine, in one go (about 8 minutes on one H100),
#   1. every GPU-only test: the compiled Triton kernels (tests/test_ops_gpu.py, tests/ops in compiled mode) and the
#      forward + backward of the entries whose backward needs CUDA (spconv: ssda3d-voxel, the CMT voxel entries);
#   2. the kernel benchmarks: each zoo.ops kernel vs its PyTorch reference at the sizes the methods use, with the
#      CUDA allocator's peak memory (zoo bench --op NAME), and zoo's voxelize vs spconv's on the GPU;
#   3. one bf16-mixed training step of each paper-size registry entry (zoo bench NAME --train --precision bf16-mixed);
# and prints one table (step, status, seconds, detail). Each step has its own time limit; a failure is a row, not
# the end of the run. Exit status: 0 when every step passed, 1 otherwise.
#
#   scripts/gpu_check.sh            # runs the check (without CUDA: prints the plan, exits 0, as --dry-run)
#   scripts/gpu_check.sh --dry-run  # prints what it would run and exits 0
#   make gpu-check
#
# Environment: PYTHON (default .venv/bin/python, else python3), GPU_CHECK_OUT (default runs/gpu_check: logs + JSON),
# GPU_CHECK_ENTRIES (space-separated registry names, run as one group; default every entry of `zoo list`,
# one group per LightningModule class). Steps not started within 460 s are reported as SKIPPED.
set -u -o pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
OUT="${GPU_CHECK_OUT:-runs/gpu_check}"
DRY=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$arg' (use --dry-run or nothing)" >&2; exit 2 ;;
  esac
done

if [ "$DRY" = 0 ] && ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null
then
  echo "gpu_check: no CUDA device here: dry run (what a CUDA machine would run)"
  DRY=1
fi

GPU_TESTS=(tests/test_ops_gpu.py tests/ops
           "tests/test_models.py -k tiny_forward_backward and (ssda3d-voxel or cmt-lidar or cmt-voxel)")
KERNEL_OPS=(relation_kl graph_propagate fused_linear_cross_entropy)
# the entries, one line per LightningModule class (one process each: Lightning is imported once per group)
if [ -n "${GPU_CHECK_ENTRIES:-}" ]; then
  GROUPS_=("$GPU_CHECK_ENTRIES")
else
  mapfile -t GROUPS_ < <("$PYTHON" -c "
from zoo import registry
groups = {}
for e in registry.all_entries():
    groups.setdefault(e.module, []).append(e.name)
print('\n'.join(' '.join(names) for names in groups.values()))" 2>/dev/null)
  [ "${#GROUPS_[@]}" -gt 0 ] || GROUPS_=("<the-entries-of-each-LightningModule-class>")  # zoo not importable here
fi
BUDGET_S=460  # steps not started by then are reported as skipped: the whole check stays under 8 minutes

ROWS=()
FAILED=0
# run LABEL LIMIT_S COMMAND...: one row of the table
run() {
  local label="$1" limit="$2"
  shift 2
  if [ "$DRY" = 1 ]; then
    printf 'would run (limit %4ss): %s\n' "$limit" "$*"
    return 0
  fi
  local log="$OUT/$(echo "$label" | tr -c 'A-Za-z0-9_.-' '_' | cut -c1-120).log"
  local t0=$SECONDS status detail
  if [ "$SECONDS" -ge "$BUDGET_S" ]; then
    ROWS+=("$(printf '%-46s %-9s %6ss  %s' "${label:0:46}" "SKIPPED" 0 "the 8-minute budget was spent")")
    FAILED=1
    return 0
  fi
  [ $((SECONDS + limit)) -le $((BUDGET_S + 20)) ] || limit=$((BUDGET_S + 20 - SECONDS))
  if timeout "$limit" "$@" >"$log" 2>&1; then status=ok; else
    local rc=$?
    status=$([ "$rc" = 124 ] && echo "TIMEOUT" || echo "FAIL($rc)")
    FAILED=1
  fi
  detail=$(grep -E "passed|failed|error|Error| ms |samples/s" "$log" | tail -n 1 | cut -c1-90)
  ROWS+=("$(printf '%-46s %-9s %6ss  %s' "${label:0:46}" "$status" "$((SECONDS - t0))" "$detail")")
  printf '%s\n' "${ROWS[-1]}"
}

[ "$DRY" = 1 ] || mkdir -p "$OUT"
[ "$DRY" = 1 ] || "$PYTHON" -m zoo.cli env > "$OUT/env.txt" 2>&1 || true

# 1. GPU-only tests
for t in "${GPU_TESTS[@]}"; do
  if [[ "$t" == *" -k "* ]]; then
    run "tests: ${t%% -k *} (CUDA backward)" 240 "$PYTHON" -m pytest -q -x -p no:cacheprovider "${t%% -k *}" \
      -k "${t#* -k }"
  else
    run "tests: $t" 150 "$PYTHON" -m pytest -q -p no:cacheprovider "$t"
  fi
done
# 2. kernel vs reference at the methods' sizes, with memory
for op in "${KERNEL_OPS[@]}"; do
  run "kernel bench: $op" 120 "$PYTHON" -m zoo.cli bench --op "$op" --device cuda
done
# voxelize on the GPU (the same function as on the CPU) vs spconv's PointToVoxel on the GPU, real frames
run "voxelize vs spconv (cuda)" 120 "$PYTHON" -m zoo.cli bench --op voxelize --device cuda
# 3. one bf16 training step per paper-size entry (one warm-up step, one timed), the entries of a class together
for group in "${GROUPS_[@]}"; do
  read -r -a names <<< "$group"
  run "bf16 train: ${names[*]}" 120 "$PYTHON" -m zoo.cli bench "${names[@]}" --train --device cuda \
    --precision bf16-mixed --steps 1 --warmup 1 --json "$OUT/train_${names[0]//[^A-Za-z0-9_.-]/_}.json"
done

if [ "$DRY" = 1 ]; then
  echo "dry run: nothing was run"
  exit 0
fi
echo
echo "=================================================================================== zoo GPU check"
"$PYTHON" -c "import torch; print(torch.cuda.get_device_name(0), '| torch', torch.__version__)" 2>/dev/null || true
printf '%-46s %-9s %7s  %s\n' "step" "status" "seconds" "detail (last line of the log in $OUT)"
printf '%s\n' "${ROWS[@]}"
exit "$FAILED"
