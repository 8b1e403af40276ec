#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) on its corpus under fuzz/corpus/, and
# prints each run's executions. Needs the nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz`). New inputs that reach new code are added to the corpus; a crash
# is left in fuzz/artifacts/<target>/ (copy it into the corpus once fixed: tests/fuzz_corpus.rs
# then replays it on stable).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-60}
targets=(idx checkpoint arch image autotune_cache search_space)
cargo +nightly fuzz build -O
for t in "${targets[@]}"; do
  log=$(mktemp)
  if ! cargo +nightly fuzz run -O "$t" "corpus/$t" -- -max_total_time="$seconds" \
      -rss_limit_mb=2048 -max_len=262144 >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz: $t FAILED (see fuzz/artifacts/$t/)"
    exit 1
  fi
  runs=$(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log" | tail -1)
  echo "fuzz: $t: ${runs:-no summary}; corpus $(ls "corpus/$t" | wc -l) inputs"
  rm -f "$log"
done
