#!/usr/bin/env bash
# A throw-away nats-server (the pub/sub bus of the Nextcloud Talk signalling server) on 127.0.0.1,
# no clustering, no monitoring port:
#   bash tests/servers/nats/start.sh PORT
# Prints `ready nats nats://127.0.0.1:PORT` once the port answers; exits when killed (or when
# nats-server does).
set -euo pipefail
port=${1:?usage: start.sh PORT}
source "$(dirname "$0")/../lib.sh"
require nats-server nats-server
nats-server --addr 127.0.0.1 --port "$port" &
pid=$!
# The client port speaks first (INFO {...}): any byte back means it listens.
listens() { (exec 3<>"/dev/tcp/127.0.0.1/$port" && read -r -t 1 -u 3 greeting && [[ $greeting == INFO* ]]); }
serve "$pid" "ready nats nats://127.0.0.1:$port" 30 listens
