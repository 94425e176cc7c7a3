#!/usr/bin/env bash
# Peak RSS of joincanary against the hostile servers of issue 17, each on 127.0.0.1: a pager that
# answers `test-page` with a 400 MB error body, a Redis whose `INFO` reply is 200 MiB (a valid
# bulk string, so a prober without a cap passes the step), a fleet peer whose status is 4 MiB
# of empty probes (`run`, the status page asked for once, then SIGTERM), a status history of
# 60 MiB (one probe's hourly list of 1.3 million hours: `run` reads it at start, then as the
# peer case), and a websocket server sending endless empty continuation frames (`once`: the
# outcome and how long it took matter more than the memory). Each binary given is measured RUNS
# times per case (default 3) and the median peak RSS (the child's ru_maxrss, as /usr/bin/time -v
# reports it) printed with the outcome and the load average. Talks only to 127.0.0.1; stops what
# it started. Usage: bash bench/hostile-memory.sh [BINARY...]   (default target/release/joincanary)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
  [ -x target/release/joincanary ] || cargo build --release --quiet
  set -- target/release/joincanary
fi
exec python3 - "$@" <<'PY'
import os, socket, socketserver, statistics, subprocess, sys, tempfile, threading, time

RUNS = int(os.environ.get("RUNS", "3"))
PAGER_BODY = 400_000_000
INFO_BYTES = 200 << 20
CHUNK = b"x" * (256 * 1024)


def pour(sock, head, total, tail=b""):
    """head, then `total` bytes of filler, then tail; stops when the client hangs up."""
    try:
        sock.sendall(head)
        sent = 0
        while sent < total:
            n = min(len(CHUNK), total - sent)
            sock.sendall(CHUNK[:n])
            sent += n
        sock.sendall(tail)
    except OSError:
        pass


def read_head(sock):
    """Reads a request's head (at most 64 KiB); False when the client went away first."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        got = sock.recv(65536)
        if not got:
            return False
        data += got
    return True


class Pager(socketserver.BaseRequestHandler):
    def handle(self):
        if not read_head(self.request):
            return
        head = (f"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\n"
                f"content-length: {PAGER_BODY}\r\n\r\n").encode()
        pour(self.request, head, PAGER_BODY)


class Redis(socketserver.BaseRequestHandler):
    def handle(self):
        for _ in range(16):
            data = self.request.recv(65536)
            if not data:
                return
            found = []
            for key in (b"SETINFO", b"\r\nPING\r\n", b"\r\nINFO\r\n"):
                start = 0
                while (i := data.find(key, start)) >= 0:
                    found.append((i, key))
                    start = i + 1
            for _, key in sorted(found):
                if key == b"SETINFO":
                    self.request.sendall(b"+OK\r\n")
                elif key == b"\r\nPING\r\n":
                    self.request.sendall(b"+PONG\r\n")
                else:
                    pour(self.request, f"${INFO_BYTES}\r\n".encode(), INFO_BYTES, b"\r\n")
                    return


# One bytes object (no list of a million pieces: a forked child's peak RSS starts from this
# process's size).
PEER_DOC = (b'{"region":"evil","version":"1","probes":['
            + b"{}," * ((4 * 1024 * 1024 - 64) // 3) + b"{}]}")


class Peer(socketserver.BaseRequestHandler):
    """Answers any request with a status document just under the 4 MiB cap: `{}` probes."""
    def handle(self):
        if not read_head(self.request):
            return
        head = (f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                f"content-length: {len(PEER_DOC)}\r\nconnection: close\r\n\r\n").encode()
        try:
            self.request.sendall(head + PEER_DOC)
        except OSError:
            pass


class Frames(socketserver.BaseRequestHandler):
    """A websocket upgrade, then a text message begun and never ended: empty continuation
    frames (two bytes each) until the client hangs up or 2 GiB are written."""
    def handle(self):
        import base64, hashlib
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            got = self.request.recv(65536)
            if not got:
                return
            data += got
        key = b""
        for line in data.split(b"\r\n"):
            if line.lower().startswith(b"sec-websocket-key:"):
                key = line.split(b":", 1)[1].strip()
        accept = base64.b64encode(hashlib.sha1(
            key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
        head = (f"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
                f"connection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n").encode()
        try:
            self.request.sendall(head + b"\x01\x00")
            empty = b"\x00\x00" * (128 * 1024)
            for _ in range((2 << 30) // len(empty)):
                self.request.sendall(empty)
        except OSError:
            pass


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


servers = {}
for name, handler in (("pager", Pager), ("redis", Redis), ("peer", Peer), ("frames", Frames)):
    s = Server(("127.0.0.1", 0), handler)
    threading.Thread(target=s.serve_forever, daemon=True).start()
    servers[name] = s.server_address[1]

tmp = tempfile.mkdtemp(prefix="hostile-memory-")
os.makedirs(f"{tmp}/probes")
with open(f"{tmp}/probes/redis.toml", "w") as f:
    f.write(f'timeout = "50s"\n[[steps]]\nname = "redis"\nkind = "redis"\n'
            f'url = "redis://127.0.0.1:{servers["redis"]}"\n')
with open(f"{tmp}/joincanary.toml", "w") as f:
    f.write(f'region = "bench"\nprobes = ["probes"]\nstate_dir = "state"\n'
            f'[[pager]]\nname = "hook"\ntype = "webhook"\n'
            f'url = "http://127.0.0.1:{servers["pager"]}/hook"\ntimeout = "60s"\n')
config = f"{tmp}/joincanary.toml"
probe_socket = socket.socket()
probe_socket.bind(("127.0.0.1", 0))
listen = probe_socket.getsockname()[1]
probe_socket.close()
os.makedirs(f"{tmp}/fleet")
with open(f"{tmp}/fleet/p.toml", "w") as f:
    f.write('[[steps]]\nname = "a"\nkind = "http"\nurl = "http://127.0.0.1:1/"\n')
with open(f"{tmp}/fleet.toml", "w") as f:
    f.write(f'region = "bench"\nlisten = "127.0.0.1:{listen}"\nprobes = ["fleet"]\n'
            f'state_dir = "fleet-state"\npeers = ["http://127.0.0.1:{servers["peer"]}"]\n'
            f'[defaults]\nschedule = "0 0 1 1 *"\n')
os.makedirs(f"{tmp}/probes-ws")
with open(f"{tmp}/probes-ws/ws.toml", "w") as f:
    f.write(f'timeout = "50s"\n[[steps]]\nname = "open"\nkind = "ws_connect"\n'
            f'url = "ws://127.0.0.1:{servers["frames"]}/"\n'
            f'[[steps]]\nname = "wait"\nkind = "ws_expect"\nexpect_regex = "never"\ntimeout = "40s"\n')
with open(f"{tmp}/ws.toml", "w") as f:
    f.write('region = "bench"\nprobes = ["probes-ws"]\nstate_dir = "ws-state"\n')
# The history: written once, copied into a fresh state directory before each run (a run saves
# its own, cut, history when it stops).
NOW_HOUR = int(time.time()) // 3600 * 3600
HOURS = 1_300_000
# Written a bucket at a time: this process's own peak is where every child's measured peak
# starts (ru_maxrss is kept across fork), so it must stay small.
with open(f"{tmp}/history.json", "w") as f:
    f.write('{"version":1,"probes":{"p":{"runs":1,"last":null,"last_success":null,'
            '"failing_since":null,"last_good":null,"history":[],"hourly":[')
    for i in range(HOURS):
        f.write(f'{"," if i else ""}{{"t":{NOW_HOUR - (HOURS - 1 - i) * 3600},"n":1,"ok":1,"ms":5,"max":5}}')
    f.write("]}}}")
HISTORY_MIB = os.path.getsize(f"{tmp}/history.json") / (1 << 20)
with open(f"{tmp}/history.toml", "w") as f:
    f.write(f'region = "bench"\nlisten = "127.0.0.1:{listen}"\nprobes = ["fleet"]\n'
            f'state_dir = "history-state"\n[defaults]\nschedule = "0 0 1 1 *"\n')
cases = {
    "pager: 400 MB error body (test-page)": ["test-page", "--config", config],
    "redis: 200 MiB INFO (once)": ["once", "--config", config],
    "peer: 4 MiB of {} probes (run, GET /)": ["run", "--config", f"{tmp}/fleet.toml"],
    f"history: {HISTORY_MIB:.0f} MiB hourly list (run, GET /)": ["run", "--config", f"{tmp}/history.toml"],
    "ws: endless empty continuation frames (once)": ["once", "--config", f"{tmp}/ws.toml"],
}


def page_then_stop(p, peer):
    """Waits for the listener, asks for the status page once (the peer, if `peer`, is fetched),
    stops."""
    import signal, urllib.request
    outcome = "no answer"
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{listen}/", timeout=30) as r:
                body = r.read().decode(errors="replace")
                outcome = f"GET / {r.status}"
                if peer:
                    outcome += ", peer shown" if "evil" in body else ", peer not shown"
            break
        except OSError:
            time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    return outcome


def measure(binary, args):
    if args[-1].endswith("history.toml"):
        import shutil
        shutil.rmtree(f"{tmp}/history-state", ignore_errors=True)
        os.makedirs(f"{tmp}/history-state")
        shutil.copy(f"{tmp}/history.json", f"{tmp}/history-state/status-history.json")
    started = time.monotonic()
    p = subprocess.Popen([binary, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True)
    if args[0] == "run":
        outcome = page_then_stop(p, args[-1].endswith("fleet.toml"))
        p.stdout.read()
        _, status, usage = os.wait4(p.pid, 0)
        return usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), outcome
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    words = f"{time.monotonic() - started:.1f} s: " + " ".join(out.split())
    return usage.ru_maxrss / 1024, p.returncode, words


print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
print(f"{'binary':<40} {'case':<38} {'peak RSS MiB (runs)':<30} median  exit  output")
for binary in sys.argv[1:]:
    for case, args in cases.items():
        rss, codes, text = [], [], ""
        for _ in range(RUNS):
            r, code, text = measure(binary, args)
            rss.append(r)
            codes.append(code)
        runs = " / ".join(f"{r:.0f}" for r in rss)
        print(f"{binary:<40} {case:<38} {runs:<30} {statistics.median(rss):>6.0f}  "
              f"{'/'.join(map(str, sorted(set(codes)))):>4}  {text[:110]}")
print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
import shutil
shutil.rmtree(tmp, ignore_errors=True)
PY
