#!/usr/bin/env bash
# Janus (WebRTC gateway) on 127.0.0.1 with only the WebSocket transport, the echotest plugin and
# the videoroom plugin (one room, 1234, as Janus's own sample config has it), and the Admin API over WebSocket (secret `janusoverlord`, to list sessions), config and everything
# else in DIR:
#   bash tests/servers/janus/start.sh WS_PORT ADMIN_PORT DIR [full-trickle] [http=HTTP_PORT]
# `full-trickle`: Janus trickles its own candidates (`{"janus":"trickle"}` events, then
# `completed`) and its SDP carries none, as with `full_trickle = true` in production.
# `http=HTTP_PORT`: the HTTP transport too (janus.js's default: POST /janus, long-poll GET
# /janus/<session>), on 127.0.0.1:HTTP_PORT.
# `token-secret=SECRET`: signed-token authentication (`token_auth` with `token_auth_secret`):
# every request needs `token` = `<expiry>,janus,<plugin>[,…]:base64(HMAC-SHA1(SECRET, …))`.
# Prints `ready janus ws://127.0.0.1:WS_PORT/ admin=ws://127.0.0.1:ADMIN_PORT/` once the WebSocket
# port (and the HTTP one, if asked) accepts connections.
set -euo pipefail
port=${1:?usage: start.sh WS_PORT ADMIN_PORT DIR}
admin=${2:?usage: start.sh WS_PORT ADMIN_PORT DIR}
dir=${3:?usage: start.sh WS_PORT ADMIN_PORT DIR}
full_trickle=false
http=
token_auth=
for arg in "${@:4}"; do
  case $arg in
    full-trickle) full_trickle=true ;;
    http=*) http=${arg#http=} ;;
    token-secret=*) token_auth="token_auth = true
	token_auth_secret = \"${arg#token-secret=}\"" ;;
    *) echo "start.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done
source "$(dirname "$0")/../lib.sh"
require janus janus
require curl curl
lib=$(dirname "$(dpkg -L janus 2>/dev/null | grep -m1 '/janus/plugins/libjanus_echotest.so$')")/..
for plugin in echotest videoroom; do
  [ -f "$lib/plugins/libjanus_$plugin.so" ] || { echo "janus $plugin plugin not found under $lib" >&2; exit 127; }
done
# Folders holding only what the tests use: Janus loads every library it finds, and fewer start faster.
mkdir -p "$dir/conf" "$dir/plugins" "$dir/transports" "$dir/none"
ln -sf "$lib/plugins/libjanus_echotest.so" "$lib/plugins/libjanus_videoroom.so" "$dir/plugins/"
ln -sf "$lib/transports/libjanus_websockets.so" "$dir/transports/"
if [ -n "$http" ]; then
  [ -f "$lib/transports/libjanus_http.so" ] || { echo "janus http transport not found under $lib" >&2; exit 127; }
  ln -sf "$lib/transports/libjanus_http.so" "$dir/transports/"
  cat > "$dir/conf/janus.transport.http.jcfg" <<CFG
general: {
	base_path = "/janus"
	http = true
	port = $http
	ip = "127.0.0.1"
	https = false
}
admin: {
	admin_http = false
}
CFG
fi
cat > "$dir/conf/janus.jcfg" <<CFG
general: {
	configs_folder = "$dir/conf"
	plugins_folder = "$dir/plugins"
	transports_folder = "$dir/transports"
	events_folder = "$dir/none"
	loggers_folder = "$dir/none"
	debug_level = 4
	session_timeout = 60
	admin_secret = "janusoverlord"
	$token_auth
}
media: {
}
nat: {
	ice_enforce_list = "lo"
	full_trickle = $full_trickle
}
CFG
cat > "$dir/conf/janus.transport.websockets.jcfg" <<CFG
general: {
	ws = true
	ws_port = $port
	ws_ip = "127.0.0.1"
	wss = false
}
admin: {
	admin_ws = true
	admin_ws_port = $admin
	admin_ws_ip = "127.0.0.1"
	admin_wss = false
}
CFG
printf 'general: {\n}\n' > "$dir/conf/janus.plugin.echotest.jcfg"
# Room 1234 takes publishers of data channels as well as audio and video (the media tests publish
# a data channel and subscribe to it: tests/webrtc_room.rs, probes/examples/janus-videoroom-media.toml).
cat > "$dir/conf/janus.plugin.videoroom.jcfg" <<CFG
general: {
}
room-1234: {
	description = "joincanary"
	publishers = 16
}
CFG
janus --configs-folder "$dir/conf" --config "$dir/conf/janus.jcfg" --disable-colors &
pid=$!
# Janus's HTTP transport answers GET /janus/info (its server info) once it listens.
ready() {
  answers "http://127.0.0.1:$port/" && { [ -z "$http" ] || answers "http://127.0.0.1:$http/janus/info"; }
}
serve "$pid" "ready janus ws://127.0.0.1:$port/ admin=ws://127.0.0.1:$admin/" 30 ready
