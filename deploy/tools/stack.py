"""Shared machinery of the live deploy checks (check_dashboard.py, e2e.py): start real processes on
127.0.0.1 with their logs in a work directory, pick free ports, wait for conditions under a
deadline, talk HTTP and PromQL, and write the configs of `joincanary run`, Prometheus and
Alertmanager from the shipped files. Every wait is bounded; every process is stopped by `stop()`.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(ROOT, "target/debug/joincanary")
RULES = os.path.join(ROOT, "deploy/prometheus/joincanary-rules.yaml")
GLOBAL_RULES = os.path.join(ROOT, "deploy/prometheus/global/joincanary-global-rules.yaml")
AM_RULES = os.path.join(ROOT, "deploy/prometheus/joincanary-alertmanager-rules.yaml")
AM_CONFIG = os.path.join(ROOT, "deploy/alertmanager/alertmanager.yml")
# Where the live checks write their logs, configs and results: target/deploy/, or JC_DEPLOY_OUT
# (.ci/checks.d/deploy-next.sh runs them again against Prometheus 3.x / Alertmanager 0.27+ there).
OUT = os.environ.get("JC_DEPLOY_OUT") or os.path.join(ROOT, "target/deploy")


def require_tools():
    for tool in ("prometheus", "prometheus-alertmanager"):
        if not shutil.which(tool):
            sys.exit(f"{tool} missing: bash .ci/run installs it (.ci/apt.d/deploy.txt)")
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} missing: cargo build --bin joincanary")


def versions():
    """The first line of `--version` of the Prometheus and Alertmanager on PATH (what a run used)."""
    out = {}
    for tool in ("prometheus", "prometheus-alertmanager"):
        r = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=10)
        out[tool] = ((r.stdout or r.stderr).splitlines() or ["?"])[0]
    return out


_am_features = []


def alertmanager_features():
    """`--enable-feature=receiver-name-in-metrics` where the Alertmanager on PATH has it (0.28+), as
    the Compose stack runs it: the receiver's name on alertmanager_notifications_failed_total."""
    if not _am_features:
        r = subprocess.run(["prometheus-alertmanager", "--help"], capture_output=True, text=True, timeout=10)
        _am_features.append(["--enable-feature=receiver-name-in-metrics"]
                            if "receiver-name-in-metrics" in r.stdout + r.stderr else [])
    return _am_features[0]


_ports_given = set()
_ports_lock = threading.Lock()


def free_port():
    """A port free now and never handed out before in this run: checks running side by side each
    pick ports before their processes bind them, and the kernel may offer a just-closed one twice."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with _ports_lock:
            if port not in _ports_given:
                _ports_given.add(port)
                return port
    raise OSError("no free port on 127.0.0.1")


def http(method, url, body=None, timeout=2):
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"content-type": "application/json"} if body else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def get_json(url, timeout=2):
    return json.loads(http("GET", url, timeout=timeout)[1])


def query(prom, expr):
    """A PromQL instant query against the Prometheus on 127.0.0.1:`prom` (the whole answer)."""
    url = f"http://127.0.0.1:{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        _, body = http("GET", url, timeout=5)
    except urllib.error.HTTPError as e:
        return {"status": "error", "error": e.read().decode(errors="replace")}
    return json.loads(body)


def series(prom, expr):
    """The result vector of a query, empty when the query fails or Prometheus does not answer."""
    try:
        r = query(prom, expr)
    except OSError:
        return []
    return r.get("data", {}).get("result", []) if r.get("status") == "success" else []


# Prometheus-style durations, as the shipped files write them (1h, 5m, 30s, 500ms, 1m30s).
DURATION = re.compile(r"(\d+)(ms|h|m|s)")
UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def seconds(text):
    parts = DURATION.findall(str(text))
    if not parts or "".join(n + u for n, u in parts) != str(text):
        raise ValueError(f"not a duration: {text!r}")
    return sum(int(n) * UNIT[u] for n, u in parts)


def duration(secs):
    """A duration Prometheus, Alertmanager and joincanary all read (whole milliseconds)."""
    return f"{round(secs * 1000)}ms"


class Stack:
    """Processes of one check: started with their output in `work`/<name>.log, stopped together."""

    def __init__(self, work, deadline):
        self.work = work
        self.deadline = deadline
        self.procs = {}
        self.errors = []
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)

    def fail(self, msg):
        self.errors.append(msg)
        print("ERROR", msg, flush=True)

    def path(self, *parts):
        return os.path.join(self.work, *parts)

    def start(self, name, args, **kw):
        log = open(self.path(f"{name}.log"), "a")
        p = subprocess.Popen(args, stdout=kw.pop("stdout", log), stderr=log, stdin=subprocess.DEVNULL,
                             cwd=kw.pop("cwd", self.work), **kw)
        self.procs[name] = p
        return p

    def stop_one(self, name, sig=signal.SIGTERM):
        p = self.procs.pop(name, None)
        if p is None or p.poll() is not None:
            return
        p.send_signal(sig)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs.clear()

    def wait_for(self, what, check, secs, fail=True):
        """Polls `check` every 0.1 s for up to `secs` (never past the deadline)."""
        end = min(time.monotonic() + secs, self.deadline)
        while time.monotonic() < end:
            try:
                if check():
                    return True
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        if fail:
            self.fail(f"timed out after {secs} s waiting for {what}")
        return False

    def sim(self, name="sim"):
        """`joincanary sim` on a free port; returns its base URL."""
        p = self.start(name, [BIN, "sim", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
        line = p.stdout.readline().strip()
        if not line.startswith("listening on "):
            sys.exit(f"{name} said {line!r}")
        return line.removeprefix("listening on ")

    def alertmanager(self, name, port, config, cluster=("--cluster.listen-address=",)):
        """Debian's Alertmanager with `config` (a dict) on 127.0.0.1:`port`, fresh storage, no cluster
        unless `cluster` gives its flags (`--cluster.listen-address=127.0.0.1:P`, `--cluster.peer=`),
        receiver names in its metrics where it has them (alertmanager_features)."""
        path = self.path(f"{name}.yml")
        yaml.safe_dump(config, open(path, "w"))
        storage = self.path(f"{name}-data-{time.monotonic_ns()}")
        self.start(name, ["prometheus-alertmanager", f"--config.file={path}", f"--storage.path={storage}",
                          f"--web.listen-address=127.0.0.1:{port}", *cluster, *alertmanager_features()])
        self.wait_for(f"{name} ready", lambda: http("GET", f"http://127.0.0.1:{port}/-/ready")[0] == 200, 30)

    def prometheus(self, name, port, config, extra=()):
        """Debian's Prometheus with `config` (a dict) on 127.0.0.1:`port`; its TSDB survives a restart."""
        path = self.path(f"{name}.yml")
        yaml.safe_dump(config, open(path, "w"))
        self.start(name, ["prometheus", f"--config.file={path}", f"--storage.tsdb.path={self.path(name + '-data')}",
                          f"--web.listen-address=127.0.0.1:{port}", *extra])
        self.wait_for(f"{name} ready", lambda: http("GET", f"http://127.0.0.1:{port}/-/ready")[0] == 200, 30)

    def prober(self, name, config_text, env):
        path = self.path(f"{name}.toml")
        open(path, "w").write(config_text)
        return self.start(name, [BIN, "run", "--config", path], env={**os.environ, "NO_COLOR": "1", **env})


def probe_file(work, timeouts):
    """The shipped probe in `work`/probes/, its deadlines replaced ({"20s": "4s", ...})."""
    os.makedirs(os.path.join(work, "probes"), exist_ok=True)
    probe = open(os.path.join(ROOT, "probes/sim-join.toml")).read()
    for old, new in timeouts.items():
        probe = probe.replace(f'timeout = "{old}"', f'timeout = "{new}"')
    open(os.path.join(work, "probes", "sim-join.toml"), "w").write(probe)


def absolute_templates(config):
    """`config` (a dict of the shipped alertmanager.yml or a variant) with its `templates:` globs
    resolved against deploy/alertmanager/, as Alertmanager resolves them against the shipped
    file's directory: a copy written elsewhere loads the same templates."""
    config["templates"] = [os.path.join(os.path.dirname(AM_CONFIG), t) for t in config.get("templates") or []]
    return config


def alertmanager_config(receiver_url, scale=1.0, text=None):
    """The shipped alertmanager.yml (or `text`, a variant of it), each webhook pointed at
    `receiver_url(name)`, every group timing divided by `scale`, its templates loaded."""
    config = absolute_templates(yaml.safe_load(text if text is not None else open(AM_CONFIG)))
    for r in config["receivers"]:
        for w in r.get("webhook_configs") or []:
            w["url"] = receiver_url(r["name"])

    def squeeze(route):
        for key in ("group_wait", "group_interval", "repeat_interval"):
            if key in route:
                route[key] = duration(seconds(route[key]) / scale)
        for child in route.get("routes") or []:
            squeeze(child)

    if scale != 1.0:
        squeeze(config["route"])
        config["global"]["resolve_timeout"] = duration(seconds(config["global"]["resolve_timeout"]) / scale)
    return config


def rules_file(src, dst, scale=1.0):
    """A copy of a shipped rules file with every `for:` and group `interval:` divided by `scale`
    (range windows kept)."""
    rules = yaml.safe_load(open(src))
    for g in rules["groups"]:
        if "interval" in g and scale != 1.0:
            g["interval"] = duration(seconds(g["interval"]) / scale)
        for r in g["rules"]:
            if "for" in r and scale != 1.0:
                r["for"] = duration(seconds(r["for"]) / scale)
    yaml.safe_dump(rules, open(dst, "w"))
    return dst
