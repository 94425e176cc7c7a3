#!/usr/bin/env bash
# Rails ActionCable (Debian ruby-actioncable on puma) with the Redis subscription adapter:
#   bash tests/servers/actioncable/start.sh PORT REDIS_URL
# Prints `ready actioncable http://127.0.0.1:PORT` once /healthz answers; exits when killed.
set -euo pipefail
port=${1:?usage: start.sh PORT REDIS_URL}
redis=${2:?usage: start.sh PORT REDIS_URL}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib.sh"
require puma puma ruby-actioncable ruby-redis
require curl curl
REDIS_URL=$redis puma --bind "tcp://127.0.0.1:$port" --threads 1:4 --environment production --quiet "$here/config.ru" &
pid=$!
serve "$pid" "ready actioncable http://127.0.0.1:$port" 60 curl -sf --max-time 1 "http://127.0.0.1:$port/healthz"
