#!/usr/bin/env bash
# Peak RSS of joincanary against the hostile servers of issue 17, each on 127.0.0.1: a pager that
# answers `test-page` with a 400 MB error body, a Redis whose `INFO` reply is 200 MiB (a valid
# bulk string, so a prober without a cap passes the step), and a fleet peer whose status is 4 MiB
# of empty probes (`run`, the status page asked for once, then SIGTERM). Each binary given is measured RUNS
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


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


servers = {}
for name, handler in (("pager", Pager), ("redis", Redis), ("peer", Peer)):
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
cases = {
    "pager: 400 MB error body (test-page)": ["test-page", "--config", config],
    "redis: 200 MiB INFO (once)": ["once", "--config", config],
    "peer: 4 MiB of {} probes (run, GET /)": ["run", "--config", f"{tmp}/fleet.toml"],
}


def page_then_stop(p):
    """Waits for the listener, asks for the status page once (the peer is fetched), stops."""
    import signal, urllib.request
    outcome = "no answer"
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{listen}/", timeout=30) as r:
                body = r.read().decode(errors="replace")
                outcome = f"GET / {r.status}, " + ("peer shown" if "evil" in body else "peer not shown")
            break
        except OSError:
            time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    return outcome


def measure(binary, args):
    p = subprocess.Popen([binary, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True)
    if args[0] == "run":
        outcome = page_then_stop(p)
        p.stdout.read()
        _, status, usage = os.wait4(p.pid, 0)
        return usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), outcome
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    words = " ".join(out.split())
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
PY
