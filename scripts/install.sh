#!/usr/bin/env bash
# install.sh: build herald and lay it out on a host (or under a staging root).
#
#   scripts/install.sh [--profile c100k|c1m|c10m] [--prefix DIR]
#                      [--binary PATH] [--dry-run]
#
# (A Debian package is the other way in: scripts/package-deb.sh.)
#
# Lays out, relative to --prefix (default /, like DESTDIR: paths inside the
# files stay absolute):
#   usr/local/bin/herald                         release build (cargo build --release)
#   usr/local/sbin/herald-tune                   scripts/tune.sh
#   usr/local/share/herald/sysctl.d/*.conf       every profile, for herald-tune
#   usr/local/share/doc/herald/tuning/           capacity, ports, nginx notes
#   etc/systemd/system/herald.service, herald@.service
#   etc/herald/herald.env                        only if absent (it holds secrets)
#   etc/security/limits.d/herald.conf            nofile for the herald user's shells
# and, only with --profile (no sysctl profile is installed or applied unless
# you ask for one; the default is --profile none):
#   etc/sysctl.d/60-herald-PROFILE.conf          the chosen profile (kept across boots)
#   etc/systemd/system/herald{,@}.service.d/60-nofile.conf   c10m only: LimitNOFILE
# With a profile, a fresh herald.env gets MAX_CONNECTIONS set to its size, and
# with --prefix / (a real install, as root) the profile is applied now too
# (herald-tune apply: previous values saved, no value lowered). A real install
# runs systemctl daemon-reload when systemd is running. It never enables or
# starts the service.
#
#   --profile P    c100k | c1m | c10m: install and apply that sysctl profile;
#                  none (the default): leave the kernel's settings alone
#   --binary PATH  install this binary instead of building one
#   --dry-run      print every step, change nothing
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="/"
profile="none"
binary=""
dry_run=0

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
    --profile) profile="${2:?--profile needs c100k, c1m, c10m or none}"; shift 2 ;;
    --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage ;;
    *) echo "install.sh: unknown argument $1" >&2; usage ;;
  esac
done
case "$profile" in
  c100k | c1m | c10m | none) ;;
  *) echo "install.sh: --profile must be c100k, c1m, c10m or none" >&2; exit 2 ;;
esac
prefix="${prefix%/}"
real=0
[ -n "$prefix" ] || real=1

run() {
  if [ "$dry_run" = 1 ]; then
    echo "would run: $*"
  else
    echo "+ $*"
    "$@"
  fi
}

# put MODE SRC DEST: install one file, creating the directory.
put() {
  run install -D -m "$1" "$2" "$prefix$3"
}

if [ -z "$binary" ]; then
  if [ "$dry_run" = 1 ]; then
    echo "would run: cargo build --release --locked (in $repo)"
  else
    (cd "$repo" && cargo build --release --locked)
  fi
  binary="${CARGO_TARGET_DIR:-$repo/target}/release/herald"
fi
[ "$dry_run" = 1 ] || [ -x "$binary" ] || {
  echo "install.sh: no executable at $binary" >&2
  exit 1
}

put 0755 "$binary" /usr/local/bin/herald
put 0755 "$repo/scripts/tune.sh" /usr/local/sbin/herald-tune
for f in "$repo"/sysctl.d/60-herald-*.conf; do
  put 0644 "$f" "/usr/local/share/herald/sysctl.d/$(basename "$f")"
done
for f in "$repo"/tuning/*.md "$repo"/tuning/nginx-sse.conf "$repo"/tuning/measure-kernel.py; do
  put 0644 "$f" "/usr/local/share/doc/herald/tuning/$(basename "$f")"
done
# The units name the Debian package's paths (/usr/bin, /usr/share/doc); this
# layout is under /usr/local.
staging="$(mktemp -d)"
trap 'rm -rf "$staging"' EXIT
for u in herald.service herald@.service; do
  sed -e 's|/usr/bin/herald|/usr/local/bin/herald|g' \
    -e 's|/usr/share/doc/herald/|/usr/local/share/doc/herald/|g' \
    "$repo/systemd/$u" >"$staging/$u"
  put 0644 "$staging/$u" "/etc/systemd/system/$u"
done
# MAX_CONNECTIONS and LimitNOFILE for each profile (fd reserve: herald doctor).
case "$profile" in
  c100k) max_conns=100000 nofile="" ;;
  c1m) max_conns=1000000 nofile="" ;;
  c10m) max_conns=10000000 nofile=10485760 ;;
  none) max_conns="" nofile="" ;;
esac
if [ -e "$prefix/etc/herald/herald.env" ]; then
  echo "keep $prefix/etc/herald/herald.env (exists; compare with systemd/herald.env)"
else
  put 0640 "$repo/systemd/herald.env" /etc/herald/herald.env
  if [ -n "$max_conns" ]; then
    run sed -i "s/^#MAX_CONNECTIONS=.*/MAX_CONNECTIONS=$max_conns/" "$prefix/etc/herald/herald.env"
  fi
fi
put 0644 "$repo/tuning/limits.d/herald.conf" /etc/security/limits.d/herald.conf
if [ "$profile" != none ]; then
  put 0644 "$repo/sysctl.d/60-herald-$profile.conf" "/etc/sysctl.d/60-herald-$profile.conf"
fi
# The units' LimitNOFILE=1048576 covers c100k and c1m; c10m needs more, which
# its fs.nr_open allows.
if [ -n "$nofile" ]; then
  dropin="$staging/60-nofile.conf"
  printf '# Written by install.sh --profile %s.\n[Service]\nLimitNOFILE=%s\n' \
    "$profile" "$nofile" >"$dropin"
  put 0644 "$dropin" /etc/systemd/system/herald.service.d/60-nofile.conf
  put 0644 "$dropin" /etc/systemd/system/herald@.service.d/60-nofile.conf
fi

if [ "$real" = 1 ]; then
  if [ "$profile" != none ]; then
    run /usr/local/sbin/herald-tune apply "$profile"
  fi
  if [ -d /run/systemd/system ]; then
    run systemctl daemon-reload
  fi
fi

cat <<EOF

herald installed under ${prefix:-/}.
EOF
if [ "$profile" = none ]; then
  cat <<EOF
No sysctl profile installed or applied. To see what one would change:
  herald-tune check c1m      (c100k, c1m, c10m; then install.sh --profile c1m)
EOF
fi
cat <<EOF
Next:
  1. set JWT_SECRET (or JWT_PUBLIC_KEY_FILE) in /etc/herald/herald.env (MAX_CONNECTIONS,
     unset, is what the host holds: the fd limit and memory, logged at start-up)
  2. systemctl enable --now herald
  3. herald doctor   (with the env file loaded: set -a; . /etc/herald/herald.env; set +a)
EOF
