#!/usr/bin/env bash
# Fuzzes every target for SECONDS each (default 120), one after the other. A target starts
# from its tracked seeds (fuzz/seeds/TARGET, read only) and grows its local corpus
# (fuzz/corpus/TARGET, ignored by git, kept between runs); crashes land in
# fuzz/artifacts/TARGET/.
#   bash fuzz/run.sh 300     fuzz every target for 300 s
#   bash fuzz/run.sh cmin    fold the local corpus into the seeds, minimised by coverage
#                            (cargo fuzz cmin); then review and commit fuzz/seeds
set -euo pipefail
cd "$(dirname "$0")"
TARGETS="verify_request certificate_request json_pointer template profile_yaml config_yaml form"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz
export RUSTC_BOOTSTRAP=1
if [ "${1:-}" = cmin ]; then
  for t in $TARGETS; do
    mkdir -p "corpus/$t" "seeds/$t"
    find "corpus/$t" -maxdepth 1 -type f -exec cp -n {} "seeds/$t/" +
    echo "== $t: $(ls "seeds/$t" | wc -l) inputs"
    cargo fuzz cmin -O "$t" "seeds/$t" 2>&1 | tail -1
    echo "   $(ls "seeds/$t" | wc -l) seeds"
  done
  exit 0
fi
SECS=${1:-120}
cargo fuzz build -O
BIN=target/$(rustc -vV | sed -n 's/host: //p')/release
for t in $TARGETS; do
  mkdir -p "corpus/$t" "seeds/$t" "artifacts/$t"
  echo "== $t, ${SECS}s"
  "$BIN/$t" -max_total_time="$SECS" -rss_limit_mb=2048 -artifact_prefix="artifacts/$t/" \
    "corpus/$t" "seeds/$t" 2>&1 | tail -3
done
