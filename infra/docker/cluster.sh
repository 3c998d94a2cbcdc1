#!/usr/bin/env bash
# The docker-compose demo cluster on a machine without an image registry (make compose-*).
#
#   infra/docker/cluster.sh up            daemon if none runs, base image if missing, build
#                                         (cached), start, wait until every service is healthy
#   infra/docker/cluster.sh test          up, then the end-to-end test from the host
#   infra/docker/cluster.sh down [-v]     remove containers and networks (-v: volumes too);
#                                         stop the daemon if this script started it and no
#                                         container runs on it any more
#   infra/docker/cluster.sh env           the variables to use docker / docker-compose by hand
#
# The compose project is "lambdalab" (COMPOSE_PROJECT_NAME) whichever checkout runs this:
# the host ports are one set per machine, so one cluster per machine, reused by any clone.
#
# Docker state lives under ~/.cache/lambdalab/docker (LAMBDALAB_DOCKER_DIR), never in
# /var/lib/docker, so a fresh clone finds the layer cache and the base image again. A
# daemon that already answers (DOCKER_HOST, /var/run/docker.sock, or ours) is used as is.
#
# Images are built FROM one base (build argument BASE_IMAGE, from LAMBDALAB_BASE_IMAGE):
# debian:bookworm-slim where a registry is reachable; without one (LAMBDALAB_BASE_IMAGE=
# localhost/debian:bookworm, the default here) the base is made with debootstrap from the
# Debian mirror apt already uses and imported. Host CA certificates in
# /usr/local/share/ca-certificates are staged into infra/docker/certs/ for every image.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${LAMBDALAB_DOCKER_DIR:-$HOME/.cache/lambdalab/docker}
OUR_SOCK=$STATE/docker.sock
OUR_PID=$STATE/dockerd.pid
export LAMBDALAB_BASE_IMAGE=${LAMBDALAB_BASE_IMAGE:-localhost/debian:bookworm}
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=1  # the legacy builder: no buildx here
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-lambdalab}
HEALTHY_TIMEOUT_S=${LAMBDALAB_COMPOSE_HEALTHY_TIMEOUT_S:-900}

say() { printf '[cluster] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
apt_install() {
  [ "$(id -u)" = 0 ] || die "missing Debian package(s) $*: apt-get install $*"
  say "installing $*"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
answers() { DOCKER_HOST=$1 timeout 10 docker info >/dev/null 2>&1; }
compose() { (cd "$ROOT" && docker-compose "$@"); }

# A daemon that answers: DOCKER_HOST, ours, or the system's (exported as DOCKER_HOST).
find_daemon() {
  if [ -n "${DOCKER_HOST:-}" ] && answers "$DOCKER_HOST"; then return 0; fi
  for host in "unix://$OUR_SOCK" unix:///var/run/docker.sock; do
    if answers "$host"; then export DOCKER_HOST=$host; return 0; fi
  done
  return 1
}

# Use a daemon that answers, else start ours (root, no systemd) and wait for it. Never a
# second one beside a dockerd this script cannot reach: both would manage the same bridge.
daemon() {
  find_daemon && return
  [ "$(id -u)" = 0 ] || die "no Docker daemon answers and starting one needs root"
  command -v dockerd >/dev/null || apt_install docker.io
  if pgrep -x dockerd >/dev/null; then
    die "a dockerd runs (pid $(pgrep -x dockerd | tr '\n' ' ')) but does not answer here: set DOCKER_HOST"
  fi
  mkdir -p "$STATE"
  say "starting dockerd (data root $STATE/root, log $STATE/dockerd.log)"
  nohup dockerd --data-root "$STATE/root" --exec-root "$STATE/exec" --pidfile "$OUR_PID" \
    -H "unix://$OUR_SOCK" >"$STATE/dockerd.log" 2>&1 </dev/null &
  export DOCKER_HOST=unix://$OUR_SOCK
  for _ in $(seq 60); do answers "$DOCKER_HOST" && return; sleep 1; done
  tail -20 "$STATE/dockerd.log" >&2
  die "dockerd did not answer within 60 s"
}

# The Debian mirror apt uses on this host (deb822 URIs: or one-line deb entries).
mirror() {
  local found
  found=$(grep -hE '^\s*(URIs:|deb\s)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
    | grep -oE 'https?://[^ ]+/debian/?' | grep -v security | head -1 || true)
  echo "${found:-http://deb.debian.org/debian}"
}

# localhost/debian:bookworm: a minbase debootstrap, configured like debian:bookworm-slim.
base() {
  case "$LAMBDALAB_BASE_IMAGE" in localhost/*) ;; *) return ;; esac
  if docker image inspect "$LAMBDALAB_BASE_IMAGE" >/dev/null 2>&1; then return; fi
  command -v debootstrap >/dev/null || apt_install debootstrap
  local rootfs url started=$SECONDS
  rootfs=$(mktemp -d "$STATE/rootfs.XXXXXX")
  url=$(mirror)
  say "making $LAMBDALAB_BASE_IMAGE with debootstrap from $url"
  debootstrap --variant=minbase bookworm "$rootfs" "$url" >"$STATE/debootstrap.log" 2>&1 \
    || { tail -20 "$STATE/debootstrap.log" >&2; rm -rf "$rootfs"; die "debootstrap failed"; }
  cp -a "$ROOT/infra/docker/base/." "$rootfs/"
  sed "s#@MIRROR@#${url%/}#" "$ROOT/infra/docker/base/etc/apt/sources.list" >"$rootfs/etc/apt/sources.list"
  # what the slim config above would have kept out of the debootstrapped packages
  find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
  rm -rf "$rootfs"/usr/share/{man,info,locale,lintian}/* "$rootfs"/tmp/* \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' - "$LAMBDALAB_BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  say "$LAMBDALAB_BASE_IMAGE made in $((SECONDS - started)) s"
}

# The host's extra CA certificates, for every image's trust store (pip, Maven, Java).
certs() {
  local dir=$ROOT/infra/docker/certs
  find "$dir" -name '*.crt' -delete
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$dir/"
  fi
}

# "container status" per line for every container of the project that is not healthy.
not_healthy() {
  local ids
  ids=$(compose ps -q)
  [ -n "$ids" ] || { echo "(no containers)"; return; }
  # shellcheck disable=SC2086
  docker inspect --format \
    '{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' $ids \
    | grep -v ' healthy$' || true
}

# What went wrong: compose ps, then each unhealthy container's last checks and log lines.
report() {
  compose ps >&2 || true
  local name
  for name in $(not_healthy | awk '/^\// {print $1}'); do
    say "${name#/}: last health checks and log lines"
    docker inspect --format '{{if .State.Health}}{{range .State.Health.Log}}{{.Output}}{{end}}{{end}}' \
      "$name" | tail -5 >&2
    docker logs --tail 30 "$name" 2>&1 | sed "s#^#  ${name#/}: #" >&2
  done
}

wait_healthy() {
  local deadline=$((SECONDS + HEALTHY_TIMEOUT_S)) bad
  while :; do
    bad=$(not_healthy)
    [ -z "$bad" ] && { say "every service healthy"; return; }
    if [ $SECONDS -ge $deadline ] || grep -qE ' (unhealthy|exited|dead)$|no containers' <<<"$bad"; then
      report
      die "not healthy: $(tr '\n' ' ' <<<"$bad")"
    fi
    sleep 5
  done
}

up() {
  local started=$SECONDS
  command -v docker-compose >/dev/null || apt_install docker-compose
  daemon
  base
  certs
  say "building the images (FROM $LAMBDALAB_BASE_IMAGE; log: $STATE/build.log)"
  compose build >"$STATE/build.log" 2>&1 || { tail -40 "$STATE/build.log" >&2; die "build failed"; }
  say "images built in $((SECONDS - started)) s; starting the cluster"
  compose up -d --remove-orphans || { report; die "docker-compose up failed"; }
  wait_healthy
  say "cluster up in $((SECONDS - started)) s"
  compose ps
}

down() {
  find_daemon || { say "no Docker daemon answers: nothing to remove"; return; }
  compose down --remove-orphans ${1:+"$1"}
  if [ "${DOCKER_HOST:-}" = "unix://$OUR_SOCK" ] && [ -f "$OUR_PID" ] \
      && [ -z "$(docker ps -q)" ]; then
    local pid
    pid=$(cat "$OUR_PID")
    say "stopping the dockerd this script started (pid $pid)"
    kill "$pid"
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 1; done
    say "dockerd pid $pid still runs after 30 s"
  fi
}

e2e() {
  up
  say "end-to-end test against the cluster (tests/compose)"
  (cd "$ROOT" && .venv/bin/pytest -m compose tests/compose -p no:cacheprovider "$@")
}

case "${1:-}" in
  up) up ;;
  test) shift; e2e "$@" ;;
  down) down "${2:+--volumes}" ;;
  daemon) daemon; echo "export DOCKER_HOST=$DOCKER_HOST" ;;
  base) daemon; base ;;
  env)
    find_daemon || die "no Docker daemon answers: run $0 up"
    echo "export DOCKER_HOST=$DOCKER_HOST COMPOSE_PROJECT_NAME=$COMPOSE_PROJECT_NAME" \
      "DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=1 LAMBDALAB_BASE_IMAGE=$LAMBDALAB_BASE_IMAGE"
    ;;
  *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
