#!/usr/bin/env bash
# Prosody (XMPP, Jitsi's signalling) on 127.0.0.1, as the current user, everything in DIR:
#   bash tests/servers/prosody/start.sh C2S_PORT HTTP_PORT DIR
# Hosts: localhost (SASL PLAIN, user alice / canary-pass), guest.localhost (anonymous),
# conference.localhost (MUC; rooms named forbidden* cannot be created). And Jitsi Meet's layout
# under meet.jitsi (docker-jitsi-meet's default domain): meet.jitsi and guest.meet.jitsi
# (anonymous), conference.meet.jitsi (MUC), focus.meet.jitsi (a stand-in for jicofo that answers
# conference requests ready='true'; rooms named nofocus* get service-unavailable).
# WebSocket (RFC 7395): ws://127.0.0.1:HTTP_PORT/xmpp-websocket.
# Prints `ready prosody ws://127.0.0.1:HTTP_PORT/xmpp-websocket c2s=C2S_PORT` when it answers.
set -euo pipefail
c2s=${1:?usage: start.sh C2S_PORT HTTP_PORT DIR}
http=${2:?usage: start.sh C2S_PORT HTTP_PORT DIR}
dir=${3:?usage: start.sh C2S_PORT HTTP_PORT DIR}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib.sh"
require prosody prosody
require curl curl
mkdir -p "$dir/data/localhost/accounts" "$dir/certs"
# internal_plain's account store, written directly: prosodyctl would switch to the prosody user.
printf 'return {\n\t["password"] = "canary-pass";\n};\n' > "$dir/data/localhost/accounts/alice.dat"
cat > "$dir/prosody.cfg.lua" <<CFG
run_as_root = true
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
certificates = "$dir/certs"
plugin_paths = { "$here/plugins" }
log = { { levels = { min = "info" }, to = "console" } }
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { $c2s }
c2s_interfaces = { "127.0.0.1" }
s2s_ports = { }
http_ports = { $http }
http_interfaces = { "127.0.0.1" }
https_ports = { }
https_interfaces = { }
component_ports = { }
modules_enabled = { "roster", "saslauth", "disco", "ping", "websocket" }
modules_disabled = { "s2s", "tls", "offline", "c2s_bosh" }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
consider_websocket_secure = true
storage = "internal"
authentication = "internal_plain"
statistics = nil

VirtualHost "localhost"
  authentication = "internal_plain"

VirtualHost "guest.localhost"
  authentication = "anonymous"

Component "conference.localhost" "muc"
  modules_enabled = { "canary_rooms" }
  muc_room_locking = false
  muc_room_default_public = true

VirtualHost "meet.jitsi"
  authentication = "anonymous"

VirtualHost "guest.meet.jitsi"
  authentication = "anonymous"

Component "conference.meet.jitsi" "muc"
  modules_enabled = { "canary_rooms" }
  muc_room_locking = false
  muc_room_default_public = true

Component "focus.meet.jitsi" "canary_focus"
CFG
prosody --config "$dir/prosody.cfg.lua" -F &
pid=$!
serve "$pid" "ready prosody ws://127.0.0.1:$http/xmpp-websocket c2s=$c2s" 30 answers "http://127.0.0.1:$http/xmpp-websocket"
