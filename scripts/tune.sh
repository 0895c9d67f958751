#!/usr/bin/env bash
# tune.sh: compare, apply and revert a herald sysctl profile (sysctl.d/).
#
#   tune.sh check [PROFILE]            current value vs profile for every knob;
#                                      exit 1 when any is short
#   tune.sh apply PROFILE [--dry-run]  raise what is short (runtime only; the
#                                      values it replaces are saved first);
#                                      never lowers a value
#   tune.sh revert [--dry-run]         restore the saved values
#
# PROFILE: c100k | c1m | c10m, or the path of a sysctl.d file. Without one,
# check uses the single /etc/sysctl.d/60-herald-*.conf installed, if any.
# apply changes only the running kernel; to keep a profile across reboots,
# install it: cp sysctl.d/60-herald-c1m.conf /etc/sysctl.d/ (install.sh
# --profile does). systemd-sysctl then writes the file's values as they are,
# lower ones included (e.g. the profiles' 16 KiB tcp_rmem default).
#
# How a knob counts as "short", and what apply writes (never less than now):
#   net.ipv4.ip_local_port_range   short unless the current range contains the
#                                  profile's; apply writes the union of both
#                                  (a range is never narrowed)
#   net.ipv4.tcp_tw_reuse          short only when 0 (off): 1 (everywhere) and
#                                  2 (loopback only, the kernel default: enough
#                                  for nginx on the same box) are both kept
#   anything else (tcp_mem,        short when any field is below the
#   tcp_rmem, tcp_wmem, limits)    profile's; apply raises those fields and
#                                  keeps every field that is already higher
# A key written "-key = value" is optional: skipped where the kernel lacks it
# (nf_conntrack not loaded), and a failed write is a warning.
#
# Options (before or after the command):
#   --root DIR    sysctl tree to read and write (default /proc/sys; tests
#                 point it at a copy)
#   --state FILE  where apply saves previous values (default
#                 /var/lib/herald/tune-saved.conf)
#   --dry-run     print what apply/revert would write, change nothing
# Exit codes: 0 ok, 1 short (check) or a write failed, 2 usage error.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="${HERALD_SYSCTL_ROOT:-/proc/sys}"
state="${HERALD_TUNE_STATE:-/var/lib/herald/tune-saved.conf}"
dry_run=0
cmd=""
profile_arg=""

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="${2:?--root needs a directory}"; shift 2 ;;
    --state) state="${2:?--state needs a file}"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage ;;
    check | apply | revert)
      [ -z "$cmd" ] || usage
      cmd="$1"; shift ;;
    -*) echo "tune.sh: unknown option $1" >&2; usage ;;
    *)
      [ -z "$profile_arg" ] || usage
      profile_arg="$1"; shift ;;
  esac
done
[ -n "$cmd" ] || usage

# The profile file for a name or a path.
resolve_profile() {
  local p="$1" dir
  if [ -f "$p" ]; then
    printf '%s\n' "$p"
    return
  fi
  for dir in "$here/../sysctl.d" "$here/../share/herald/sysctl.d" /etc/sysctl.d; do
    if [ -f "$dir/60-herald-$p.conf" ]; then
      printf '%s\n' "$dir/60-herald-$p.conf"
      return
    fi
  done
  echo "tune.sh: no profile $p (expected c100k, c1m, c10m or a file)" >&2
  exit 2
}

# "key<TAB>value<TAB>optional" for every setting of a sysctl.d file.
read_profile() {
  local line key value optional
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line#"${line%%[![:space:]]*}"}"
    case "$line" in '' | '#'* | ';'*) continue ;; esac
    optional=0
    if [ "${line:0:1}" = "-" ]; then
      optional=1
      line="${line:1}"
    fi
    key="${line%%=*}"
    value="${line#*=}"
    key="$(printf '%s' "$key" | tr -d '[:space:]')"
    value="$(printf '%s' "$value" | tr -s '[:space:]' ' ' | sed 's/^ //; s/ $//')"
    printf '%s\t%s\t%s\n' "$key" "$value" "$optional"
  done <"$1"
}

path_of() { printf '%s/%s\n' "$root" "${1//.//}"; }

# Current value with whitespace normalised; fails when the key is absent.
current() {
  local p
  p="$(path_of "$1")"
  [ -r "$p" ] || return 1
  tr -s '[:space:]' ' ' <"$p" | sed 's/^ //; s/ $//'
}

kind_of() {
  case "$1" in
    net.ipv4.ip_local_port_range) echo range ;;
    net.ipv4.tcp_tw_reuse) echo switch ;;
    *) echo min ;;
  esac
}

# ok when `have` satisfies `want` for the key's kind.
satisfies() {
  local kind="$1" have="$2" want="$3"
  local -a h w
  read -r -a h <<<"$have"
  read -r -a w <<<"$want"
  [ "${#h[@]}" -eq "${#w[@]}" ] || return 1
  case "$kind" in
    range) [ "${h[0]}" -le "${w[0]}" ] && [ "${h[1]}" -ge "${w[1]}" ] ;;
    # Any "on" value satisfies an "on" profile; 1 and 2 differ in where,
    # not in how much, so neither replaces the other.
    switch) [ "${h[0]}" != 0 ] || [ "${w[0]}" = 0 ] ;;
    min)
      local i
      for i in "${!w[@]}"; do
        [ "${h[$i]}" -ge "${w[$i]}" ] || return 1
      done
      ;;
  esac
}

# The value apply writes for a knob that does not satisfy the profile: the
# profile's, except that no field moves the "wrong" way: a "min" knob keeps
# every field that is already higher, a range becomes the union of the current
# and the profile's. A value of another shape (field count) is replaced.
target() {
  local kind="$1" have="$2" want="$3"
  local -a h w out
  read -r -a h <<<"$have"
  read -r -a w <<<"$want"
  if [ "${#h[@]}" -ne "${#w[@]}" ]; then
    printf '%s\n' "$want"
    return
  fi
  case "$kind" in
    range)
      out=("${w[0]}" "${w[1]}")
      [ "${h[0]}" -ge "${w[0]}" ] || out[0]="${h[0]}"
      [ "${h[1]}" -le "${w[1]}" ] || out[1]="${h[1]}"
      ;;
    switch) out=("${w[@]}") ;;
    min)
      local i
      for i in "${!w[@]}"; do
        if [ "${h[$i]}" -gt "${w[$i]}" ]; then out+=("${h[$i]}"); else out+=("${w[$i]}"); fi
      done
      ;;
  esac
  printf '%s\n' "${out[*]}"
}

write_value() {
  printf '%s\n' "$2" >"$(path_of "$1")"
}

cmd_check() {
  local file="$1" key want optional have short=0 verdict
  printf '%-36s %-28s %-28s %s\n' KNOB CURRENT "PROFILE $(basename "$file")" VERDICT
  while IFS=$'\t' read -r key want optional; do
    if ! have="$(current "$key")"; then
      if [ "$optional" = 1 ]; then
        printf '%-36s %-28s %-28s %s\n' "$key" "-" "$want" "skip (not on this kernel)"
        continue
      fi
      have="-"
      verdict="MISSING"
      short=1
    elif satisfies "$(kind_of "$key")" "$have" "$want"; then
      verdict="ok"
    else
      verdict="SHORT"
      short=1
    fi
    printf '%-36s %-28s %-28s %s\n' "$key" "$have" "$want" "$verdict"
  done < <(read_profile "$file")
  if [ "$short" = 1 ]; then
    # The name it was run by: herald-tune once installed, else scripts/tune.sh.
    local self
    self="$(basename "$0")"
    [ "$self" != tune.sh ] || self=scripts/tune.sh
    echo "tune.sh: below the profile; fix: $self apply $profile_arg" >&2
    return 1
  fi
  echo "tune.sh: every knob meets $(basename "$file")"
}

cmd_apply() {
  local file="$1" key want optional have kind new changed=0 failed=0
  local -A saved=()
  if [ -f "$state" ]; then
    while IFS=$'\t' read -r key have _; do saved["$key"]=1; done < <(read_profile "$state")
  fi
  while IFS=$'\t' read -r key want optional; do
    if ! have="$(current "$key")"; then
      if [ "$optional" = 1 ]; then
        echo "skip  $key (not on this kernel)"
        continue
      fi
      echo "FAIL  $key does not exist under $root" >&2
      failed=1
      continue
    fi
    kind="$(kind_of "$key")"
    if satisfies "$kind" "$have" "$want"; then
      echo "ok    $key = $have"
      continue
    fi
    new="$(target "$kind" "$have" "$want")"
    if [ "$dry_run" = 1 ]; then
      echo "would set $key = $new (now $have)"
      continue
    fi
    # Save the value first, once: a second apply must not overwrite the
    # original with a value this script wrote.
    if [ -z "${saved[$key]:-}" ]; then
      mkdir -p "$(dirname "$state")"
      printf '%s = %s\n' "$key" "$have" >>"$state"
      saved["$key"]=1
    fi
    if write_value "$key" "$new" 2>/dev/null; then
      echo "set   $key = $new (was $have)"
      changed=1
    elif [ "$optional" = 1 ]; then
      echo "warn  $key: cannot write (e.g. a non-initial network namespace); left at $have" >&2
    else
      echo "FAIL  $key: cannot write $new" >&2
      failed=1
    fi
  done < <(read_profile "$file")
  if [ "$dry_run" = 0 ] && [ "$changed" = 1 ]; then
    echo "tune.sh: previous values saved in $state (tune.sh revert restores them)"
  elif [ "$dry_run" = 0 ]; then
    echo "tune.sh: nothing to change"
  fi
  return "$failed"
}

cmd_revert() {
  local key value failed=0
  if [ ! -f "$state" ]; then
    echo "tune.sh: nothing to revert ($state does not exist)"
    return 0
  fi
  while IFS=$'\t' read -r key value _; do
    if [ "$dry_run" = 1 ]; then
      echo "would restore $key = $value"
    elif write_value "$key" "$value" 2>/dev/null; then
      echo "restored $key = $value"
    else
      echo "FAIL  $key: cannot restore $value" >&2
      failed=1
    fi
  done < <(read_profile "$state")
  if [ "$dry_run" = 0 ] && [ "$failed" = 0 ]; then
    rm -f "$state"
  fi
  return "$failed"
}

case "$cmd" in
  check)
    if [ -z "$profile_arg" ]; then
      shopt -s nullglob
      installed=(/etc/sysctl.d/60-herald-*.conf)
      shopt -u nullglob
      [ "${#installed[@]}" -eq 1 ] || {
        echo "tune.sh: name a profile (c100k, c1m, c10m)" >&2
        exit 2
      }
      profile_arg="${installed[0]}"
    fi
    file="$(resolve_profile "$profile_arg")"
    cmd_check "$file"
    ;;
  apply)
    [ -n "$profile_arg" ] || usage
    file="$(resolve_profile "$profile_arg")"
    cmd_apply "$file"
    ;;
  revert)
    [ -z "$profile_arg" ] || usage
    cmd_revert
    ;;
esac
