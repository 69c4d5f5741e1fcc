#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 120), one after the other, on the corpora
# in fuzz/corpus/. Crashes land in fuzz/artifacts/TARGET/.
#   bash fuzz/run.sh 300
set -euo pipefail
cd "$(dirname "$0")"
SECS=${1:-120}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
BIN=target/$(rustc -vV | sed -n 's/host: //p')/release
for t in verify_request json_pointer template profile_yaml config_yaml; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "== $t, ${SECS}s"
  "$BIN/$t" -max_total_time="$SECS" -rss_limit_mb=2048 -artifact_prefix="artifacts/$t/" "corpus/$t" 2>&1 | tail -3
done
