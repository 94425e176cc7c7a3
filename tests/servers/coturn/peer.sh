#!/usr/bin/env bash
# coturn's UDP echo peer (turnutils_peer) on 127.0.0.1:PORT: what reaches it through a relay
# goes back the same way.
#   bash tests/servers/coturn/peer.sh PORT
# Prints `ready turn-peer 127.0.0.1:PORT` once the port is bound; exits when killed.
set -euo pipefail
port=${1:?usage: peer.sh PORT}
source "$(dirname "$0")/../lib.sh"
require turnutils_peer coturn
turnutils_peer -L 127.0.0.1 -p "$port" &
pid=$!
# Bound when /proc/net/udp lists 127.0.0.1:PORT (0100007F:hex).
bound() { grep -qi "0100007F:$(printf '%04X' "$port") " /proc/net/udp; }
serve "$pid" "ready turn-peer 127.0.0.1:$port" 20 bound
