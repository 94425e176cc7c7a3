#!/usr/bin/env bash
# How soon `run` serves a listener certificate renewed on disk (cert-manager rewriting a mounted
# Secret), with the default --config.watch-interval (5s): the time from the new key and
# certificate landing (each renamed into place) to `joincanary healthcheck`, which trusts exactly
# the certificate in the web config's cert_file, passing. Rounds start at arbitrary points of the
# watch interval, so the figure lies between the look's cost and the interval.
#   [JOINCANARY_BIN=…] bash bench/cert-rotation.sh [ROUNDS]
# Needs openssl (the CLI); 127.0.0.1 only; stops what it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
bin=${JOINCANARY_BIN:-target/release/joincanary}
[ -x "$bin" ] || cargo build --release --quiet
command -v openssl >/dev/null || { echo "openssl (the CLI) is needed" >&2; exit 1; }
d=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$d"' EXIT
mkdir -p "$d/probes"
printf 'schedule = "0 0 1 1 *"\n[[steps]]\nname = "a"\nkind = "http"\nurl = "http://127.0.0.1:9/"\n' >"$d/probes/idle.toml"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'region = "bench"\nprobes = ["probes"]\nlisten = "127.0.0.1:%s"\nstate_dir = "state"\n' "$port" >"$d/joincanary.toml"
renew() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=prober \
    -addext subjectAltName=DNS:prober -keyout "$d/k.tmp" -out "$d/c.tmp" 2>/dev/null
  mv "$d/k.tmp" "$d/server.key"
  mv "$d/c.tmp" "$d/server.crt"
}
renew
printf 'tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n' >"$d/web.yml"
export JOINCANARY_LISTEN=127.0.0.1:$port JOINCANARY_WEB_CONFIG_FILE=$d/web.yml
"$bin" run --config "$d/joincanary.toml" 2>"$d/log" &
pid=$!
healthy_within() { # polls 50 ms apart, at most $1 tries; the time it took
  local t0 t1
  t0=$(date +%s.%N)
  for _ in $(seq "$1"); do "$bin" healthcheck >/dev/null 2>&1 && break; sleep 0.05; done
  t1=$(date +%s.%N)
  "$bin" healthcheck >/dev/null 2>&1 || { echo "not healthy: see $d/log" >&2; return 1; }
  python3 -c "print(f'{$t1 - $t0:.1f}')"
}
healthy_within 200 >/dev/null
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$rounds"); do
  sleep "0.$((RANDOM % 10))$((RANDOM % 10))"
  renew
  echo "round $r: renewed certificate served after $(healthy_within 400) s"
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
