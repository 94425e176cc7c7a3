#!/usr/bin/env bash
# Debian's nextcloud-spreed-signaling (the Nextcloud Talk "high-performance backend") on
# 127.0.0.1, as the current user, its config generated into DIR:
#   bash tests/servers/nextcloud/start.sh PORT DIR NEXTCLOUD_URL SECRET NATS_URL
# NEXTCLOUD_URL is the Nextcloud it validates hellos and room joins against (backend.js here),
# SECRET the shared secret both sides sign backend requests with, NATS_URL its pub/sub bus
# (a nats-server, or `:loopback:` for the in-process bus).
# Websocket: ws://127.0.0.1:PORT/spreed. Prints `ready spreed ws://127.0.0.1:PORT/spreed` once
# /api/v1/welcome answers.
set -euo pipefail
usage="usage: start.sh PORT DIR NEXTCLOUD_URL SECRET NATS_URL"
port=${1:?$usage}
dir=${2:?$usage}
nextcloud=${3:?$usage}
secret=${4:?$usage}
nats=${5:?$usage}
source "$(dirname "$0")/../lib.sh"
require nextcloud-spreed-signaling-server nextcloud-spreed-signaling
require curl curl
mkdir -p "$dir"
cat > "$dir/server.conf" <<CONF
[http]
listen = 127.0.0.1:$port

[app]
debug = false

[sessions]
hashkey = $(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
blockkey = $(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')

[clients]
internalsecret = $(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')

[backend]
backends = nextcloud
allowall = false
# The test Nextcloud speaks plain HTTP on loopback.
allowhttp = true
timeout = 5
connectionsperhost = 8

[nextcloud]
url = $nextcloud
secret = $secret

[nats]
url = $nats

[mcu]
type =

[geoip]
url = none
CONF
chmod 600 "$dir/server.conf"
nextcloud-spreed-signaling-server --config "$dir/server.conf" &
pid=$!
welcome() { curl -sf --max-time 1 -o /dev/null "http://127.0.0.1:$port/api/v1/welcome"; }
serve "$pid" "ready spreed ws://127.0.0.1:$port/spreed" 30 welcome
