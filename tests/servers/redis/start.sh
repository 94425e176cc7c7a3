#!/usr/bin/env bash
# A throw-away redis-server on 127.0.0.1: no persistence, data dir DIR.
#   bash tests/servers/redis/start.sh PORT DIR
# Prints `ready redis 127.0.0.1:PORT` once it answers PING; exits when killed (or when Redis does).
set -euo pipefail
port=${1:?usage: start.sh PORT DIR}
dir=${2:?usage: start.sh PORT DIR}
for bin in redis-server redis-cli; do
  command -v "$bin" >/dev/null || { echo "$bin not found: run 'bash .ci/run' (installs redis-server, redis-tools)" >&2; exit 127; }
done
mkdir -p "$dir"
# Stop Redis with us; a test kills the whole process group anyway.
trap 'kill "$pid" 2>/dev/null; exit 0' TERM INT
redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save '' --appendonly no \
  --protected-mode yes --daemonize no --logfile '' --databases 1 --loglevel warning &
pid=$!
for _ in $(seq 100); do
  if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; then
    echo "ready redis 127.0.0.1:$port"
    wait "$pid"
    exit $?
  fi
  kill -0 "$pid" 2>/dev/null || { wait "$pid"; exit $?; }
  sleep 0.05
done
echo "redis on port $port did not answer PING in 5 s" >&2
exit 1
