"""Shared pieces of the bench scripts: processes started in their own session and always
stopped, a private redis-server, a minimal RESP client, a loopback webhook receiver, and
`joincanary run` configs. Standard library only; everything listens on 127.0.0.1."""

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("JOINCANARY_BIN", os.path.join(ROOT, "target/release/joincanary"))

_started = []  # every Popen we started, stopped at exit (by pid, never by name)
_tmp_dirs = []  # every directory tmpdir() made, removed at exit once the processes are stopped


def _stop_all():
    for p in reversed(_started):
        stop(p)
    while _tmp_dirs:
        d = _tmp_dirs.pop()
        if os.environ.get("JC_BENCH_KEEP"):
            print(f"kept {d} (JC_BENCH_KEEP)", flush=True)
        else:
            shutil.rmtree(d, ignore_errors=True)


def tmpdir(prefix):
    """A fresh directory under /tmp, removed when the script exits (not at a service's stop:
    a traced window's strace output is read after its service has stopped); JC_BENCH_KEEP=1
    keeps them (the services' logs) and prints where."""
    d = tempfile.mkdtemp(prefix=prefix)
    _tmp_dirs.append(d)
    return d


atexit.register(_stop_all)
for _sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_sig, lambda *_: (_stop_all(), os._exit(130)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, **kw):
    """Starts a process in its own session (so stop() can end it and its children)."""
    p = subprocess.Popen(args, start_new_session=True, **kw)
    _started.append(p)
    return p


def stop(p, wait=5):
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(wait)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(wait)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


def wait_until(pred, timeout, step=0.02, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")


def cpu_ms(pid):
    """User+system CPU of process `pid` so far (every thread, exited ones included), in
    milliseconds, read from its POSIX CPU-time clock (`clock_getcpuclockid`): nanosecond
    resolution, where `/proc/PID/stat` counts 10 ms ticks (one tick is 3 % of a 300-run
    window at 0.3 CPU-ms per run). Falls back to the ticks where the clock cannot be read."""
    try:
        # Linux's CPUCLOCK encoding: (~pid << 3) | CPUCLOCK_SCHED (2), process-wide.
        return time.clock_gettime(((~pid) << 3) | 2) * 1000.0
    except OSError:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        return ticks * 1000.0 / os.sysconf("SC_CLK_TCK")


def thread_stats(pid):
    """{role: (CPU-ms, voluntary context switches)} of the live threads of `pid` so far, summed
    by role: "probe" (the `joincanary-probes-N` threads: every run's flow and sockets),
    "service" (the main thread: the consumer, metrics, status, alerting, the HTTP server) and
    "other" (tokio's blocking pool, the config watcher). CPU is each thread's schedstat run time
    (ns); a voluntary switch is the thread going to sleep, so each is one wake-up. Threads that
    exit between two looks are missing from their difference (`cpu_ms` still counts them)."""
    out = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        base = f"/proc/{pid}/task/{task}"
        try:
            with open(base + "/comm") as f:
                comm = f.read().strip()
            with open(base + "/schedstat") as f:
                ns = int(f.read().split()[0])
            with open(base + "/status") as f:
                vol = next(int(line.split()[1]) for line in f
                           if line.startswith("voluntary_ctxt_switches:"))
        except (OSError, ValueError, StopIteration):
            continue
        role = ("probe" if comm.startswith("joincanary-prob") else
                "service" if task == str(pid) else "other")
        out[(role, task)] = (ns / 1e6, vol)
    return out


def thread_delta(before, after, runs):
    """{role: (CPU-ms per run, sleeps per run)} between two `thread_stats` looks."""
    sums = {}
    for key, (ms, vol) in after.items():
        if key in before:
            cpu, sleeps = sums.get(key[0], (0.0, 0))
            sums[key[0]] = (cpu + ms - before[key][0], sleeps + vol - before[key][1])
    n = max(runs, 1)
    return {role: (cpu / n, sleeps / n) for role, (cpu, sleeps) in sums.items()}


def loadavg():
    """The 1-minute load average now (every figure is quoted with the load it was taken at)."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def http_get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def http_json(method, url, body=None, timeout=10):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


# ---------------------------------------------------------------------------------------------
# Redis


class RespError(Exception):
    pass


class Resp:
    """One RESP connection; each command has a deadline (socket timeout)."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.sock.makefile("rb")

    def cmd(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._read()

    def _read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2].decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise ConnectionError(f"unexpected RESP line {line!r}")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Redis:
    """A private redis-server on a free loopback port, no persistence, DEBUG allowed locally."""

    def __init__(self):
        self.dir = tmpdir("jc-bench-redis-")
        self.port = free_port()
        self.proc = start(["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
                           "--dir", self.dir, "--save", "", "--appendonly", "no",
                           "--enable-debug-command", "local", "--loglevel", "warning",
                           "--logfile", os.path.join(self.dir, "redis.log")],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._pong, 10, 0.05, "redis-server to answer PING")
        self._sleeper = None

    def _pong(self):
        try:
            c = Resp(self.port, 1)
            ok = c.cmd("PING") == "PONG"
            c.close()
            return ok
        except OSError:
            return False

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def cmd(self, *args, timeout=10.0):
        c = Resp(self.port, timeout)
        try:
            return c.cmd(*args)
        finally:
            c.close()

    # Faults, each with its undo. ------------------------------------------------------------

    def oom(self):
        """Out of memory for real: maxmemory a little over what is used, noeviction, then
        64 KiB values written (in db 1) until Redis refuses. Returns Redis's error text."""
        c = Resp(self.port)
        try:
            used = int(_info(c, "memory")["used_memory"])
            c.cmd("CONFIG", "SET", "maxmemory-policy", "noeviction")
            c.cmd("CONFIG", "SET", "maxmemory", used + 2 * 1024 * 1024)
            c.cmd("SELECT", 1)
            value = b"x" * 65536
            for i in range(16384):  # bounded: 1 GiB
                try:
                    c.cmd("SET", f"fill:{i}", value)
                except RespError as e:
                    # Keep it refused once the refused write's buffer is freed.
                    used = int(_info(c, "memory")["used_memory"])
                    c.cmd("CONFIG", "SET", "maxmemory", max(used - 1024 * 1024, 1))
                    return str(e)
            raise RuntimeError("filled 1 GiB without an OOM")
        finally:
            c.close()

    def oom_undo(self):
        c = Resp(self.port)
        try:
            c.cmd("CONFIG", "SET", "maxmemory", 0)
            c.cmd("SELECT", 1)
            c.cmd("FLUSHDB")
        finally:
            c.close()

    def pause(self):
        self.cmd("CLIENT", "PAUSE", 3_600_000, "WRITE")

    def pause_undo(self):
        self.cmd("CLIENT", "UNPAUSE")

    def sigstop(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def sigstop_undo(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def slow(self, sleep_s):
        """`DEBUG SLEEP sleep_s` back to back on one connection until slow_undo()."""
        stop_evt = threading.Event()

        def loop():
            c = Resp(self.port, sleep_s + 10)
            try:
                for _ in range(100_000):  # bounded; stopped long before
                    if stop_evt.is_set():
                        break
                    c.cmd("DEBUG", "SLEEP", sleep_s)
            finally:
                c.close()

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        self._sleeper = (stop_evt, t)

    def slow_undo(self):
        if self._sleeper:
            evt, t = self._sleeper
            evt.set()
            t.join(30)
            self._sleeper = None


def _info(c, section):
    text = c.cmd("INFO", section)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


# ---------------------------------------------------------------------------------------------
# joincanary processes


def start_sim(redis_url=None, redis_timeout=None, extra_env=None):
    """A `joincanary sim` on a free port; returns (process, base URL)."""
    args = [BIN, "sim", "--listen", "127.0.0.1:0"]
    if redis_url:
        args += ["--redis", redis_url]
    if redis_timeout:
        args += ["--redis-timeout", redis_timeout]
    env = dict(os.environ, JOINCANARY_LOG="warn", **(extra_env or {}))
    p = start(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    line = p.stdout.readline().decode().strip()
    if not line.startswith("listening on "):
        raise RuntimeError(f"sim did not start: {line!r}")
    return p, line[len("listening on "):]


class Receiver:
    """A loopback webhook receiver: every POST body (JSON) with its arrival time (monotonic)."""

    def __init__(self):
        self.events = []
        self.lock = threading.Lock()
        recv = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("content-length", 0))
                body = self.rfile.read(n)
                at = time.monotonic()
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {"raw": body.decode(errors="replace")}
                with recv.lock:
                    recv.events.append((at, payload))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/hook"

    def since(self, t0):
        with self.lock:
            return [(t, e) for t, e in self.events if t >= t0]

    def first(self, t0, pred):
        for t, e in self.since(t0):
            if pred(e):
                return t, e
        return None


def ms(seconds):
    return f"{max(1, round(seconds * 1000))}ms"


def shipped_probe(name, sim_url, ratio=1.0, run_timeout_s=None):
    """probes/sim-join.toml pointed at `sim_url`, named `name`, its step timeouts divided by
    `ratio` (1 = as shipped) and its run deadline `run_timeout_s` (default: shipped / ratio)."""
    with open(os.path.join(ROOT, "probes/sim-join.toml")) as f:
        text = f.read()
    text = text.replace("${SIM_URL:-http://127.0.0.1:7480}", sim_url)
    text = text.replace('name = "sim-join"', f'name = "{name}"', 1)
    out = []
    in_steps = False
    for line in text.splitlines():
        s = line.strip()
        in_steps = in_steps or s.startswith("[[steps]]")
        if s.startswith("timeout = \"") and s.endswith("s\""):
            val = s[len("timeout = \""):-1]
            secs = float(val[:-2]) / 1000 if val.endswith("ms") else float(val[:-1])
            if not in_steps and run_timeout_s is not None:
                secs = run_timeout_s
            else:
                secs /= ratio
            line = f'timeout = "{ms(secs)}"'
        out.append(line)
    return "\n".join(out) + "\n"


def interval_schedule(interval_s):
    if interval_s == 60:
        return "* * * * *"
    if interval_s < 60 and 60 % interval_s == 0:
        return f"*/{interval_s} * * * * *" if interval_s > 1 else "* * * * * *"
    raise ValueError("interval must divide a minute")


class Service:
    """`joincanary run` in a temporary directory with the given probes and config tail; `bin`
    another build of joincanary than BIN (to compare two builds in one run); `args` more flags
    for `run`."""

    def __init__(self, probes, defaults, tail="", log_level="warn", bin=None, args=()):
        self.dir = tmpdir("jc-bench-run-")
        os.makedirs(os.path.join(self.dir, "probes"))
        for name, text in probes.items():
            with open(os.path.join(self.dir, "probes", f"{name}.toml"), "w") as f:
                f.write(text)
        self.port = free_port()
        cfg = (f'region = "bench"\nlisten = "127.0.0.1:{self.port}"\nprobes = ["probes"]\n'
               f'state_dir = "state"\n[defaults]\n{defaults}\n{tail}\n')
        self.config = os.path.join(self.dir, "joincanary.toml")
        with open(self.config, "w") as f:
            f.write(cfg)
        self.log = open(os.path.join(self.dir, "run.log"), "wb")
        self.proc = start([bin or BIN, "run", "--config", self.config, *args], stdout=subprocess.DEVNULL,
                          stderr=self.log, env=dict(os.environ, JOINCANARY_LOG=log_level))
        wait_until(self._up, 30, 0.05, "joincanary run to serve /healthz")

    def _up(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"joincanary run exited; see {self.log.name}")
        try:
            return http_get(f"{self.base}/healthz", 1) is not None
        except OSError:
            return False

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def status(self):
        return json.loads(http_get(f"{self.base}/api/v1/status"))

    def probe(self, name):
        for p in self.status().get("probes", []):
            if p.get("probe") == name:
                return p
        return None

    def metrics(self):
        return http_get(f"{self.base}/metrics", 60).decode()

    def stop(self):
        stop(self.proc, 15)


def median(xs):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
