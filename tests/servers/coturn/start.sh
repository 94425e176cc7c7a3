#!/usr/bin/env bash
# A throw-away coturn (turnserver) on 127.0.0.1: UDP and TCP on PORT, TLS on TLS_PORT (DIR/cert.pem,
# DIR/key.pem), relay ports MIN_PORT..MAX_PORT on 127.0.0.1 only, loopback peers allowed (the echo
# peer is on 127.0.0.1), the telnet CLI on CLI_PORT (password `clipw`: tests count sessions there),
# the log on stdout. Further arguments go to turnserver (credentials, quotas).
#   bash tests/servers/coturn/start.sh DIR PORT TLS_PORT CLI_PORT MIN_PORT MAX_PORT [ARGS...]
# Prints `ready coturn 127.0.0.1:PORT` once a STUN Binding is answered; exits when killed.
set -euo pipefail
dir=${1:?usage: start.sh DIR PORT TLS_PORT CLI_PORT MIN_PORT MAX_PORT [ARGS...]}
port=${2:?} tls_port=${3:?} cli_port=${4:?} min_port=${5:?} max_port=${6:?}
shift 6
source "$(dirname "$0")/../lib.sh"
require turnserver coturn
require turnutils_stunclient coturn
# -n: no config file (nothing from /etc/turnserver.conf); --userdb in DIR: the default database
# path is not writable for every user and would be shared between servers.
turnserver -n --listening-ip 127.0.0.1 --listening-port "$port" --tls-listening-port "$tls_port" \
  --relay-ip 127.0.0.1 --min-port "$min_port" --max-port "$max_port" \
  --allow-loopback-peers --no-dtls --no-multicast-peers \
  --cert "$dir/cert.pem" --pkey "$dir/key.pem" \
  --cli-ip 127.0.0.1 --cli-port "$cli_port" --cli-password clipw \
  --userdb "$dir/turndb" --pidfile "$dir/turnserver.pid" \
  --log-file stdout --simple-log --no-software-attribute "$@" &
pid=$!
binding() { timeout 1 turnutils_stunclient -p "$port" 127.0.0.1; }
serve "$pid" "ready coturn 127.0.0.1:$port" 30 binding
