#!/usr/bin/env bash
# test-ops.sh: tests of the bare-metal kit (issue #5): sysctl profiles,
# systemd units, tune.sh, install.sh, nginx example, herald doctor.
#
# Safe as root on a CI box: tune.sh is exercised against a copy of the sysctl
# tree; the one real knob touched (net.core.somaxconn, raised by 1) is put
# back by tune.sh revert and again by the EXIT trap. Installs systemd (for
# systemd-analyze) from Debian packages when missing and running as root.
#
# Last line: "ops: N passed, M failed"; exit status non-zero on any failure.
# Checks run as `bash -c '...' _ args`: the single quotes are deliberate.
# shellcheck disable=SC2016
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

passed=0
failed=0
pass() {
  passed=$((passed + 1))
  echo "ok    $1"
}
fail() {
  failed=$((failed + 1))
  echo "FAIL  $1" >&2
}
quiet() { "$@" >/dev/null 2>&1; }
# check NAME CMD...: passes when CMD exits 0.
check() {
  local name="$1"
  shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}

tmp="$(mktemp -d)"
somaxconn_saved=""
deb_installed=0
cleanup() {
  if [ "$deb_installed" = 1 ]; then
    dpkg -P herald >/dev/null 2>&1 || true
  fi
  if [ -n "$somaxconn_saved" ]; then
    sysctl -q -w "net.core.somaxconn=$somaxconn_saved" >/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

profiles=(sysctl.d/60-herald-c100k.conf sysctl.d/60-herald-c1m.conf sysctl.d/60-herald-c10m.conf)
tune="$repo/scripts/tune.sh"

# The herald binary: built by `cargo test` before this script in test.sh.
target="${CARGO_TARGET_DIR:-$repo/target}"
herald="$target/debug/herald"
if [ ! -x "$herald" ] || [ ! -x "$target/debug/herald-bench" ]; then
  cargo build --quiet --bin herald --bin herald-bench
fi

# Normalised contents of a sysctl file ("a<TAB>b" and "a b" are equal).
norm() { tr -s '[:space:]' ' ' <"$1" | sed 's/^ //; s/ $//'; }

echo "== sysctl profiles"
for p in "${profiles[@]}"; do
  keys_ok=1
  optional_seen=0
  while IFS= read -r line; do
    optional=0
    if [ "${line:0:1}" = "-" ]; then optional=1; line="${line:1}"; fi
    key="${line%%=*}"
    key="${key// /}"
    if sysctl -n "$key" >/dev/null 2>&1; then
      continue
    fi
    # Optional keys belong to a module (nf_conntrack) that may be absent.
    parent="/proc/sys/$(dirname "${key//.//}")"
    if [ "$optional" = 1 ] && [ ! -d "$parent" ]; then
      optional_seen=1
      continue
    fi
    echo "  $p: $key does not exist on this kernel" >&2
    keys_ok=0
  done < <(grep -Ev '^[[:space:]]*(#|;|$)' "$p")
  check "$p: every key exists on this kernel (sysctl -n)" [ "$keys_ok" = 1 ]
  [ "$optional_seen" = 0 ] || echo "  (optional keys skipped: their module is not loaded)"

  # Every setting has its own comment on the line above it.
  uncommented="$(awk '!/^[[:space:]]*(#|$)/ && prev !~ /^#/ {print FILENAME": "$0} {prev=$0}' "$p")"
  check "$p: every setting has a comment line above it" [ -z "$uncommented" ]
done

echo "== systemd units"
if ! command -v systemd-analyze >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  echo "  installing systemd for systemd-analyze"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi
if command -v systemd-analyze >/dev/null 2>&1; then
  # A root that holds the units as install.sh lays them out, the binary, and
  # the distribution's own units (targets the unit refers to).
  vroot="$tmp/vroot"
  mkdir -p "$vroot/usr/lib/systemd" "$vroot/etc/herald"
  cp -a /lib/systemd/system "$vroot/usr/lib/systemd/"
  bash scripts/install.sh --prefix "$vroot" --binary "$herald" --profile none >/dev/null ||
    fail "install.sh into the verify root"
  printf 'LISTEN_ADDR=0.0.0.0:8081\nADMIN_ADDR=127.0.0.1:9091\n' >"$vroot/etc/herald/a.env"
  # ExecReload= runs /bin/kill (procps, a dependency of the package).
  mkdir -p "$vroot/bin" && cp /bin/kill "$vroot/bin/"
  verify() {
    local out
    # systemd-analyze exits 0 on many warnings: any output is a failure.
    if out="$(systemd-analyze verify --man=no --root="$vroot" "$1" 2>&1)" && [ -z "$out" ]; then
      return 0
    fi
    printf '  %s\n' "$out" >&2
    return 1
  }
  check "systemd-analyze verify herald.service: clean" verify herald.service
  check "systemd-analyze verify herald@a.service: clean" verify herald@a.service
  # The same check on a broken copy must complain, or the two above prove nothing.
  sed -i 's/^Type=notify/Type=notifyy/' "$vroot/etc/systemd/system/herald.service"
  check "systemd-analyze verify flags a broken unit" bash -c \
    '[ -n "$(systemd-analyze verify --man=no --root="$1" herald.service 2>&1)" ]' _ "$vroot"
  for u in systemd/herald.service systemd/herald@.service; do
    check "$u: Type=notify, Restart=always, ExecReload, HERALD_ENV_FILE, LimitNOFILE, LimitMEMLOCK, hardening" bash -c '
      for d in Type=notify Restart=always "ExecReload=/bin/kill -HUP \$MAINPID" \
               Environment=HERALD_ENV_FILE= LimitNOFILE= LimitMEMLOCK= DynamicUser=yes \
               NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes; do
        grep -q "^$d" "$1" || { echo "  $1 lacks $d" >&2; exit 1; }
      done
      grep -qx "CapabilityBoundingSet=" "$1"' _ "$u"
  done
  check "herald.service reads /etc/herald/herald.env" grep -qx 'EnvironmentFile=/etc/herald/herald.env' systemd/herald.service
else
  fail "systemd-analyze not available (run as root to install it)"
fi

echo "== tune.sh"
# A copy of the real sysctl tree for the c1m profile's keys, with one value
# deliberately low.
froot="$tmp/sysroot"
while IFS= read -r key; do
  src="/proc/sys/${key//.//}"
  [ -r "$src" ] || continue
  mkdir -p "$(dirname "$froot/${key//.//}")"
  cat "$src" >"$froot/${key//.//}"
done < <(grep -Ev '^[[:space:]]*(#|$)' sysctl.d/60-herald-c1m.conf | sed 's/^-//; s/[[:space:]]*=.*//')
echo 128 >"$froot/net/core/somaxconn"
# A limit above the profile, which apply must not lower.
echo 99999999 >"$froot/fs/file-max"
cp -a "$froot" "$tmp/sysroot.orig"
state="$tmp/tune-saved.conf"
t() { bash "$tune" --root "$froot" --state "$state" "$@"; }

out="$(t check c1m 2>&1)" && rc=0 || rc=$?
check "check fails (exit 1) on a deliberately low value" [ "$rc" = 1 ]
check "check names the low knob as SHORT" grep -Eq '^net\.core\.somaxconn +128 +65535 +SHORT' <<<"$out"
check "check accepts a value above the profile" grep -Eq '^fs\.file-max +99999999 .* ok$' <<<"$out"

t apply c1m --dry-run >/dev/null || fail "apply --dry-run exits 0"
check "apply --dry-run changes nothing" diff -r "$tmp/sysroot.orig" "$froot"
check "apply --dry-run saves nothing" [ ! -e "$state" ]

check "apply succeeds" quiet t apply c1m
check "check passes after apply" quiet t check c1m
check "apply raised somaxconn to the profile" [ "$(cat "$froot/net/core/somaxconn")" = 65535 ]
check "apply left a higher file-max alone" [ "$(cat "$froot/fs/file-max")" = 99999999 ]
check "apply saved the previous somaxconn" grep -qx 'net.core.somaxconn = 128' "$state"
cp "$state" "$tmp/state.first"
out="$(t apply c1m)" || fail "second apply exits 0"
check "apply is idempotent: a second run changes nothing" grep -q 'nothing to change' <<<"$out"
check "a second apply keeps the first saved values" cmp -s "$state" "$tmp/state.first"

t revert --dry-run >/dev/null || fail "revert --dry-run exits 0"
check "revert --dry-run keeps the applied value" [ "$(cat "$froot/net/core/somaxconn")" = 65535 ]
check "revert succeeds" quiet t revert
same=1
while IFS= read -r f; do
  rel="${f#"$tmp/sysroot.orig/"}"
  [ "$(norm "$f")" = "$(norm "$froot/$rel")" ] || {
    echo "  $rel: $(norm "$froot/$rel") != $(norm "$f")" >&2
    same=0
  }
done < <(find "$tmp/sysroot.orig" -type f)
check "revert restores every original value" [ "$same" = 1 ]
check "revert removes the saved state" [ ! -e "$state" ]
check "check fails again after revert" bash -c '! bash "$1" --root "$2" check c1m >/dev/null 2>&1' _ "$tune" "$froot"
# apply never lowers a value. A tree whose knobs are above the c1m profile in
# some fields and below it in others (this is a stock Debian kernel's
# tcp_rmem/tcp_wmem max, tcp_tw_reuse=2, and a port range that starts lower
# but ends earlier): whatever apply proposes or writes, no field may go down
# and no range may shrink.
hroot="$tmp/highroot"
hi() {
  mkdir -p "$(dirname "$hroot/${1//.//}")"
  printf '%s\n' "$2" >"$hroot/${1//.//}"
}
hi fs.file-max 99999999
hi fs.nr_open 1048576
hi net.core.somaxconn 4096
hi net.ipv4.tcp_max_syn_backlog 999999
hi net.core.netdev_max_backlog 1000
hi net.ipv4.ip_local_port_range $'1024\t50000'
hi net.ipv4.tcp_mem $'2000000\t1000\t9000000'
hi net.ipv4.tcp_rmem $'4096\t131072\t33554432'
hi net.ipv4.tcp_wmem $'8192\t16384\t4194304'
hi net.ipv4.tcp_tw_reuse 2
cp -a "$hroot" "$tmp/highroot.orig"
hstate="$tmp/high-saved.conf"
# lowered KEY BEFORE AFTER: succeeds when AFTER gives anything up: a field
# below BEFORE's, a port range that no longer contains BEFORE's, or
# tcp_tw_reuse moved off a value that was on.
lowered() {
  local key="$1" i
  local -a b a
  read -r -a b <<<"$2"
  read -r -a a <<<"$3"
  [ "${#a[@]}" = "${#b[@]}" ] || return 0
  case "$key" in
    net.ipv4.ip_local_port_range) [ "${a[0]}" -gt "${b[0]}" ] || [ "${a[1]}" -lt "${b[1]}" ] ;;
    net.ipv4.tcp_tw_reuse) [ "${b[0]}" != 0 ] && [ "${a[0]}" != "${b[0]}" ] ;;
    *)
      for i in "${!b[@]}"; do [ "${a[$i]}" -lt "${b[$i]}" ] && return 0; done
      return 1
      ;;
  esac
}
check "lowered() itself flags a lower max, a narrower range and tw_reuse 2->1" bash -c "
  $(declare -f lowered)
  lowered net.ipv4.tcp_rmem '4096 131072 33554432' '4096 16384 4194304' &&
  lowered net.ipv4.ip_local_port_range '1024 50000' '10240 65535' &&
  lowered net.ipv4.tcp_tw_reuse 2 1 &&
  ! lowered net.ipv4.tcp_mem '1 2 3' '1 2 4' &&
  ! lowered net.ipv4.ip_local_port_range '32768 60999' '10240 65535'"
out="$(bash "$tune" --root "$hroot" --state "$hstate" apply c1m --dry-run 2>&1)" ||
  fail "apply --dry-run on the high tree exits 0"
proposals=0
lowers=()
while IFS= read -r line; do
  [[ "$line" =~ ^would\ set\ ([^ ]+)\ =\ (.*)\ \(now\ (.*)\)$ ]] || continue
  proposals=$((proposals + 1))
  key="${BASH_REMATCH[1]}"
  if lowered "$key" "${BASH_REMATCH[3]}" "${BASH_REMATCH[2]}"; then lowers+=("$line"); fi
done <<<"$out"
[ "${#lowers[@]}" = 0 ] || printf '  %s\n' "${lowers[@]}" >&2
check "apply --dry-run proposes raises on the high tree (somaxconn, nr_open, ...)" [ "$proposals" -ge 4 ]
check "apply --dry-run proposes no lowering (tcp_rmem/tcp_wmem max, tw_reuse, port range)" \
  [ "${#lowers[@]}" = 0 ]
check "apply --dry-run proposes the union of the port ranges" \
  grep -qx 'would set net.ipv4.ip_local_port_range = 1024 65535 (now 1024 50000)' <<<"$out"
check "apply --dry-run raises tcp_mem field by field, keeping higher fields" \
  grep -qx 'would set net.ipv4.tcp_mem = 2000000 1572864 9000000 (now 2000000 1000 9000000)' <<<"$out"
quiet bash "$tune" --root "$hroot" --state "$hstate" apply c1m || fail "apply on the high tree exits 0"
written_lower=0
while IFS= read -r f; do
  rel="${f#"$tmp/highroot.orig/"}"
  key="${rel//\//.}"
  if lowered "$key" "$(norm "$f")" "$(norm "$hroot/$rel")"; then
    echo "  apply lowered $key: $(norm "$f") -> $(norm "$hroot/$rel")" >&2
    written_lower=1
  fi
done < <(find "$tmp/highroot.orig" -type f)
check "apply writes no value lower than before" [ "$written_lower" = 0 ]
check "apply raised what was short (somaxconn)" [ "$(cat "$hroot/net/core/somaxconn")" = 65535 ]
check "check passes after apply on the high tree (it accepts what apply keeps)" \
  quiet bash "$tune" --root "$hroot" check c1m

check "unknown profile is a usage error (exit 2)" bash -c \
  'bash "$1" --root "$2" check c5m >/dev/null 2>&1; [ $? = 2 ]' _ "$tune" "$froot"

# Against the real /proc/sys, on a knob that is safe to nudge: somaxconn + 1.
if [ "$(id -u)" -eq 0 ] && [ -w /proc/sys/net/core/somaxconn ]; then
  somaxconn_saved="$(sysctl -n net.core.somaxconn)"
  want=$((somaxconn_saved + 1))
  printf '# test\nnet.core.somaxconn = %s\n' "$want" >"$tmp/one.conf"
  rstate="$tmp/real-saved.conf"
  check "real /proc/sys: check fails below the profile" bash -c \
    '! bash "$1" --state "$2" check "$3" >/dev/null 2>&1' _ "$tune" "$rstate" "$tmp/one.conf"
  bash "$tune" --state "$rstate" apply "$tmp/one.conf" >/dev/null || true
  check "real /proc/sys: apply sets the knob" [ "$(sysctl -n net.core.somaxconn)" = "$want" ]
  bash "$tune" --state "$rstate" revert >/dev/null || true
  check "real /proc/sys: revert restores it" [ "$(sysctl -n net.core.somaxconn)" = "$somaxconn_saved" ]
  somaxconn_saved=""
else
  echo "  (not root: real /proc/sys round trip skipped)"
fi

echo "== install.sh"
dest="$tmp/dest"
out="$(bash scripts/install.sh --prefix "$dest" --binary "$herald" --profile c10m)" ||
  fail "install.sh --prefix exits 0"
laid_out=1
for f in usr/local/bin/herald usr/local/sbin/herald-tune \
  usr/local/share/herald/sysctl.d/60-herald-c100k.conf \
  usr/local/share/herald/sysctl.d/60-herald-c1m.conf \
  usr/local/share/herald/sysctl.d/60-herald-c10m.conf \
  usr/local/share/doc/herald/tuning/CAPACITY.md \
  usr/local/share/doc/herald/tuning/nginx-sse.conf \
  etc/systemd/system/herald.service etc/systemd/system/herald@.service \
  etc/systemd/system/herald.service.d/60-nofile.conf \
  etc/herald/herald.env etc/security/limits.d/herald.conf \
  etc/sysctl.d/60-herald-c10m.conf; do
  [ -f "$dest/$f" ] || {
    echo "  missing $f" >&2
    laid_out=0
  }
done
check "install.sh --prefix lays out binary, tune, profiles, docs, units, env, limits" [ "$laid_out" = 1 ]
check "installed binary and herald-tune are executable" \
  test -x "$dest/usr/local/bin/herald" -a -x "$dest/usr/local/sbin/herald-tune"
check "installed env file is not world-readable" \
  [ "$(stat -c %a "$dest/etc/herald/herald.env")" = 640 ]
check "only the chosen profile goes to etc/sysctl.d" \
  [ "$(find "$dest/etc/sysctl.d" -type f | wc -l)" = 1 ]
check "a fresh env file gets the profile's MAX_CONNECTIONS" \
  grep -qx 'MAX_CONNECTIONS=10000000' "$dest/etc/herald/herald.env"
check "c10m gets a LimitNOFILE drop-in within its fs.nr_open" bash -c '
  n=$(sed -n "s/^LimitNOFILE=//p" "$1"); nr=$(sed -n "s/^fs.nr_open = //p" "$2")
  [ "$n" -ge 10000000 ] && [ "$n" -le "$nr" ]' _ \
  "$dest/etc/systemd/system/herald.service.d/60-nofile.conf" sysctl.d/60-herald-c10m.conf
check "installed herald-tune finds its profiles" bash -c \
  '"$1/usr/local/sbin/herald-tune" --root "$2" check c1m >/dev/null 2>&1; [ $? -le 1 ]' _ "$dest" "$froot"
echo 'JWT_SECRET=kept' >>"$dest/etc/herald/herald.env"
bash scripts/install.sh --prefix "$dest" --binary "$herald" --profile c10m >/dev/null || true
check "a second install keeps the existing env file" grep -qx 'JWT_SECRET=kept' "$dest/etc/herald/herald.env"
check "install.sh prints the next steps" grep -q 'systemctl enable --now herald' <<<"$out"

dry="$tmp/dry"
out="$(bash scripts/install.sh --prefix "$dry" --dry-run --profile c1m)" ||
  fail "install.sh --dry-run exits 0"
check "install.sh --dry-run creates nothing" [ ! -e "$dry" ]
check "install.sh --dry-run lists the release build and every file" bash -c \
  'grep -q "cargo build --release" <<<"$1" && grep -q "etc/sysctl.d/60-herald-c1m.conf" <<<"$1" && grep -q "usr/local/bin/herald" <<<"$1"' _ "$out"
# No profile unless asked: not laid out, not applied (the dry run on / shows
# what a real install would run), no MAX_CONNECTIONS written.
plain="$tmp/plain"
bash scripts/install.sh --prefix "$plain" --binary "$herald" >/dev/null ||
  fail "install.sh without --profile exits 0"
check "install.sh without --profile puts no profile in etc/sysctl.d" \
  [ -z "$(find "$plain/etc" -path '*sysctl.d*' -type f 2>/dev/null)" ]
check "install.sh without --profile leaves MAX_CONNECTIONS at its default" \
  grep -qx '#MAX_CONNECTIONS=' "$plain/etc/herald/herald.env"
out="$(bash scripts/install.sh --dry-run --binary "$herald")" || fail "install.sh --dry-run on / exits 0"
check "a real install without --profile would apply nothing (no herald-tune apply, no sysctl.d)" \
  bash -c '! grep -Eq "herald-tune apply|/etc/sysctl.d/" <<<"$1"' _ "$out"
out="$(bash scripts/install.sh --dry-run --binary "$herald" --profile c100k)" || true
check "a real install with --profile c100k would install and apply it" bash -c \
  'grep -q "/etc/sysctl.d/60-herald-c100k.conf" <<<"$1" && grep -q "herald-tune apply c100k" <<<"$1"' _ "$out"
check "limits.d raises nofile for the herald user only (no *, no root, no @group)" bash -c '
  lines=$(grep -Ev "^[[:space:]]*(#|$)" "$1")
  [ -n "$lines" ] && ! awk "\$1 != \"herald\" {bad=1} END {exit !bad}" <<<"$lines" &&
  grep -Eq "^herald[[:space:]]+hard[[:space:]]+nofile[[:space:]]+[0-9]+" <<<"$lines"' _ tuning/limits.d/herald.conf
check "install.sh rejects an unknown profile (exit 2)" bash -c \
  'bash scripts/install.sh --prefix "$1" --profile c5m >/dev/null 2>&1; [ $? = 2 ]' _ "$tmp/bad"

echo "== herald doctor"
out="$(MAX_CONNECTIONS=100000 bash -c 'ulimit -n 1024 && exec "$0" doctor' "$herald" 2>&1)" &&
  rc=0 || rc=$?
check "doctor exits 1 under ulimit -n 1024" [ "$rc" = 1 ]
check "doctor names the fd limit and its fix" bash -c \
  'grep -q "^FAIL  fd limit (RLIMIT_NOFILE): soft 1024 / hard 1024" <<<"$1" && grep -q "fix: under systemd: LimitNOFILE=" <<<"$1"' _ "$out"
out="$(MAX_CONNECTIONS=1000 WORKERS=2 bash -c 'ulimit -n 4096 && exec "$0" doctor' "$herald" 2>&1)" || true
check "doctor passes the fd limit when it fits" grep -q '^OK    fd limit' <<<"$out"

echo "== nginx example"
# nginx -t parses every directive and its arguments, so an unknown or
# misspelled setting fails it. When nginx is not installed, Debian's nginx
# package is unpacked (dpkg-deb -x, not installed: no service starts) into the
# target dir and used from there.
nginx_bin="$(command -v nginx || true)"
if [ -z "$nginx_bin" ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  nroot="$target/ops-nginx"
  if [ ! -x "$nroot/usr/sbin/nginx" ]; then
    echo "  unpacking Debian's nginx into $nroot (not installed)"
    mkdir -p "$nroot"
    if (cd "$tmp" && { apt-get download -q nginx >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get download -q nginx >/dev/null 2>&1; }; }); then
      dpkg-deb -x "$tmp"/nginx_*.deb "$nroot"
    fi
  fi
  [ -x "$nroot/usr/sbin/nginx" ] && nginx_bin="$nroot/usr/sbin/nginx"
fi
if [ -n "$nginx_bin" ]; then
  # Logs, pid and temp paths under the temp dir, so the test writes nothing to
  # the host.
  mkdir -p "$tmp/nginx-temp"
  temps=""
  for t in client_body proxy fastcgi uwsgi scgi; do temps="$temps ${t}_temp_path $tmp/nginx-temp/$t;"; done
  sed -e "s|/var/log/nginx/|$tmp/|g" -e "s|/run/nginx-herald.pid|$tmp/nginx.pid|" \
    -e "s|^http {|http {$temps|" tuning/nginx-sse.conf >"$tmp/nginx.conf"
  check "nginx -t accepts tuning/nginx-sse.conf (every directive exists)" \
    "$nginx_bin" -q -t -p "$tmp/" -e "$tmp/nginx-error.log" -c "$tmp/nginx.conf"
  sed 's/proxy_buffering off;/proxy_bufering off;/' "$tmp/nginx.conf" >"$tmp/nginx-typo.conf"
  check "nginx -t refuses a misspelled directive (the check above can fail)" bash -c \
    '! "$1" -q -t -p "$2/" -e "$2/nginx-error.log" -c "$2/nginx-typo.conf" 2>/dev/null' _ "$nginx_bin" "$tmp"
else
  echo "  (nginx not available: syntax check skipped)"
fi
check "nginx example: no buffering, HTTP/1.1 upstream, gzip off, timeouts, fd limits" bash -c '
  for d in "proxy_buffering off;" "proxy_http_version 1.1;" "gzip off;" "proxy_read_timeout 90s;" \
           "worker_connections " "worker_rlimit_nofile " "proxy_bind "; do
    grep -q "$d" tuning/nginx-sse.conf || { echo "  lacks $d" >&2; exit 1; }
  done
  ! grep -E "^[[:space:]]*gzip_types" tuning/nginx-sse.conf | grep -q event-stream'

check "nginx example logs no tokens (no request line, URI, args or combined format)" bash -c '
  ! grep -nE "[$](request([^_a-z]|$)|request_uri|args|query_string)|access_log .* combined" tuning/nginx-sse.conf'

echo "== Debian package (package-deb.sh, dpkg -i, herald doctor, dpkg -r, dpkg -P)"
# The package is built from the dev-profile binaries that `cargo test` built
# before this script (package-deb.sh --debug --no-build): what is tested here
# is the packaging (layout, conffiles, maintainer scripts, units), and a
# release build would add minutes. scripts/package-deb.sh alone makes the
# release package. A host with a herald package or user of its own is left
# alone.
if [ "$(id -u)" -ne 0 ] || ! command -v dpkg >/dev/null 2>&1; then
  echo "  (not root, or no dpkg: skipped)"
elif dpkg-query -W -f='${Status}' herald 2>/dev/null | grep -q 'ok installed'; then
  echo "  (a herald package is installed on this host: skipped, not touching it)"
elif getent passwd herald >/dev/null; then
  echo "  (a herald user exists on this host: skipped, not touching it)"
else
  # One package test at a time on this host (dpkg holds one lock anyway).
  exec 9>/tmp/herald-ops-deb.lock
  flock 9
  deb_t0=$SECONDS
  deb="$(bash scripts/package-deb.sh --debug --no-build --fast --output "$tmp/deb" 2>"$tmp/deb.log" | tail -n 1)" || true
  [ -f "$deb" ] || sed 's/^/  /' "$tmp/deb.log" >&2
  check "package-deb.sh builds a .deb" [ -f "$deb" ]
  deb_build_s=$((SECONDS - deb_t0))
  # Every path the package must hold (absolute, as installed).
  deb_files=(/usr/bin/herald /usr/bin/herald-bench /usr/sbin/herald-tune
    /usr/lib/systemd/system/herald.service /usr/lib/systemd/system/herald@.service
    /etc/herald/herald.env /etc/security/limits.d/herald.conf
    /usr/share/herald/sysctl.d/60-herald-c100k.conf /usr/share/herald/sysctl.d/60-herald-c1m.conf
    /usr/share/herald/sysctl.d/60-herald-c10m.conf
    /usr/share/doc/herald/tuning/README.md /usr/share/doc/herald/tuning/CAPACITY.md
    /usr/share/doc/herald/tuning/PORTS.md /usr/share/doc/herald/tuning/nginx-sse.conf
    /usr/share/doc/herald/LICENSE-MIT /usr/share/doc/herald/LICENSE-APACHE
    /usr/share/doc/herald/copyright)
  # Not /etc/herald: dpkg keeps a conffile's directory until purge.
  deb_gone_on_remove=(/usr/bin/herald /usr/bin/herald-bench /usr/sbin/herald-tune
    /usr/lib/systemd/system/herald.service /usr/lib/systemd/system/herald@.service
    /usr/share/herald /usr/share/doc/herald)
  if [ -f "$deb" ]; then
    echo "  $(basename "$deb"): $(stat -c %s "$deb") bytes, built in ${deb_build_s}s"
    listing="$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|')"
    missing=()
    for f in "${deb_files[@]}"; do grep -qx "$f" <<<"$listing" || missing+=("$f"); done
    [ "${#missing[@]}" = 0 ] || echo "  not in the .deb: ${missing[*]}" >&2
    check "the .deb holds both binaries, herald-tune, units, env, limits, profiles, docs, licences" \
      [ "${#missing[@]}" = 0 ]
    check "the .deb enables no sysctl profile (nothing under /etc/sysctl.d)" \
      bash -c '! grep -q "^/etc/sysctl.d/" <<<"$1"' _ "$listing"
    conffiles="$(dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles 2>/dev/null || true)"
    check "herald.env and limits.d/herald.conf are conffiles" bash -c \
      'grep -qx /etc/herald/herald.env <<<"$1" && grep -qx /etc/security/limits.d/herald.conf <<<"$1"' _ "$conffiles"

    out="$(dpkg -i "$deb" 2>&1)" && rc=0 || rc=$?
    deb_installed=1
    [ "$rc" = 0 ] || printf '  %s\n' "$out" >&2
    check "dpkg -i installs it" [ "$rc" = 0 ]
    missing=()
    for f in "${deb_files[@]}"; do [ -e "$f" ] || missing+=("$f"); done
    [ "${#missing[@]}" = 0 ] || echo "  not installed: ${missing[*]}" >&2
    check "every packaged file is installed" [ "${#missing[@]}" = 0 ]
    check "postinst created herald as a system user with no login shell" bash -c '
      IFS=: read -r _ _ uid _ _ _ shell < <(getent passwd herald) &&
      [ "$uid" -lt 1000 ] && [ "$shell" = /usr/sbin/nologin ]'
    check "/etc/herald/herald.env: root:herald, mode 640" \
      [ "$(stat -c '%U:%G %a' /etc/herald/herald.env)" = "root:herald 640" ]
    check "the installed unit runs /usr/bin/herald with /etc/herald/herald.env" bash -c '
      u=/usr/lib/systemd/system/herald.service
      grep -qx "ExecStart=/usr/bin/herald" "$u" && grep -qx "ExecStartPre=-/usr/bin/herald doctor" "$u" &&
      grep -qx "EnvironmentFile=/etc/herald/herald.env" "$u"'
    check "install enables no unit and installs no sysctl profile" bash -c '
      ! ls /etc/systemd/system/*.wants/herald*.service >/dev/null 2>&1 &&
      ! ls /etc/sysctl.d/*herald* >/dev/null 2>&1'
    if command -v systemd-analyze >/dev/null 2>&1; then
      out="$(systemd-analyze verify --man=no herald.service 2>&1)" || true
      [ -z "$out" ] || printf '  %s\n' "$out" >&2
      check "systemd-analyze verify: the installed herald.service is clean" [ -z "$out" ]
    fi
    check "/usr/bin/herald --version matches the package version" bash -c \
      '[ "$(/usr/bin/herald --version)" = "herald $(dpkg-query -W -f="\${Version}" herald | cut -d- -f1)" ]'
    # herald doctor as the README says: settings in the env file, then run it
    # with that file loaded (as root, and as the herald user).
    printf 'JWT_SECRET=ops-test\nMAX_CONNECTIONS=1000\nWORKERS=1\n' >>/etc/herald/herald.env
    out="$(bash -c 'ulimit -n 4096 && set -a && . /etc/herald/herald.env && set +a && exec /usr/bin/herald doctor' 2>&1)" &&
      rc=0 || rc=$?
    check "/usr/bin/herald doctor runs with the installed env file (exit 0 or 1: host verdicts)" \
      [ "$rc" = 0 -o "$rc" = 1 ]
    check "doctor reads the env file (fd limit OK for MAX_CONNECTIONS=1000) and ends with its tally" bash -c \
      'grep -q "^OK    fd limit" <<<"$1" && tail -n 1 <<<"$1" | grep -q "^doctor: "' _ "$out"
    [ "$rc" -le 1 ] || printf '  %s\n' "$out" >&2
    out="$(runuser -u herald -- bash -c 'ulimit -n 4096 && set -a && . /etc/herald/herald.env && set +a && exec /usr/bin/herald doctor' 2>&1)" &&
      rc=0 || rc=$?
    check "the herald user can read its env file and run doctor" bash -c \
      '[ "$1" -le 1 ] && tail -n 1 <<<"$2" | grep -q "^doctor: "' _ "$rc" "$out"
    check "the installed herald-tune finds its profiles in /usr/share/herald" bash -c \
      '/usr/sbin/herald-tune --root "$1" check c1m >/dev/null 2>&1; [ $? -le 1 ]' _ "$froot"

    out="$(dpkg -r herald 2>&1)" && rc=0 || rc=$?
    [ "$rc" = 0 ] || printf '  %s\n' "$out" >&2
    check "dpkg -r removes it" [ "$rc" = 0 ]
    left=()
    for f in "${deb_gone_on_remove[@]}"; do [ ! -e "$f" ] || left+=("$f"); done
    [ "${#left[@]}" = 0 ] || echo "  left after dpkg -r: ${left[*]}" >&2
    check "dpkg -r removes binaries, units, profiles and docs" [ "${#left[@]}" = 0 ]
    check "dpkg -r keeps the (edited) conffile, as Debian does until purge" \
      grep -qx 'JWT_SECRET=ops-test' /etc/herald/herald.env
    out="$(dpkg -P herald 2>&1)" && rc=0 || rc=$?
    [ "$rc" = 0 ] || printf '  %s\n' "$out" >&2
    check "dpkg -P purges it, quietly (no error output)" bash -c \
      '[ "$1" = 0 ] && ! grep -Eiq "warning|error|not executed" <<<"$2"' _ "$rc" "$out"
    deb_installed=0
    left=()
    for f in "${deb_files[@]}" /etc/herald /usr/share/herald /usr/share/doc/herald; do
      [ ! -e "$f" ] || left+=("$f")
    done
    [ "${#left[@]}" = 0 ] || echo "  left after dpkg -P: ${left[*]}" >&2
    check "dpkg -P leaves no file of the package, /etc/herald included" [ "${#left[@]}" = 0 ]
    check "dpkg -P removes the herald user and group" \
      bash -c '! getent passwd herald >/dev/null && ! getent group herald >/dev/null'
    check "dpkg no longer knows the package" \
      bash -c '! dpkg-query -W -f="\${Status}" herald 2>/dev/null | grep -q installed'
  fi
  echo "  (the package test took $((SECONDS - deb_t0)) s)"
  exec 9>&-
fi

echo "== shell scripts"
if command -v shellcheck >/dev/null 2>&1; then
  check "shellcheck scripts/tune.sh install.sh test-ops.sh package-deb.sh, debian/ maintainer scripts" \
    bash -c 'shellcheck scripts/tune.sh scripts/install.sh scripts/test-ops.sh scripts/package-deb.sh &&
      shellcheck -s sh debian/postinst debian/prerm debian/postrm'
else
  echo "  (shellcheck not installed: skipped)"
fi

echo "ops: $passed passed, $failed failed"
[ "$failed" = 0 ]
