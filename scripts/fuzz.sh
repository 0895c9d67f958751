#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for a short budget each, from
# its committed seed corpus, with AddressSanitizer. Installs cargo-fuzz when
# missing; a stable toolchain is enough (RUSTC_BOOTSTRAP=1 unlocks the
# sanitizer flags). Exits non-zero on the first crash or failed check.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      # default 20
#
# New corpus entries a run finds go to a scratch copy, not the committed
# corpus: commit the interesting ones by hand (fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${1:-20}
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
export RUSTC_BOOTSTRAP=1
scratch=$(mktemp -d /tmp/herald-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^herald-fuzz$')
echo "== building fuzz targets: $(echo $targets)"
cargo fuzz build
for t in $targets; do
  mkdir -p "$scratch/$t"
  seeds=fuzz/corpus/$t
  [ -d "$seeds" ] || seeds=
  echo "== fuzz $t for ${SECONDS_PER_TARGET}s"
  cargo fuzz run "$t" "$scratch/$t" $seeds -- \
    -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=0 -close_fd_mask=3 2>"$scratch/$t.log" || {
    tail -40 "$scratch/$t.log" >&2
    echo "fuzz target $t failed" >&2
    exit 1
  }
  grep -E "^Done [0-9]+ runs" "$scratch/$t.log" | tail -1 | sed "s/^/   $t: /" || true
done
