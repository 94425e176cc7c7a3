#!/usr/bin/env bash
# Rails ActionCable (Debian ruby-actioncable on puma) with the Redis subscription adapter:
#   bash tests/servers/actioncable/start.sh PORT REDIS_URL
# Prints `ready actioncable http://127.0.0.1:PORT` once /healthz answers; exits when killed.
set -euo pipefail
port=${1:?usage: start.sh PORT REDIS_URL}
redis=${2:?usage: start.sh PORT REDIS_URL}
here=$(cd "$(dirname "$0")" && pwd)
command -v puma >/dev/null || { echo "puma not found: run 'bash .ci/run' (installs the Debian packages puma, ruby-actioncable, ruby-redis)" >&2; exit 127; }
trap 'kill "$pid" 2>/dev/null; exit 0' TERM INT
REDIS_URL=$redis puma --bind "tcp://127.0.0.1:$port" --threads 1:4 --environment production --quiet "$here/config.ru" &
pid=$!
for _ in $(seq 300); do
  if curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$port/healthz"; then
    echo "ready actioncable http://127.0.0.1:$port"
    wait "$pid"
    exit $?
  fi
  kill -0 "$pid" 2>/dev/null || { wait "$pid"; exit $?; }
  sleep 0.05
done
echo "actioncable did not answer on port $port in 15 s" >&2
exit 1
