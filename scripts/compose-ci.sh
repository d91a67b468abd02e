#!/usr/bin/env bash
# docker-compose.yml run for real on a machine with no container registry: `make compose-test` / `compose-clean`.
#
#   scripts/compose-ci.sh test     engine, compose, images (each only if missing), then tests/compose (pytest)
#   scripts/compose-ci.sh prepare  everything but the test
#   scripts/compose-ci.sh clean    remove the images this script and the test built (caches outside the clone stay)
#
# What it builds and keeps, outside the clone, keyed by version (REVIEWS_DOCKER_CACHE, default
# ~/.cache/reviews-mtl/docker):
#   compose-<version>/docker-compose    Compose v2 built from the Go module proxy, installed as a CLI plugin
#   debian-<suite>-<key>.tar            a minbase Debian from the apt mirror this machine uses, with this
#                                       machine's extra CA certificates (outbound TLS may be intercepted)
# and, in the engine's image store, labelled dev.reviews-mtl.ci=1:
#   reviews-mtl-ci/debian:<suite>       that tarball, imported
#   python:3.11-slim-bookworm           stand-in: Debian's Python 3.11 in a venv on PATH (Dockerfile.worker's FROM)
#   reviews-mtl-ci/redis, /prometheus   stand-ins from Debian's redis-server and prometheus
#   reviews-mtl-ci/kafka:<version>      Apache Kafka from the same pinned Maven Central jars the tests use
# Their Dockerfiles and tests/compose/docker-compose.ci.yml (the only substitutions of the real file) are in
# tests/compose/.
#
# Where no Docker engine can run (not root, no apt, not Linux, dockerd will not start) it says why in one line
# and exits 0 ("compose-test skipped: ..."), except under CI=true, where that is a failure (exit 1).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${REVIEWS_DOCKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/reviews-mtl/docker}
COMPOSE_VERSION=v2.40.3
SUITE=bookworm
KAFKA_VERSION=4.1.1
LABEL=dev.reviews-mtl.ci
IMAGES=$ROOT/tests/compose/images
PY=${PY:-$ROOT/.venv/bin/python}

say() { echo "compose-ci: $*" >&2; }
cannot_run() {
  if [ "${CI:-}" = true ]; then say "FAILED: $*"; exit 1; fi
  echo "compose-test skipped: $*" >&2
  exit 0
}
elapsed() { echo "$(( $(date +%s) - $1 ))s"; }

# --- the engine ------------------------------------------------------------------------------------------------
STARTED_DOCKERD=""

engine() {
  if docker info >/dev/null 2>&1; then return 0; fi
  [ "$(uname -s)" = Linux ] || cannot_run "no Docker engine answers (start Docker Desktop to run the compose test)"
  if [ "$(id -u)" != 0 ]; then
    cannot_run "no Docker engine answers and starting one needs root (or start your engine, add yourself to group docker)"
  fi
  if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || cannot_run "no Docker engine and no apt-get to install Debian's docker.io"
    say "installing Debian's docker.io engine"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      docker.io containerd runc iptables >/dev/null || cannot_run "apt-get could not install docker.io"
  fi
  mkdir -p "$CACHE"
  say "starting dockerd (log $CACHE/dockerd.log)"
  nohup dockerd >"$CACHE/dockerd.log" 2>&1 &
  STARTED_DOCKERD=$!
  echo "$STARTED_DOCKERD" >"$CACHE/dockerd.pid"
  for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$STARTED_DOCKERD" 2>/dev/null; then
      cannot_run "dockerd exited at start: $(tail -n 3 "$CACHE/dockerd.log" | tr '\n' ' ')"
    fi
    sleep 0.5
  done
  cannot_run "dockerd did not answer within 30 s: $(tail -n 3 "$CACHE/dockerd.log" | tr '\n' ' ')"
}

stop_engine_if_started() {
  [ -n "$STARTED_DOCKERD" ] || return 0
  say "stopping the dockerd this run started (pid $STARTED_DOCKERD)"
  kill "$STARTED_DOCKERD" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$STARTED_DOCKERD" 2>/dev/null || break; sleep 0.5; done
  rm -f "$CACHE/dockerd.pid"
  STARTED_DOCKERD=""
}

# --- compose v2 --------------------------------------------------------------------------------------------------
compose_plugin() {
  local have plugin=$HOME/.docker/cli-plugins/docker-compose built=$CACHE/compose-$COMPOSE_VERSION/docker-compose
  have=$(docker compose version --short 2>/dev/null || true)
  # !reset in the CI override needs 2.24+; a newer compose already installed (Docker Desktop) is kept.
  if [[ $have =~ ^v?2\.([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -ge 24 ]; then return 0; fi
  if [ ! -x "$built" ]; then
    command -v go >/dev/null 2>&1 || cannot_run "compose v2 is not installed and there is no go to build it"
    local started dir
    started=$(date +%s)
    say "building docker compose $COMPOSE_VERSION from the Go module proxy (a few minutes on 2 cores)"
    # `go install …@version` refuses the module's exclude directives: download it and build inside it.
    dir=$(go mod download -json "github.com/docker/compose/v2@$COMPOSE_VERSION" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    mkdir -p "$(dirname "$built")"
    (cd "$dir" && nice -n 10 go build -trimpath \
      -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" \
      -o "$built.partial" ./cmd)
    mv "$built.partial" "$built"
    say "compose built in $(elapsed "$started")"
  fi
  mkdir -p "$(dirname "$plugin")"
  install -m 0755 "$built" "$plugin"
}

# --- the Debian base ---------------------------------------------------------------------------------------------
apt_sources() {
  # The mirror lists apt uses here (deb822 .sources or one-line .list files).
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -s "$f" ] && grep -qE '^[^#]*(deb |URIs:)' "$f" && echo "$f"
  done
  return 0
}

base_key() {
  # Changes when the recipe, the mirrors or the certificates change.
  { echo "minbase ca-certificates $SUITE recipe-1"; cat $(apt_sources); cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true; } \
    | sha256sum | cut -c1-12
}

base_image() {
  local key tar image=reviews-mtl-ci/debian:$SUITE
  key=$(base_key)
  if [ "$(docker image inspect -f "{{ index .Config.Labels \"$LABEL.key\" }}" "$image" 2>/dev/null)" = "$key" ]; then
    return 0
  fi
  tar=$CACHE/debian-$SUITE-$key.tar
  if [ ! -f "$tar" ]; then
    command -v mmdebstrap >/dev/null 2>&1 || {
      [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || cannot_run "mmdebstrap is missing (apt-get install mmdebstrap)"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
    }
    local started hooks=() crt
    started=$(date +%s)
    for crt in /usr/local/share/ca-certificates/*.crt; do
      [ -e "$crt" ] && hooks+=(--customize-hook="copy-in $crt /usr/local/share/ca-certificates/")
    done
    say "building the $SUITE base with mmdebstrap from $(apt_sources | tr '\n' ' ')(about 2 min)"
    mkdir -p "$CACHE"
    # shellcheck disable=SC2046
    nice -n 10 mmdebstrap --quiet --variant=minbase --include=ca-certificates \
      --aptopt='APT::Install-Recommends "false"' --dpkgopt='path-exclude=/usr/share/doc/*' \
      "${hooks[@]}" --customize-hook='chroot "$1" update-ca-certificates --fresh >/dev/null' \
      "$SUITE" "$tar.partial.tar" $(apt_sources)  # mmdebstrap picks the format from the extension
    mv "$tar.partial.tar" "$tar"
    say "base built in $(elapsed "$started") ($(du -h "$tar" | cut -f1))"
  fi
  docker import --change "LABEL $LABEL=1 $LABEL.key=$key" --change 'CMD ["/bin/bash"]' "$tar" "$image" >/dev/null
}

# --- stand-in images ---------------------------------------------------------------------------------------------
build() {  # build TAG CONTEXT (the legacy builder: `docker build` with BuildKit needs buildx, which Debian lacks)
  local started log
  started=$(date +%s)
  mkdir -p "$CACHE/logs"
  log=$CACHE/logs/build-${1//[\/:]/_}.log
  if ! DOCKER_BUILDKIT=0 nice -n 10 docker build --label "$LABEL=1" -t "$1" "$2" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    say "building $1 failed (log $log)"
    return 1
  fi
  say "image $1 ready ($(elapsed "$started"))"
}

stand_ins() {
  build python:3.11-slim-bookworm "$IMAGES/python"
  build reviews-mtl-ci/redis:7.0-$SUITE "$IMAGES/redis"
  build reviews-mtl-ci/prometheus:2.42-$SUITE "$IMAGES/prometheus"
  # Kafka's context: the Dockerfile and launcher, plus the pinned jars from the tests' cache (hard links).
  local libs ctx
  libs=$("$PY" -m reviews_mtl.stack.apache_kafka fetch --version "$KAFKA_VERSION" 2>/dev/null | tail -n 1)
  ctx=$(mktemp -d)
  cp -r "$IMAGES/kafka/." "$ctx/"
  cp "$ROOT/reviews_mtl/stack/kafka_log4j2.properties" "$ctx/log4j2.properties"
  mkdir "$ctx/libs"
  cp -l "$libs"/*.jar "$ctx/libs/" 2>/dev/null || cp "$libs"/*.jar "$ctx/libs/"
  build "reviews-mtl-ci/kafka:$KAFKA_VERSION" "$ctx" || { rm -rf "$ctx"; return 1; }
  rm -rf "$ctx"
}

prepare() {
  local started
  started=$(date +%s)
  engine
  compose_plugin
  base_image
  stand_ins
  say "prepared in $(elapsed "$started")"
}

clean() {
  engine
  local project=reviews-mtl-ci refs base=reviews-mtl-ci/debian:$SUITE
  docker compose -p "$project" -f "$ROOT/docker-compose.yml" -f "$ROOT/tests/compose/docker-compose.ci.yml" \
    down --volumes --remove-orphans >/dev/null 2>&1 || true
  # By name, the images built on the base first (stand-ins, and the worker image the test built), then the base.
  refs=$( { docker images --filter "label=$LABEL=1" --format '{{.Repository}}:{{.Tag}}'
            docker images --filter "label=com.docker.compose.project=$project" --format '{{.Repository}}:{{.Tag}}'
            docker images reviews-mtl-worker --format '{{.Repository}}:{{.Tag}}'; } | { grep -vx -e "$base" -e '<none>:<none>' || true; } | sort -u)
  if [ -n "$refs" ]; then
    # shellcheck disable=SC2086
    docker rmi $refs >/dev/null
  fi
  docker image prune -f >/dev/null
  if docker image inspect "$base" >/dev/null 2>&1; then docker rmi "$base" >/dev/null; fi
  docker builder prune -f >/dev/null 2>&1 || true
  say "removed the compose test's images (caches in $CACHE kept: rm -rf it to drop them)"
  stop_engine_if_started
}

case "${1:-}" in
  prepare) prepare ;;
  test)
    trap stop_engine_if_started EXIT
    prepare
    started=$(date +%s)
    REVIEWS_COMPOSE_TEST=1 "$PY" -m pytest "$ROOT/tests/compose" -q -rs -s --durations=0 -p no:cacheprovider
    say "compose test took $(elapsed "$started")"
    ;;
  clean)
    trap stop_engine_if_started EXIT
    clean
    ;;
  *) echo "usage: $0 prepare|test|clean" >&2; exit 2 ;;
esac
