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
cleanup() {
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
if [ ! -x "$herald" ]; then
  cargo build --quiet --bin herald
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
    check "$u: Type=notify, Restart=always, LimitNOFILE, LimitMEMLOCK, hardening" bash -c '
      for d in Type=notify Restart=always LimitNOFILE= LimitMEMLOCK= DynamicUser=yes \
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
  grep -qx '#MAX_CONNECTIONS=10000000' "$plain/etc/herald/herald.env"
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

echo "== shell scripts"
if command -v shellcheck >/dev/null 2>&1; then
  check "shellcheck scripts/tune.sh install.sh test-ops.sh" \
    shellcheck scripts/tune.sh scripts/install.sh scripts/test-ops.sh
else
  echo "  (shellcheck not installed: skipped)"
fi

echo "ops: $passed passed, $failed failed"
[ "$failed" = 0 ]
