#!/usr/bin/env bash
# Synapse (the Matrix homeserver, PyPI matrix-synapse, installed by .ci/setup.d/synapse.sh into
# tests/servers/synapse/.venv) on 127.0.0.1 the way larger deployments run it: a main process
# and a sync worker sharing one database (SQLite here: one machine, a test) and replicating
# over Redis. Ports are given (Synapse cannot report a port 0 it bound).
#   bash tests/servers/synapse/start.sh main DIR CLIENT_PORT REPLICATION_PORT REDIS_PORT
#   bash tests/servers/synapse/start.sh worker DIR CLIENT_PORT     (after main, same DIR)
# main writes DIR/homeserver.yaml (server name `canary.test`, registration open without
# verification, rate limits raised for the tests' quick runs, no federation, no key servers).
# Prints `ready synapse-ROLE http://127.0.0.1:PORT` once /health answers.
set -euo pipefail
usage="usage: start.sh main DIR CLIENT_PORT REPLICATION_PORT REDIS_PORT | worker DIR CLIENT_PORT"
role=${1:?$usage}
dir=${2:?$usage}
port=${3:?$usage}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib.sh"
require curl curl
python=$here/.venv/bin/python
[ -x "$python" ] || {
  echo "synapse not installed in $here/.venv: run 'bash .ci/setup.d/synapse.sh' (or 'bash .ci/run')" >&2
  exit 127
}
mkdir -p "$dir"
log_config=$dir/log.yaml
case $role in
main)
  replication=${4:?$usage}
  redis=${5:?$usage}
  secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
  cat >"$log_config" <<CONF
version: 1
formatters:
  plain: {format: '%(asctime)s %(name)s %(levelname)s %(message)s'}
handlers:
  console: {class: logging.StreamHandler, formatter: plain}
root: {level: WARNING, handlers: [console]}
disable_existing_loggers: false
CONF
  # The server's signing key (Synapse's own library for it, signedjson).
  "$python" -c "import sys; from signedjson.key import generate_signing_key, write_signing_keys; \
write_signing_keys(open(sys.argv[1], 'w'), [generate_signing_key('a_test')])" "$dir/canary.test.signing.key"
  cat >"$dir/homeserver.yaml" <<CONF
server_name: canary.test
pid_file: $dir/main.pid
listeners:
  - {port: $port, bind_addresses: [127.0.0.1], type: http, tls: false, resources: [{names: [client], compress: false}]}
  - {port: $replication, bind_addresses: [127.0.0.1], type: http, tls: false, resources: [{names: [replication]}]}
database: {name: sqlite3, args: {database: $dir/homeserver.db}}
log_config: $log_config
media_store_path: $dir/media
signing_key_path: $dir/canary.test.signing.key
report_stats: false
macaroon_secret_key: "$(secret)"
form_secret: "$(secret)"
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []
enable_registration: true
enable_registration_without_verification: true
# The tests log in several times a second; Synapse's defaults allow a burst of 5 per account.
rc_login:
  address: {per_second: 1000, burst_count: 1000}
  account: {per_second: 1000, burst_count: 1000}
  failed_attempts: {per_second: 1000, burst_count: 1000}
rc_registration: {per_second: 1000, burst_count: 1000}
rc_message: {per_second: 1000, burst_count: 1000}
rc_joins:
  local: {per_second: 1000, burst_count: 1000}
# Replication between the main process and the worker goes over Redis (and HTTP to main's
# replication listener for writes).
redis: {enabled: true, host: 127.0.0.1, port: $redis}
instance_map:
  main: {host: 127.0.0.1, port: $replication}
CONF
  cd "$dir"
  "$python" -m synapse.app.homeserver -c "$dir/homeserver.yaml" &
  ;;
worker)
  [ -f "$dir/homeserver.yaml" ] || { echo "start main first: no $dir/homeserver.yaml" >&2; exit 2; }
  cat >"$dir/worker.yaml" <<CONF
worker_app: synapse.app.generic_worker
worker_name: sync1
worker_listeners:
  - {type: http, port: $port, bind_addresses: [127.0.0.1], resources: [{names: [client]}]}
worker_log_config: $log_config
CONF
  cd "$dir"
  "$python" -m synapse.app.generic_worker -c "$dir/homeserver.yaml" -c "$dir/worker.yaml" &
  ;;
*)
  echo "$usage" >&2
  exit 2
  ;;
esac
pid=$!
health() { curl -sf --max-time 1 -o /dev/null "http://127.0.0.1:$port/health"; }
serve "$pid" "ready synapse-$role http://127.0.0.1:$port" 50 health
