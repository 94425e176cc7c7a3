#!/usr/bin/env bash
# A throw-away redis-server on 127.0.0.1: no persistence, data dir DIR; further arguments go to
# redis-server (the TLS fixture adds --tls-port and its certificate files; PORT stays plain).
#   bash tests/servers/redis/start.sh PORT DIR [REDIS-SERVER ARGS...]
# Prints `ready redis 127.0.0.1:PORT` once it answers PING; exits when killed (or when Redis does).
set -euo pipefail
port=${1:?usage: start.sh PORT DIR}
dir=${2:?usage: start.sh PORT DIR}
shift 2
source "$(dirname "$0")/../lib.sh"
require redis-server redis-server
require redis-cli redis-tools
mkdir -p "$dir"
redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save '' --appendonly no \
  --protected-mode yes --daemonize no --logfile '' --databases 1 --loglevel warning \
  --enable-debug-command local "$@" &
pid=$!
pong() { [ "$(redis-cli -h 127.0.0.1 -p "$port" ping)" = PONG ]; }
serve "$pid" "ready redis 127.0.0.1:$port" 20 pong
