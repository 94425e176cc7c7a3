# Shared by the start scripts (sourced): wait for readiness, print the ready line, then stay until
# the server exits, or stop it when our parent is gone (a test killed before its handle dropped,
# e.g. by Ctrl-C: the server runs in its own process group, so the terminal's signal misses it).

# serve PID READY_LINE SECONDS CHECK_COMMAND...
serve() {
  local pid=$1 line=$2 secs=$3
  shift 3
  local parent=$PPID i
  trap 'kill "$pid" 2>/dev/null; exit 0' TERM INT
  for ((i = 0; i < secs * 20; i++)); do
    if "$@" >/dev/null 2>&1; then
      echo "$line"
      while kill -0 "$pid" 2>/dev/null; do
        if ! kill -0 "$parent" 2>/dev/null; then
          kill "$pid" 2>/dev/null
          wait "$pid"
          exit 0
        fi
        sleep 0.5
      done
      wait "$pid"
      exit $?
    fi
    kill -0 "$pid" 2>/dev/null || { wait "$pid"; exit $?; }
    sleep 0.05
  done
  echo "not ready within ${secs} s (check: $*)" >&2
  kill "$pid" 2>/dev/null
  exit 1
}

# Any HTTP answer, even an empty reply (curl's 52), means the port listens.
answers() {
  local rc=0
  curl -s -o /dev/null --max-time 1 "$1" || rc=$?
  [ "$rc" = 0 ] || [ "$rc" = 52 ]
}

# require PROGRAM PACKAGE...: fail with the way to install it.
require() {
  local program=$1
  shift
  command -v "$program" >/dev/null || {
    echo "$program not found: run 'bash .ci/run' (installs the Debian package(s) $*)" >&2
    exit 127
  }
}
