#!/usr/bin/env bash
# ejabberd (a second XMPP server beside Prosody: RFC 7395 websocket, MUC) on 127.0.0.1, as the
# current user, everything in DIR:
#   bash tests/servers/ejabberd/start.sh HTTP_PORT DIR
# Hosts: localhost (SASL PLAIN through extauth.py: user alice / canary-pass), guest.localhost
# (anonymous); MUC conference.localhost (anyone may create rooms) and conference.guest.localhost
# (nobody may: room creation refused by service policy).
# Runs the Erlang VM directly, without distribution: no epmd, no node name, nothing listening
# but the websocket on 127.0.0.1 (ejabberdctl would start epmd on every interface).
# WebSocket: ws://127.0.0.1:HTTP_PORT/xmpp-websocket.
# Prints `ready ejabberd ws://127.0.0.1:HTTP_PORT/xmpp-websocket` when it answers.
set -euo pipefail
http=${1:?usage: start.sh HTTP_PORT DIR}
dir=${2:?usage: start.sh HTTP_PORT DIR}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib.sh"
require erl ejabberd
require curl curl
# Debian's ejabberd keeps its Erlang applications here (ejabberdctl's ERL_LIBS).
libs=/usr/lib/x86_64-linux-gnu
ls -d "$libs"/ejabberd-* >/dev/null 2>&1 || libs=$(dirname "$(dirname "$(find /usr/lib -name ejabberd.beam -print -quit)")")
[ -n "$libs" ] || { echo "ejabberd's Erlang applications not found: run 'bash .ci/run' (installs ejabberd)" >&2; exit 127; }
mkdir -p "$dir/spool" "$dir/logs"
cat > "$dir/ejabberd.yml" <<CFG
hosts:
  - localhost
  - guest.localhost
loglevel: info
certfiles: []
log_rotate_count: 0
listen:
  -
    port: $http
    ip: "127.0.0.1"
    module: ejabberd_http
    request_handlers:
      /xmpp-websocket: ejabberd_http_ws
acl:
  nobody:
    user: "no-such-user-ever"
access_rules:
  c2s:
    allow: all
  create_rooms:
    allow: all
  no_rooms:
    allow: nobody
auth_method: external
extauth_program: "/usr/bin/python3 $here/extauth.py"
host_config:
  guest.localhost:
    auth_method: anonymous
    anonymous_protocol: sasl_anon
    modules:
      mod_disco: {}
      mod_ping: {}
      mod_muc:
        access_create: no_rooms
        default_room_options:
          mam: false
modules:
  mod_disco: {}
  mod_ping: {}
  mod_muc:
    access_create: create_rooms
    default_room_options:
      mam: false
CFG
cd "$dir"
ERL_LIBS=$libs EJABBERD_CONFIG_PATH="$dir/ejabberd.yml" EJABBERD_LOG_PATH="$dir/logs/ejabberd.log" \
  ERL_CRASH_DUMP_BYTES=0 erl -noinput -mnesia dir "\"$dir/spool\"" -s ejabberd > "$dir/logs/console.log" 2>&1 &
pid=$!
# ejabberd logs a failure to start as critical, its reason on the lines after it, and the VM
# halts: say why on the way out, a port taken meanwhile in the words the test helper retries on.
trap 'rc=$?
  if [ "$rc" != 0 ] && grep -q "eaddrinuse" "$dir/logs/console.log" 2>/dev/null; then
    echo "ejabberd: port $http: address in use" >&2
  elif [ "$rc" != 0 ]; then
    grep -A8 "\[critical\]" "$dir/logs/console.log" >&2 || true
  fi' EXIT
serve "$pid" "ready ejabberd ws://127.0.0.1:$http/xmpp-websocket" 100 answers "http://127.0.0.1:$http/xmpp-websocket"
