#!/usr/bin/env bash
# Resident memory, CPU and schedule lag of `joincanary run` with 1 and 100 probes scheduled,
# against the reference server on loopback. Prints a table; a benchmark, not a test.
#
#   bash bench/service.sh            # 60 s per configuration
#   DURATION=30 bash bench/service.sh
#
# Every probe runs the full join flow every 5 seconds (so 100 probes = 20 joins/s). All traffic
# stays on 127.0.0.1 and stops when DURATION ends.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-60}
COUNTS=${COUNTS:-"1 100"}

cargo build --release --quiet
BIN=target/release/joincanary
WORK=$(mktemp -d)
cleanup() { kill "${SIM_PID:-}" "${RUN_PID:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

"$BIN" sim --listen 127.0.0.1:0 > "$WORK/sim.out" 2>/dev/null &
SIM_PID=$!
for _ in $(seq 50); do [ -s "$WORK/sim.out" ] && break; sleep 0.1; done
SIM_URL=$(head -1 "$WORK/sim.out" | sed 's/^listening on //')

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
clk_tck=$(getconf CLK_TCK)
printf '%-7s %-10s %-12s %-12s %-10s %-14s %-14s %-8s %-8s\n' probes seconds rss_start_MiB rss_max_MiB cpu_% lag_avg_ms lag_max_ms runs failed
for n in $COUNTS; do
  dir="$WORK/n$n"; mkdir -p "$dir/probes"
  port=$(free_port)
  cat > "$dir/joincanary.toml" <<TOML
region = "bench"
listen = "127.0.0.1:$port"
probes = ["probes"]
state_dir = "state"
[defaults]
schedule = "*/5 * * * * *"
timeout = "4s"
TOML
  for i in $(seq "$n"); do
    sed -e "s|\${SIM_URL:-http://127.0.0.1:7480}|$SIM_URL|" \
        -e "s|^name = \"sim-join\"|name = \"sim-join-$i\"|" \
        -e 's|^timeout = "20s"|timeout = "4s"|' \
        -e 's|timeout = "5s"|timeout = "1s"|' \
        probes/sim-join.toml > "$dir/probes/p$i.toml"
  done
  JOINCANARY_LOG=warn "$BIN" run --config "$dir/joincanary.toml" 2> "$dir/run.log" &
  RUN_PID=$!
  sleep 2
  rss_start=$(awk '/VmRSS/ {print $2}' /proc/$RUN_PID/status)
  t0=$(awk '{print $14+$15}' /proc/$RUN_PID/stat)
  rss_max=$rss_start
  lag_sum=0; lag_n=0; lag_max=0
  end=$((SECONDS + DURATION))
  while [ $SECONDS -lt $end ]; do
    sleep 1
    rss=$(awk '/VmRSS/ {print $2}' /proc/$RUN_PID/status)
    [ "$rss" -gt "$rss_max" ] && rss_max=$rss
  done
  t1=$(awk '{print $14+$15}' /proc/$RUN_PID/stat)
  metrics=$(curl -s "http://127.0.0.1:$port/metrics")
  kill -TERM $RUN_PID; wait $RUN_PID || true; RUN_PID=
  read -r lag_avg lag_max <<<"$(echo "$metrics" | awk '/^probe_schedule_lag_seconds\{/ {v=$NF*1000; s+=v; n++; if (v>m) m=v} END {if (n) printf "%.2f %.2f", s/n, m; else print "n/a n/a"}')"
  runs=$(echo "$metrics" | awk '/^probe_runs_total\{/ {s+=$NF} END {print s+0}')
  failed=$(echo "$metrics" | awk '/^probe_runs_total\{/ && /result="failure"/ {s+=$NF} END {print s+0}')
  cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$clk_tck" -v d="$DURATION" 'BEGIN {printf "%.2f", (b-a)/hz/d*100}')
  printf '%-7s %-10s %-12.1f %-12.1f %-10s %-14s %-14s %-8s %-8s\n' "$n" "$DURATION" "$(echo "$rss_start/1024" | bc -l)" "$(echo "$rss_max/1024" | bc -l)" "$cpu" "$lag_avg" "$lag_max" "$runs" "$failed"
done
echo "lag: how late each probe's last scheduled run started (probe_schedule_lag_seconds), averaged over probes"
