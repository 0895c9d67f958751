#!/usr/bin/env bash
# package-deb.sh: build herald's Debian package (cargo deb).
#
#   scripts/package-deb.sh [--output DIR] [--no-build] [--debug] [--fast]
#
# One release build (cargo build --release --locked), then `cargo deb
# --no-build`, so the package holds exactly the binaries that build made.
# What goes in, and where: [package.metadata.deb] in Cargo.toml; the
# maintainer scripts are in debian/. Installs cargo-deb (cargo install
# cargo-deb --locked) when it is missing.
#
#   --output DIR  where the .deb goes (default: target/debian)
#   --no-build    package the binaries already built, build nothing
#   --debug       package the dev-profile binaries (target/debug): for tests
#                 that already built them; not for production
#   --fast        faster compression, larger .deb
# The last line printed is the path of the .deb.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
target="${CARGO_TARGET_DIR:-$repo/target}"
output="$target/debian"
build=1
profile=release
extra=()

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
    --output) output="${2:?--output needs a directory}"; shift 2 ;;
    --no-build) build=0; shift ;;
    --debug) profile=dev; shift ;;
    --fast) extra+=(--fast); shift ;;
    -h | --help) usage ;;
    *) echo "package-deb.sh: unknown argument $1" >&2; usage ;;
  esac
done

if ! cargo deb --version >/dev/null 2>&1; then
  echo "== installing cargo-deb (cargo install cargo-deb --locked)" >&2
  cargo install cargo-deb --locked >&2
fi

dir=release
[ "$profile" = release ] || dir=debug
if [ "$build" = 1 ]; then
  echo "== cargo build --profile $profile --locked --bin herald --bin herald-bench" >&2
  cargo build --profile "$profile" --locked --bin herald --bin herald-bench >&2
fi
for b in herald herald-bench; do
  [ -x "$target/$dir/$b" ] || {
    echo "package-deb.sh: no $target/$dir/$b (build it, or drop --no-build)" >&2
    exit 1
  }
done

mkdir -p "$output"
# cargo deb takes the binaries from <target>/release. For --debug, a staging
# target dir holds copies of the dev-profile ones there (cargo-deb's own
# --profile dev is deprecated; copies, because cargo deb strips what it packs).
deb_target="$target"
if [ "$profile" = dev ]; then
  deb_target="$(mktemp -d)"
  trap 'rm -rf "$deb_target"' EXIT
  mkdir -p "$deb_target/release"
  cp "$target/debug/herald" "$target/debug/herald-bench" "$deb_target/release/"
  # Unstripped, they are 90 MB of debug info to compress.
  extra+=(--strip)
fi
# cargo deb prints the path of the .deb it wrote as its last line on stdout.
deb="$(CARGO_TARGET_DIR="$deb_target" cargo deb --no-build "${extra[@]}" --output "$output" | tail -n 1)"
[ -f "$deb" ] || {
  echo "package-deb.sh: cargo deb wrote no .deb (said: $deb)" >&2
  exit 1
}
echo "$deb"
