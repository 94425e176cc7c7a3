#!/usr/bin/env bash
# Cost and accuracy side by side with Debian's prometheus-blackbox-exporter, in one run.
#   bash bench/cost.sh --quick      # ~4 minutes, before and after a change: CPU per HTTP probe and
#                                   # per join flow at 20/s beside blackbox, syscalls per flow,
#                                   # instructions and allocations per flow
#   bash bench/cost.sh [--sections binary,http,flow,syscalls,instructions,profile,resident,timing,
#                                  metrics,ceiling]
#                      [--rounds 3] [--window 20] [--json FILE]   # everything, one run
#   bash bench/cost.sh --quick --compare before=/tmp/jc-old,after=target/release/joincanary
# --compare NAME=BIN[,NAME=BIN...] measures several builds in the same run: in the http, flow and
# syscalls sections every round has one window of each build (their order rotating from round
# to round) beside blackbox's window, so the machine's load falls on all of them alike. Per build
# it prints each window (runs, failures, CPU-ms per probe or flow, the load it started at), the
# median, the ratio to blackbox (per round and median) and to the first build named (per round,
# median, and in how many rounds it was lower). The other sections and the reference server use
# the last build named. Without --compare: JOINCANARY_BIN, default target/release/joincanary.
# The http and flow sections also measure the same service with the probes configured but none
# due: its CPU per second is the fixed cost (timers, the alert tick, the config watch, a scrape
# every 15 s), printed as a share of each flow at that rate; and the http section the same flows
# at the same rate all started together each second (jitter 0), which shows what a flow pays for
# waking the probe thread alone (--no-idle skips both; --quick does).
# The watch section (not in the default list) is the idle service with --watch-probes (1,000)
# probe files, none due, the config watcher on (every 5 s) and off, per build:
#   bash bench/cost.sh --sections watch --rounds 3 --window 30 --compare before=BIN,after=BIN
# CPU is the process's CPU-time clock (ns); CPU figures are printed to two significant digits.
# Every joincanary window also splits its CPU and sleeps (voluntary context switches, each one
# wake-up) per run by thread: the probe thread(s), the service's main thread, the others.
# Context switches per flow come from `perf stat`, the profile section from `perf record` (the
# kernel / libc / joincanary shares of the service's CPU and the functions above 1 %). The
# instructions section runs each build under valgrind's callgrind for one window: user-space
# instructions and heap allocations per flow, counts the machine's load does not move, so a
# change of a few per cent that CPU windows (10-25 % apart) cannot resolve still shows.
# Prints figures (each with its load average); installs what it needs (strace too); loopback
# only; stops everything it starts.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
exec python3 bench/cost.py "$@"
