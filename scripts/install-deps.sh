#!/usr/bin/env bash
# Installs the real peers the tests run against, on a fresh Debian 12 machine, as root.
# Idempotent: a second run only re-checks. See ../../shared/ENVIRONMENT.md for why each piece exists.
#
#   - Debian 12 packages: redis-server, redis-tools (redis-cli), docker.io (dockerd 20.10 + containerd + runc), busybox-static,
#     docker-registry, squid, haproxy, socat, openssl, ca-certificates; for the builder VM's boot files
#     (deploy/builder): cloud-init (its schema check), shellcheck, nftables; openssh-client (a real ssh-agent,
#     ssh-keygen and ssh-add for slipway build --ssh's tests).
#   - Debian 13 docker.io / docker-buildx / docker-compose, fetched with a private apt configuration
#     and unpacked (not installed) into $DEBIAN13_DIR/root; the system's apt sources stay untouched.
#
# Tests start their own dockerds, so no system dockerd may keep running and holding docker0.
set -euo pipefail

DEBIAN13_DIR="${SLIPWAY_DEBIAN13_DIR:-/opt/debian13}"
APT_PACKAGES=(redis-server redis-tools docker.io busybox-static docker-registry squid haproxy socat openssl ca-certificates cloud-init shellcheck nftables openssh-client)
DEBIAN13_PACKAGES=(docker.io docker-buildx docker-compose)

log() { printf '[install-deps] %s\n' "$*" >&2; }
die() { printf '[install-deps] ERROR: %s\n' "$*" >&2; exit 1; }
trap 'rc=$?; [ $rc -eq 0 ] || printf "[install-deps] FAILED (exit %s) at line %s: %s\n" "$rc" "$LINENO" "$BASH_COMMAND" >&2' EXIT

[ "$(id -u)" -eq 0 ] || die "must run as root (uid 0), running as uid $(id -u)"
command -v apt-get >/dev/null || die "apt-get not found: this script expects Debian 12"

export DEBIAN_FRONTEND=noninteractive

systemd_running() { [ -d /run/systemd/system ]; }

# --- Debian 12 packages --------------------------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  # Without systemd, maintainer scripts start daemons through invoke-rc.d; a policy-rc.d that answers
  # 101 ("action forbidden") keeps them from starting. Only add one if the machine has none, and remove
  # only the one we added.
  added_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    log "adding a temporary /usr/sbin/policy-rc.d so package installs start no daemons"
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    added_policy=1
  fi
  log "apt-get update"
  apt-get update -qq
  log "apt-get install -y ${missing[*]}"
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
    [ $added_policy -eq 1 ] && rm -f /usr/sbin/policy-rc.d
    die "apt-get install failed for: ${missing[*]}"
  fi
  [ $added_policy -eq 1 ] && rm -f /usr/sbin/policy-rc.d
else
  log "Debian 12 packages already installed: ${APT_PACKAGES[*]}"
fi

# --- No system dockerd may hold docker0 ----------------------------------------------------------
if systemd_running; then
  for unit in docker.service docker.socket; do
    if systemctl is-active --quiet "$unit" || systemctl is-enabled --quiet "$unit" 2>/dev/null; then
      log "stopping and disabling $unit (systemd)"
      systemctl disable --now "$unit" || die "could not stop/disable $unit"
    fi
  done
else
  if [ -x /etc/init.d/docker ] && [ -f /var/run/docker.pid ]; then
    log "stopping system dockerd started by its init script"
    /etc/init.d/docker stop || true
  fi
  # Only the daemon that owns the system pidfile: the tests' own dockerds use their own pidfiles.
  if [ -f /var/run/docker.pid ]; then
    pid="$(cat /var/run/docker.pid)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      log "stopping system dockerd pid $pid"
      kill -TERM "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -0 "$pid" 2>/dev/null && die "system dockerd pid $pid did not stop"
    fi
  fi
  # Keep the init script from starting it again at boot.
  if command -v update-rc.d >/dev/null && [ -x /etc/init.d/docker ]; then
    update-rc.d docker disable >/dev/null 2>&1 || true
  fi
fi

# --- Debian 13 docker.io / docker-buildx / docker-compose, unpacked -------------------------------
want=(
  "$DEBIAN13_DIR/root/usr/sbin/dockerd"
  "$DEBIAN13_DIR/root/usr/libexec/docker/cli-plugins/docker-buildx"
  "$DEBIAN13_DIR/root/usr/libexec/docker/cli-plugins/docker-compose"
)
have_all=1
for f in "${want[@]}"; do [ -x "$f" ] || have_all=0; done

if [ $have_all -eq 1 ]; then
  log "Debian 13 binaries already unpacked in $DEBIAN13_DIR/root"
else
  T="$DEBIAN13_DIR"
  log "fetching Debian 13 ${DEBIAN13_PACKAGES[*]} into $T with a private apt configuration"
  mkdir -p "$T/lists/partial" "$T/cache/archives/partial" "$T/debs" "$T/root"
  MIRROR=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    MIRROR="$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
  fi
  if [ -z "$MIRROR" ] && [ -f /etc/apt/sources.list ]; then
    MIRROR="$(awk '$1=="deb"{for(i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//){print $i; exit}}' /etc/apt/sources.list)"
  fi
  [ -n "$MIRROR" ] || die "could not find the Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
  log "mirror: $MIRROR"
  echo "deb $MIRROR trixie main" > "$T/sources.list"
  O=(-o "Dir::Etc::SourceList=$T/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
     -o "Dir::State::Lists=$T/lists" -o "Dir::Cache=$T/cache" -o "APT::Sandbox::User=root")
  apt-get "${O[@]}" update -qq || die "private apt update for trixie failed"
  rm -f "$T/debs"/*.deb
  (cd "$T/debs" && apt-get "${O[@]}" download "${DEBIAN13_PACKAGES[@]}") || die "apt-get download of ${DEBIAN13_PACKAGES[*]} failed"
  for d in "$T/debs"/*.deb; do
    log "unpacking $(basename "$d")"
    dpkg-deb -x "$d" "$T/root"
  done
  for f in "${want[@]}"; do [ -x "$f" ] || die "expected $f after unpacking, it is missing"; done
fi

# --- Report ---------------------------------------------------------------------------------------
log "dockerd (Debian 12):  $(/usr/sbin/dockerd --version 2>&1 | head -n1)"
log "dockerd (Debian 13):  $("$DEBIAN13_DIR/root/usr/sbin/dockerd" --version 2>&1 | head -n1)"
log "buildx (Debian 13):   $("$DEBIAN13_DIR/root/usr/libexec/docker/cli-plugins/docker-buildx" version 2>&1 | head -n1)"
log "redis-server:         $(redis-server --version 2>&1 | head -n1)"
for bin in /bin/busybox containerd runc docker-registry squid haproxy socat openssl; do
  command -v "$bin" >/dev/null || die "$bin not found after install"
done
if ip link show docker0 >/dev/null 2>&1 && [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
  die "a system dockerd is still running and holds docker0"
fi
log "done"
