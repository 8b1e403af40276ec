#!/usr/bin/env bash
# Measures a real GPU in one go, for the tables in docs/performance.md: adapters, the first
# tuning at batch 128 (cold on a fresh machine: it compiles every variant, one thread per core),
# the GPU-vs-CPU cross-checks, bench at batch 128 and 32 (JSON), a profile with a Chrome trace, and a full
# 5-epoch training run of the seed model. Each step is time-limited so the whole report fits a
# short lease; a failing step is logged and the report goes on.
#   usage: scripts/gpu-report.sh OUT_DIR [BINARY] [CHECK_FILTER]
#   BINARY: target/release/mnist-wgpu; CHECK_FILTER: run only the cross-checks whose kernel name
#   contains it (all of them by default).
set -uo pipefail
out=${1:?usage: scripts/gpu-report.sh OUT_DIR [BINARY] [CHECK_FILTER]}
bin=${2:-target/release/mnist-wgpu}
check_filter=${3:-}
mkdir -p "$out"
status=0

step() { # step NAME SECONDS ARGS...: runs the binary, output to report.log and the terminal
  local name=$1 limit=$2
  shift 2
  echo "== $name: $*" | tee -a "$out/report.log"
  local start=$SECONDS
  timeout "$limit" "$bin" "$@" 2>&1 | tee -a "$out/report.log"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$out/report.log"
  [ "$rc" = 0 ] || status=1
}

step info 30 info
step cold-kernels 90 info --kernels --batch-size 128
step check 150 check --only "$check_filter"
step bench128 90 bench --backend gpu --batch-size 128 --seconds 5 --json "$out/bench128.json"
step bench32 60 bench --backend gpu --batch-size 32 --seconds 5 --json "$out/bench32.json"
step profile128 40 profile --batch-size 128 --steps 20 --trace "$out/trace128.json"
step profile32 40 profile --batch-size 32 --steps 20
step train 150 train --backend gpu --epochs 5 --batch-size 32 --metrics-json "$out/train.json"
exit $status
