#!/usr/bin/env bash
# The listener abuse of issue 9 against `joincanary run` under a 1024 open-files limit (soft and
# hard, so it cannot raise it): 500 slowloris connections (how long until each is closed), then
# 1,100 idle connections held for 40 s and re-opened as they are closed, while the shipped probe
# runs every second against the reference server and a webhook pager on 127.0.0.1 counts pages.
# Talks only to 127.0.0.1; stops what it started. Usage: bash bench/listener-flood.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v prlimit >/dev/null || { echo "needs prlimit (util-linux)" >&2; exit 2; }
BIN=${BIN:-target/debug/joincanary}
[ -x "$BIN" ] || cargo build --quiet
exec python3 - "$BIN" <<'PY'
import http.server, os, re, resource, selectors, shutil, socket, subprocess, sys, tempfile, threading, time

binary = sys.argv[1]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
tmp = tempfile.mkdtemp(prefix="listener-flood-")
pages = []

class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        pages.append(self.path)
        self.send_response(202)
        self.end_headers()
    def log_message(self, *args):
        pass

hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
threading.Thread(target=hook.serve_forever, daemon=True).start()
sim = subprocess.Popen([binary, "sim", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
sim_url = sim.stdout.readline().split()[-1]
probe = open("probes/sim-join.toml").read()
probe = (probe.replace("${SIM_URL:-http://127.0.0.1:7480}", sim_url)
         .replace('timeout = "20s"', 'timeout = "900ms"\nschedule = "* * * * * *"')
         .replace('timeout = "5s"', 'timeout = "400ms"')
         .replace('timeout = "2s"', 'timeout = "200ms"'))
os.makedirs(f"{tmp}/probes")
open(f"{tmp}/probes/sim-join.toml", "w").write(probe)
open(f"{tmp}/joincanary.toml", "w").write(f'''region = "bench"
listen = "127.0.0.1:0"
probes = ["probes"]
state_dir = "state"
[alerting]
failure_threshold = 1
[[pager]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:{hook.server_address[1]}/hook"
''')
log_path = f"{tmp}/run.log"
log = open(log_path, "w")
run = subprocess.Popen(["prlimit", "--nofile=1024:1024", "--", binary, "--log.format", "logfmt",
                        "run", "--config", f"{tmp}/joincanary.toml"], stderr=log, stdout=subprocess.DEVNULL)

def lines():
    return open(log_path).read().splitlines()

addr = None
for _ in range(200):
    m = [re.search(r'listen=(\S+)', l) for l in lines() if 'msg="joincanary running"' in l]
    if m and m[0]:
        host, port = m[0].group(1).rsplit(":", 1)
        addr = (host, int(port))
        break
    time.sleep(0.05)
assert addr, "run never listened"
print([l for l in lines() if "file descriptor limits" in l][0])

def count(msg):
    return sum(1 for l in lines() if f'msg="{msg}"' in l)

# 1. Slowloris: half a request head each, then wait for the server to close.
t0 = time.monotonic()
slow = []
for _ in range(500):
    s = socket.create_connection(addr, timeout=5)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    s.setblocking(False)
    slow.append(s)
opened = time.monotonic() - t0
closed_at = {}
sel = selectors.DefaultSelector()
for s in slow:
    sel.register(s, selectors.EVENT_READ)
while len(closed_at) < len(slow) and time.monotonic() - t0 < 120:
    for key, _ in sel.select(1):
        s = key.fileobj
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        if not data:
            closed_at[s] = time.monotonic() - t0
            sel.unregister(s)
times = sorted(closed_at.values())
at_once = [t for t in times if t < 1]
timed_out = [t for t in times if t >= 1]
print(f"slowloris: 500 opened in {opened:.1f} s; {len(times)} closed by the server: "
      f"{len(at_once)} at once (past the cap), {len(timed_out)} by the header timeout "
      f"between {min(timed_out, default=0):.1f} and {max(timed_out, default=0):.1f} s after the first connect")
for s in slow:
    s.close()
sel.close()

# 2. Flood: hold 1,100 idle connections for 40 s, re-opening each one the server closes.
runs_ok, runs_failed = count("probe run succeeded"), count("probe run failed")
held, connects, refused = set(), 0, 0
sel = selectors.DefaultSelector()
t1 = time.monotonic()
while time.monotonic() - t1 < 40:
    while len(held) < 1100 and time.monotonic() - t1 < 40:
        try:
            s = socket.create_connection(addr, timeout=1)
            s.setblocking(False)
            held.add(s)
            sel.register(s, selectors.EVENT_READ)
            connects += 1
        except OSError:
            refused += 1
            break
    for key, _ in sel.select(0.2):
        s = key.fileobj
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        if not data:
            held.discard(s)
            sel.unregister(s)
            s.close()
ok = count("probe run succeeded") - runs_ok
failed = count("probe run failed") - runs_failed
for s in held:
    s.close()
sel.close()
time.sleep(1)
metrics = ""
import urllib.request
for _ in range(50):
    try:
        metrics = urllib.request.urlopen(f"http://{addr[0]}:{addr[1]}/metrics", timeout=2).read().decode()
        break
    except OSError:
        time.sleep(0.2)
def metric(name):
    m = re.search(rf"^{name}\{{[^}}]*\}} (\S+)$", metrics, re.M)
    return m.group(1) if m else "?"
print(f"flood: {connects} connections opened in 40 s ({refused} connect attempts failed), "
      f"probe runs meanwhile: {ok} passed, {failed} failed; "
      f"rejected_total {metric('joincanary_http_connections_rejected_total')}, "
      f"'Too many open files' in the log: {sum(1 for l in lines() if 'Too many open files' in l)}; "
      f"pages received: {len(pages)}")
run.terminate()
t2 = time.monotonic()
run.wait(timeout=30)
print(f"SIGTERM: exited {run.returncode} in {time.monotonic() - t2:.1f} s")
sim.terminate()
sim.wait(timeout=10)
hook.shutdown()
shutil.rmtree(tmp, ignore_errors=True)
PY
