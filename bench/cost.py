"""Cost and accuracy of joincanary side by side with Debian's prometheus-blackbox-exporter, on
the same loopback login endpoint (the reference server's POST /api/login) at the same rate, in
alternating windows, each a fresh process measured after a warm-up. Prints every figure, the
medians over the rounds and joincanary/blackbox ratios. `--compare NAME=BIN,...` alternates
several builds of joincanary (and blackbox) window by window in one run, for the http, flow and
syscalls sections. All traffic stays on 127.0.0.1."""

import argparse
import concurrent.futures as cf
import json
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse

import harness as h

BB = "/usr/bin/prometheus-blackbox-exporter"
WARMUP = 3.0
LOGIN_JSON = '{"username":"canary","password":"canary-pass"}'


def login_probe(name, sim, timeout="900ms"):
    return (f'name = "{name}"\ntimeout = "{timeout}"\n[[steps]]\nname = "login"\nkind = "http"\n'
            f'method = "POST"\nurl = "{sim}/api/login"\n'
            'json = { username = "canary", password = "canary-pass" }\n'
            f'expect_status = [200]\ntimeout = "{timeout}"\n')


def every_second(n_probes, timeout="900ms"):
    return f'schedule = "* * * * * *"\ntimeout = "{timeout}"\njitter = "900ms"'


def runs_in(metrics, result=None):
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("probe_runs_total{") and (result is None or f'result="{result}"' in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def gauge_max(metrics, name):
    vals = [float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
            if line.startswith(name + "{")]
    return max(vals) if vals else float("nan")


def skipped_in(metrics):
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("probe_skipped_total{"))


class Switches:
    """Context switches of every thread of `pid` from now until `stop()`, counted by `perf
    stat` (a software counter the kernel keeps anyway, so counting costs the prober nothing):
    each one is a thread going to sleep or being woken, the wake-ups a flow costs. None where
    perf is missing or not allowed."""

    def __init__(self, pid, path):
        self.path = path
        self.proc = None
        if shutil.which("perf"):
            self.proc = h.start(["perf", "stat", "-x,", "-e", "context-switches", "-p", str(pid),
                                 "-o", path], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    def stop(self):
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
            with open(self.path) as f:
                for line in f:
                    parts = line.strip().split(",")
                    if len(parts) > 2 and parts[2] == "context-switches" and parts[0].isdigit():
                        return int(parts[0])
        except (OSError, subprocess.TimeoutExpired):
            h.stop(self.proc)
        return None


def jc_window(probes, defaults, seconds, scrape_every=15.0, lag_every=None, bin=None, args=(),
              warmup=None):
    """CPU-ms per run (and per second) of `joincanary run` (`bin`, default BIN) over `seconds`
    after the warm-up, plus the counts and the load average at the start. `lag_every`: also scrape that often and keep the largest
    schedule lag of any run seen in the window (each probe's lag gauge is sampled whenever
    its last-run time moved), not just the lag of the last runs before the final scrape."""
    svc = h.Service(probes, defaults, bin=bin, args=args)
    lag_max, lag_samples = 0.0, 0
    try:
        time.sleep(WARMUP if warmup is None else warmup)
        load = h.loadavg()
        m0 = svc.metrics()
        seen = per_probe(m0, "probe_last_run_timestamp_seconds")
        sw = Switches(svc.proc.pid, os.path.join(svc.dir, "perf.txt"))
        c0, t0 = h.cpu_ms(svc.proc.pid), time.monotonic()
        th0 = h.thread_stats(svc.proc.pid)
        t_end = t0 + seconds
        every = lag_every or scrape_every
        next_scrape = t0 + every
        while time.monotonic() < t_end:  # a Prometheus scraping every 15 s
            time.sleep(min(0.2, max(0.0, t_end - time.monotonic())))
            if time.monotonic() >= next_scrape:
                text = svc.metrics()
                next_scrape += every
                if lag_every:
                    last = per_probe(text, "probe_last_run_timestamp_seconds")
                    lag = per_probe(text, "probe_schedule_lag_seconds")
                    for probe, ts in last.items():
                        if seen.get(probe) != ts:
                            seen[probe] = ts
                            lag_samples += 1
                            lag_max = max(lag_max, lag.get(probe, 0.0))
        c1, t1 = h.cpu_ms(svc.proc.pid), time.monotonic()
        th1 = h.thread_stats(svc.proc.pid)
        switches = sw.stop()
        m1 = svc.metrics()
    finally:
        svc.stop()
    runs = runs_in(m1) - runs_in(m0)
    failed = runs_in(m1, "failure") - runs_in(m0, "failure")
    if not lag_every:
        lag_max = gauge_max(m1, "probe_schedule_lag_seconds")
    return {"cpu_ms_per_run": (c1 - c0) / max(runs, 1), "runs": runs, "failed": failed,
            "skipped": skipped_in(m1) - skipped_in(m0), "lag_max_s": lag_max,
            "lag_samples": lag_samples, "rate": runs / (t1 - t0), "load": load,
            "cpu_pct": (c1 - c0) / (t1 - t0) / 10, "cpu_ms_per_s": (c1 - c0) / (t1 - t0),
            "seconds": t1 - t0, "reasons": failure_reasons(m1, m0),
            "threads": h.thread_delta(th0, th1, runs),
            "switches_per_s": None if switches is None else switches / (t1 - t0),
            "switches_per_run": None if switches is None else switches / max(runs, 1)}


def per_probe(text, name):
    """{probe: value} of a per-probe gauge."""
    out = {}
    prefix = name + "{"
    for line in text.splitlines():
        if line.startswith(prefix) and 'probe="' in line:
            labels, value = line[len(prefix):].rsplit("} ", 1)
            out[labels.split('probe="', 1)[1].split('"', 1)[0]] = float(value)
    return out


def failure_reasons(m1, m0):
    """{reason: runs} that failed in the window (what broke first at the ceiling)."""
    def by_reason(text):
        out = {}
        for line in text.splitlines():
            if line.startswith("probe_failures_total{") and 'reason="' in line:
                r = (line.split('step="', 1)[1].split('"', 1)[0] + " " +
                     line.split('reason="', 1)[1].split('"', 1)[0])
                out[r] = out.get(r, 0.0) + float(line.rsplit(" ", 1)[1])
        return out
    a, b = by_reason(m1), by_reason(m0)
    return {r: v - b.get(r, 0.0) for r, v in a.items() if v - b.get(r, 0.0) > 0}


class Blackbox:
    def __init__(self):
        self.dir = h.tmpdir("jc-bench-bb-")
        cfg = os.path.join(self.dir, "blackbox.yml")
        with open(cfg, "w") as f:
            f.write("modules:\n  login:\n    prober: http\n    timeout: 5s\n    http:\n"
                    "      method: POST\n      headers:\n        Content-Type: application/json\n"
                    f"      body: '{LOGIN_JSON}'\n      valid_status_codes: [200]\n"
                    "      preferred_ip_protocol: ip4\n")
        self.port = h.free_port()
        self.proc = h.start([BB, f"--config.file={cfg}",
                             f"--web.listen-address=127.0.0.1:{self.port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        h.wait_until(self._up, 20, 0.05, "blackbox_exporter to listen")

    def _up(self):
        try:
            return h.http_get(f"http://127.0.0.1:{self.port}/metrics", 1) is not None
        except OSError:
            return False

    def probe(self, target):
        q = urllib.parse.urlencode({"module": "login", "target": target})
        return h.http_get(f"http://127.0.0.1:{self.port}/probe?{q}", 5).decode()

    def stop(self):
        h.stop(self.proc)


def bb_window(sim, rate, seconds):
    """CPU-ms per /probe of blackbox_exporter driven at `rate` per second (as Prometheus would
    scrape it), after the warm-up."""
    bb = Blackbox()
    target = f"{sim}/api/login"
    ok = [0, 0]
    lock = threading.Lock()

    def one():
        body = bb.probe(target)
        with lock:
            ok[0 if "probe_success 1" in body else 1] += 1

    try:
        with cf.ThreadPoolExecutor(32) as pool:
            def drive(duration):
                start = time.monotonic()
                n = int(duration * rate)
                futs = []
                for i in range(n):
                    delay = start + i / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    futs.append(pool.submit(one))
                for f in futs:
                    f.result()
                return n

            drive(WARMUP)
            ok[0] = ok[1] = 0
            load = h.loadavg()
            c0 = h.cpu_ms(bb.proc.pid)
            n = drive(seconds)
            c1 = h.cpu_ms(bb.proc.pid)
    finally:
        bb.stop()
    return {"cpu_ms_per_run": (c1 - c0) / max(n, 1), "runs": n, "failed": ok[1],
            "rate": n / seconds, "load": load}


def loads(xs):
    """The range of load averages a set of windows started at."""
    ls = [x["load"] for x in xs]
    return f"load {min(ls):.1f}-{max(ls):.1f}"


def load_list(xs):
    """The load average each window started at, in order."""
    return " ".join(f"{x['load']:.1f}" for x in xs)


def sig(x, n=2):
    """`x` to `n` significant digits: CPU per run moves by about ±10 % between windows on a
    shared 2-core machine, so a third digit would be noise."""
    if x != x or x in (float("inf"), float("-inf")):
        return str(x)
    if x == 0:
        return "0"
    d = n - 1 - math.floor(math.log10(abs(x)))
    return f"{round(x, d):.{max(d, 0)}f}"


NEVER = 'schedule = "0 0 1 1 *"\ntimeout = "900ms"'  # the same probes, none due in the window
# The same probes every second with no jitter: all of a second's flows start together, so one
# wake-up of the probe thread serves many flows' events instead of one.
BUNCHED = 'schedule = "* * * * * *"\ntimeout = "900ms"\njitter = "0ms"'


def builds(a):
    """[(name, binary)] to measure: the --compare list, or the one build under test."""
    return a.compare or [("joincanary", h.BIN)]


def parse_compare(text):
    out = []
    for part in text.split(","):
        name, sep, path = part.partition("=")
        if not sep or not name or not path:
            raise argparse.ArgumentTypeError(f"{part!r}: expected NAME=BINARY")
        if name == "blackbox" or name in (n for n, _ in out):
            raise argparse.ArgumentTypeError(f"{name!r}: each name once, and not blackbox")
        if not os.access(path, os.X_OK):
            raise argparse.ArgumentTypeError(f"{path}: not an executable file")
        out.append((name, os.path.abspath(path)))
    return out


def alternate(sim, a, rate, kinds):
    """Windows at `rate` per second, alternating round by round: in each round every kind in
    `kinds` ("http": joincanary's HTTP login probe, "blackbox": blackbox_exporter's on the same
    endpoint, "flow": the full join flow, "bunched": the same flows all started together each
    second, "idle": the same flow probes with none due), each
    kind for every build. The builds' order rotates from one round to the next, so none is
    always measured first. Returns {kind: {name: [window, ...]}} and prints every window."""
    res = {k: {} for k in kinds}
    bs = builds(a)
    for r in range(a.rounds):
        order = bs[r % len(bs):] + bs[:r % len(bs)]
        for kind in kinds:
            todo = [("blackbox", None)] if kind == "blackbox" else order
            for name, binary in todo:
                if kind == "blackbox":
                    x = bb_window(sim, rate, a.window)
                elif kind == "http":
                    probes = {f"login-{i}": login_probe(f"login-{i}", sim) for i in range(rate)}
                    x = jc_window(probes, every_second(rate), a.window, bin=binary)
                elif kind == "flow":
                    x = jc_window(flow_probes(sim, rate), every_second(rate), a.window,
                                  bin=binary)
                elif kind == "bunched":
                    x = jc_window(flow_probes(sim, rate), BUNCHED, a.window, bin=binary)
                else:
                    x = jc_window(flow_probes(sim, rate), NEVER, a.window, bin=binary)
                res[kind].setdefault(name, []).append(x)
                unit = "flow" if kind in ("flow", "bunched") else "probe"
                sw = x.get("switches_per_s")
                if kind == "idle":
                    fig = f"{sig(x['cpu_ms_per_s'])} CPU-ms/s, no run due" + (
                        "" if sw is None else f", {sig(sw)} context switches/s")
                else:
                    fig = (f"{sig(x['cpu_ms_per_run'])} CPU-ms/{unit}, {x['runs']:.0f} runs, "
                           f"{x['failed']:.0f} failed" + (
                               "" if sw is None else
                               f", {sig(x['switches_per_run'])} context switches/{unit}"))
                if kind != "idle":
                    fig += threads_text(x.get("threads", {}))
                print(f"  {rate}/s round {r + 1} {kind:<8} {name:<12} {fig} (load "
                      f"{x['load']:.1f})", flush=True)
    return res


def threads_text(threads):
    """"; probe thread 0.54 CPU-ms, 5.3 sleeps; service thread …" per run, from `thread_delta`."""
    return "".join(f"; {role} thread{'s' if role == 'other' else ''} {sig(cpu)} CPU-ms, "
                   f"{sig(sleeps)} sleeps" for role in ("probe", "service", "other")
                   for cpu, sleeps in [threads.get(role, (0.0, 0.0))]
                   if cpu >= 0.005 or sleeps >= 0.05)


def per_run(xs):
    return [x["cpu_ms_per_run"] for x in xs]


def summarize(what, unit, rate, a, res, kind):
    """Per build: windows, runs, the median CPU per run, each window's figure and load, the
    ratio to blackbox's window of the same round and to the first build's. Returns the rows."""
    rows = {}
    bb = res.get("blackbox", {}).get("blackbox")
    idle = res.get("idle", {})
    first = None
    print(f"{what} at {rate}/s, {a.rounds} rounds of {a.window:g} s windows alternating "
          f"{', '.join(n for n, _ in builds(a))}{', blackbox' if bb else ''}:", flush=True)
    for name, xs in res[kind].items():
        med = h.median(per_run(xs))
        row = {"cpu_ms": med, "windows": per_run(xs), "loads": [x["load"] for x in xs],
               "runs": sum(x["runs"] for x in xs), "failed": sum(x["failed"] for x in xs)}
        line = (f"  {name:<12} {sig(med)} CPU-ms per {unit} (median of {len(xs)} windows: "
                f"{' '.join(sig(v) for v in per_run(xs))}; load "
                f"{load_list(xs)}; {row['runs']:.0f} runs, "
                f"{row['failed']:.0f} failed)")
        roles = {role for x in xs for role in x.get("threads", {})}
        row["threads"] = {role: tuple(h.median([x["threads"].get(role, (0.0, 0.0))[i]
                                                for x in xs]) for i in (0, 1))
                          for role in roles}
        sws = [x["switches_per_run"] for x in xs if x.get("switches_per_run") is not None]
        if sws:
            row["switches_per_run"] = h.median(sws)
            line += f"; {sig(row['switches_per_run'])} context switches per {unit}"
        if bb:
            ratios = [x / y for x, y in zip(per_run(xs), per_run(bb))]
            row["ratio_to_blackbox"] = h.median(ratios)
            line += (f"; {sig(row['ratio_to_blackbox'])}x blackbox (per round "
                     f"{' '.join(sig(v) for v in ratios)})")
        print(line, flush=True)
        if row["threads"]:
            print(f"  {'':<12} by thread, per {unit} (medians){threads_text(row['threads'])}"
                  .replace("(medians); ", "(medians): "), flush=True)
        if name in idle:
            # What the service spends with nothing due (timers, the alert tick, the config
            # watch, a scrape every 15 s) is paid per second, whatever the rate: spread over
            # `rate` flows it is part of every flow's figure.
            per_s = h.median([x["cpu_ms_per_s"] for x in idle[name]])
            row["idle_cpu_ms_per_s"] = per_s
            row["idle_per_run"] = per_s / rate
            row["own_cpu_ms"] = med - per_s / rate
            isw = [x["switches_per_s"] for x in idle[name] if x.get("switches_per_s") is not None]
            if isw:
                row["idle_switches_per_s"] = h.median(isw)
            print(f"  {'':<12} idle, the same {rate} probes with none due: {sig(per_s)} CPU-ms "
                  f"per second (windows {' '.join(sig(x['cpu_ms_per_s']) for x in idle[name])}; "
                  f"load {load_list(idle[name])}) = "
                  f"{sig(per_s / rate)} CPU-ms of each {unit} at {rate}/s; the {unit}'s own "
                  f"{sig(row['own_cpu_ms'])}" + (
                      f"; {sig(row['idle_switches_per_s'])} context switches/s idle"
                      if "idle_switches_per_s" in row else ""), flush=True)
        if first is None:
            first = (name, xs)
        else:
            ratios = [x / y for x, y in zip(per_run(xs), per_run(first[1]))]
            row["ratio_to_" + first[0]] = h.median(ratios)
            lower = sum(1 for v in ratios if v < 1)
            print(f"  {'':<12} {name} / {first[0]}: {sig(h.median(ratios))} (per round "
                  f"{' '.join(sig(v) for v in ratios)}; lower in {lower} of {len(ratios)} "
                  f"rounds)", flush=True)
        rows[name] = row
    if bb:
        med = h.median(per_run(bb))
        rows["blackbox"] = {"cpu_ms": med, "windows": per_run(bb), "loads": [x["load"] for x in bb],
                            "runs": sum(x["runs"] for x in bb), "failed": sum(x["failed"] for x in bb)}
        print(f"  {'blackbox':<12} {sig(med)} CPU-ms per HTTP probe (median of {len(bb)} windows: "
              f"{' '.join(sig(v) for v in per_run(bb))}; load "
              f"{load_list(bb)}; {rows['blackbox']['runs']} probes, "
              f"{rows['blackbox']['failed']} failed)", flush=True)
    return rows


def section_http(sim, a, out):
    """The headline, in alternating windows of one run: joincanary's HTTP login probe,
    blackbox_exporter's on the same endpoint at the same rate, joincanary's full join flow at
    that rate and the same service with nothing due (its fixed cost per second); each
    joincanary figure also as a ratio to the blackbox window of its round."""
    extra = [] if a.no_idle else ["bunched", "idle"]
    res = alternate(sim, a, a.rate, ["http", "blackbox", "flow"] + extra)
    out["http"] = summarize("HTTP login probe", "probe", a.rate, a, {"http": res["http"],
                            "blackbox": res["blackbox"]}, "http")
    out.setdefault("flow", {})[a.rate] = summarize("full join flow", "flow", a.rate, a, res,
                                                   "flow")
    if "bunched" in res:
        # What the spread-out flows pay for waking up alone: the same flows at the same rate,
        # started together, share the probe thread's wake-ups.
        rows = summarize("full join flow, a second's flows started together (jitter 0)", "flow",
                         a.rate, a, {"bunched": res["bunched"], "blackbox": res["blackbox"]},
                         "bunched")
        out["flow"]["bunched"] = rows
        for name, _ in builds(a):
            ratios = [x / y for x, y in zip(per_run(res["bunched"][name]),
                                            per_run(res["flow"][name]))]
            print(f"  {name}: started together / spread over the second: "
                  f"{sig(h.median(ratios))} (per round {' '.join(sig(v) for v in ratios)})",
                  flush=True)


def flow_probes(sim, n, ratio=10, run_timeout="900ms"):
    return {f"join-{i}": h.shipped_probe(f"join-{i}", sim, ratio, 0.9) for i in range(n)}


def section_flow(sim, a, out):
    """The full join flow at each of `a.flow_rates` beside blackbox's HTTP probe at that rate
    and the idle service; a rate already measured by the http section is not measured again.
    The gap between rates is the idle cost per second spread over fewer or more flows."""
    out.setdefault("flow", {})
    for rate in a.flow_rates:
        if rate in out["flow"]:
            continue  # measured beside blackbox in the http section
        res = alternate(sim, a, rate, ["flow", "blackbox"] + ([] if a.no_idle else ["idle"]))
        out["flow"][rate] = summarize("full join flow", "flow", rate, a, res, "flow")
    rates = sorted(r for r in out["flow"] if isinstance(r, int))
    if len(rates) > 1:
        lo, hi = rates[0], rates[-1]
        for name, _ in builds(a):
            a_, b_ = out["flow"][lo].get(name), out["flow"][hi].get(name)
            if a_ and b_ and "own_cpu_ms" in a_ and "own_cpu_ms" in b_:
                print(f"  {name}: {sig(a_['cpu_ms'])} CPU-ms per flow at {lo}/s, "
                      f"{sig(b_['cpu_ms'])} at {hi}/s; less the idle service's share "
                      f"({sig(a_['idle_per_run'])} and {sig(b_['idle_per_run'])}): "
                      f"{sig(a_['own_cpu_ms'])} and {sig(b_['own_cpu_ms'])}" + (
                          f"; context switches per flow {sig(a_['switches_per_run'])} and "
                          f"{sig(b_['switches_per_run'])}"
                          if "switches_per_run" in a_ and "switches_per_run" in b_ else ""),
                      flush=True)


def section_ceiling(sim, a, out):
    """Doubles the rate until a window is not clean, and says what broke first: runs failing
    (and at which step, for what reason), ticks skipped, the lag (the largest over the window),
    or the rate not kept up; with the prober's and the sim's CPU beside it, so a saturated sim
    (it shares the two cores) is told from a saturated prober."""
    best = 0
    rows = []
    sim_pid = a.sim_pid
    for rate in a.ceiling_rates:
        s0 = h.cpu_ms(sim_pid)
        t0 = time.monotonic()
        x = jc_window(flow_probes(sim, rate), every_second(rate), a.window, lag_every=1.0)
        sim_pct = (h.cpu_ms(sim_pid) - s0) / (time.monotonic() - t0) / 10
        why = []
        if x["failed"]:
            why.append(f"{x['failed']:.0f} failed (" + ", ".join(
                f"{k}: {v:.0f}" for k, v in sorted(x["reasons"].items(), key=lambda kv: -kv[1]))
                + ")")
        if x["skipped"]:
            why.append(f"{x['skipped']:.0f} ticks skipped")
        if x["lag_max_s"] >= 0.5:
            why.append(f"lag max {x['lag_max_s']:.1f} s")
        if x["rate"] < rate * 0.95:
            why.append(f"only {x['rate']:.0f}/s done")
        clean = not why
        rows.append({"rate": rate, **x, "clean": clean, "sim_cpu_pct": sim_pct, "why": why})
        print(f"  {rate} flows/s (load {x['load']:.1f}): {x['rate']:.0f}/s done, failed "
              f"{x['failed']:.0f}, skipped {x['skipped']:.0f}, lag max "
              f"{x['lag_max_s'] * 1000:.0f} ms over {x['lag_samples']} sampled runs; CPU: "
              f"prober {x['cpu_pct']:.0f} %, sim {sim_pct:.0f} % of a core -> "
              f"{'clean' if clean else 'NOT clean: ' + '; '.join(why)}", flush=True)
        if not clean:
            break
        best = rate
    out["ceiling"] = {"flows_per_min": best * 60, "rows": rows}
    print(f"ceiling: {best * 60} flows/min clean (the highest rate with no failure, no skip, "
          f"lag max < 0.5 s and the rate kept; the sim shares the two cores)", flush=True)


def perf_shares(path, sort, extra=()):
    """[(percent, name)] from `perf report --sort <sort>` of a recording."""
    p = subprocess.run(["perf", "report", "-i", path, "--stdio", "--sort", sort,
                        "--percent-limit", "0.5", *extra], capture_output=True, text=True,
                       timeout=120)
    rows = []
    for line in p.stdout.splitlines():
        m = re.match(r"\s+([0-9.]+)%\s+(.*\S)", line)
        if m:
            rows.append((float(m.group(1)), re.sub(r"\s+", " ", m.group(2))))
    return rows


def section_profile(sim, a, out):
    """Where a flow's CPU goes: `perf record` (CPU-clock samples of every thread, self time)
    on the service running the full join flow at `a.rate` flows/s for one window: the share of
    the kernel, of libc and of joincanary (its own code and every crate linked in; a stripped
    build names no function in it), and the functions above 1 % (at most 25) with where
    they live."""
    if not shutil.which("perf"):
        print("profile: perf is not installed; skipped", flush=True)
        return
    svc = h.Service(flow_probes(sim, a.rate), every_second(a.rate))
    path = os.path.join(svc.dir, "perf.data")
    try:
        time.sleep(WARMUP)
        load = h.loadavg()
        m0 = svc.metrics()
        subprocess.run(["perf", "record", "-q", "-F", "4999", "-p", str(svc.proc.pid), "-o",
                        path, "--", "sleep", str(a.window)], capture_output=True,
                       timeout=a.window + 60)
        m1 = svc.metrics()
    finally:
        svc.stop()
    dsos = perf_shares(path, "dso")
    syms = [(pct, name) for pct, name in perf_shares(path, "dso,sym") if pct >= 1.0][:25]
    out["profile"] = {"load": load, "flows": runs_in(m1) - runs_in(m0), "by_dso": dsos,
                      "top": syms}
    print(f"profile of the service at {a.rate} flows/s (perf record -F 4999, {a.window:g} s, "
          f"{runs_in(m1) - runs_in(m0):.0f} flows, load {load:.1f}), self time by where the code "
          f"lives: " + ", ".join(f"{name} {pct:.0f} %" for pct, name in dsos), flush=True)
    for pct, name in syms:
        print(f"    {pct:4.1f} %  {name}", flush=True)


def strace_counts(path):
    """{syscall: (calls, errors)} from an `strace -c` summary."""
    counts = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 5 or not parts[3].isdigit() or parts[-1] == "total":
                continue
            errors = int(parts[4]) if len(parts) == 6 else 0
            counts[parts[-1]] = (int(parts[3]), errors)
    return counts


def traced(probes, defaults, seconds, bin=None):
    """({syscall: (calls, errors)}, flows, seconds) of `strace -c -f` on every thread of a
    `joincanary run` (`bin`, default BIN) for `seconds` after the warm-up, and the load
    average at the start."""
    svc = h.Service(probes, defaults, bin=bin)
    path = os.path.join(svc.dir, "strace.txt")
    try:
        time.sleep(WARMUP)
        load = h.loadavg()
        m0 = svc.metrics()
        t0 = time.monotonic()
        st = h.start(["strace", "-c", "-f", "-qq", "-o", path, "-p", str(svc.proc.pid)])
        time.sleep(seconds)
        st.send_signal(signal.SIGINT)
        st.wait(30)
        t1 = time.monotonic()
        m1 = svc.metrics()
        t2 = time.monotonic()
    finally:
        svc.stop()
    # The scrapes bracket the trace: scale the runs they count to the traced time.
    flows = (runs_in(m1) - runs_in(m0)) * (t1 - t0) / max(t2 - t0, 1e-9)
    return strace_counts(path), flows, t1 - t0, load


def section_syscalls(sim, a, out):
    """`strace -c -f` on the running service (every thread) while it runs the full join flow
    at `a.rate` flows/s: system calls per flow, by call, for each build (rounds alternating
    between builds). What the service does on its own (config watch every 5 s, alert tick,
    timers) is traced too, with the same probes scheduled once a year, and shown apart: per
    flow, all calls and the flow's own (all minus idle)."""
    bs = builds(a)
    idle_rate = {}
    for name, binary in bs:
        idle, _, idle_s, idle_load = traced(flow_probes(sim, a.rate), NEVER, a.strace_seconds,
                                            bin=binary)
        idle_rate[name] = {k: c / idle_s for k, (c, _) in idle.items()}
        print(f"  {name}: idle service ({a.rate} probes, none due; load {idle_load:.1f}): "
              f"{sum(idle_rate[name].values()):.1f} syscalls/s: " + ", ".join(
                  f"{k} {v:.1f}" for k, v in sorted(idle_rate[name].items(),
                                                    key=lambda kv: -kv[1]) if v >= 0.05),
              flush=True)
    rows = {name: [] for name, _ in bs}
    for r in range(a.rounds):
        for name, binary in bs[r % len(bs):] + bs[:r % len(bs)]:
            counts, flows, secs, load = traced(flow_probes(sim, a.rate), every_second(a.rate),
                                               a.strace_seconds, bin=binary)
            n = max(flows, 1)
            total = sum(c for c, _ in counts.values())
            own = {k: (c - idle_rate[name].get(k, 0.0) * secs) / n
                   for k, (c, _) in counts.items()}
            rows[name].append({"flows": flows, "per_flow": total / n,
                               "own_per_flow": sum(own.values()), "load": load,
                               "by_call": {k: c / n for k, (c, _) in counts.items()},
                               "own_by_call": own,
                               "errors": {k: e / n for k, (_, e) in counts.items() if e}})
            print(f"  round {r + 1} {name} (load {load:.1f}): {total / n:.1f} syscalls per "
                  f"flow, the flow's own {sum(own.values()):.1f}, over {flows:.0f} flows",
                  flush=True)
    out["syscalls"] = {}
    for name, _ in bs:
        xs = rows[name]
        med = h.median([x["per_flow"] for x in xs])
        own = h.median([x["own_per_flow"] for x in xs])
        mid = sorted(xs, key=lambda x: x["per_flow"])[len(xs) // 2]
        out["syscalls"][name] = {"per_flow": med, "own_per_flow": own,
                                 "idle_per_s": idle_rate[name], "rounds": xs}
        print(f"syscalls per full join flow at {a.rate}/s, {name} (strace -c -f, "
              f"{a.strace_seconds:g} s, median of {a.rounds}: "
              f"{' '.join(format(x['per_flow'], '.1f') for x in xs)}, {loads(xs)}): {med:.1f} in all, "
              f"{own:.1f} the flow's own (idle service: "
              f"{sum(idle_rate[name].values()) / a.rate:.1f} per flow's time); the median "
              f"round by call (all / own):", flush=True)
        for k, v in sorted(mid["by_call"].items(), key=lambda kv: -kv[1]):
            if v >= 0.05:
                err = mid["errors"].get(k)
                print(f"    {k:<16} {v:5.2f} / {mid['own_by_call'][k]:5.2f}" +
                      (f"  ({err:.2f} returned an error: EINPROGRESS, EAGAIN)" if err else ""),
                      flush=True)


ALLOCATORS = ("malloc", "calloc", "realloc")


def callgrind_counts(path):
    """(instructions, {allocator: calls}) of one callgrind dump: the `summary:` line and the
    `calls=` lines under a `cfn=` naming malloc, calloc or realloc (a name is given once, with
    its id, in an `fn=` or `cfn=` line, and by the id alone after that)."""
    names, cfn, total, calls = {}, None, 0, dict.fromkeys(ALLOCATORS, 0)
    with open(path) as f:
        for line in f:
            m = re.match(r"(c?)fn=\((\d+)\)(?: (.*))?", line)
            if m:
                if m.group(3):
                    names[m.group(2)] = m.group(3).strip()
                if m.group(1):
                    cfn = names.get(m.group(2))
            elif line.startswith("calls=") and cfn in calls:
                calls[cfn] += int(line.split("=", 1)[1].split()[0])
            elif line.startswith(("summary:", "totals:")):
                total = int(line.split()[1])
    return total, calls


def section_instructions(sim, a, out):
    """What a flow executes, free of the machine's load: each build runs the full join flow at
    `a.rate` spread flows/s under valgrind's callgrind (every thread, user space only: no
    kernel, no sleeps), its counters zeroed after the warm-up and dumped after the window.
    Instructions and heap allocations (malloc, calloc, realloc) per flow; the same count on
    any machine, so a change of a few per cent shows where CPU windows cannot resolve it
    (valgrind runs the prober about 50 times slower, so a build's window has its flows but not
    its timing)."""
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("instructions: valgrind is not installed; skipped", flush=True)
        return
    out["instructions"] = {}
    first = None
    for name, binary in builds(a):
        tmp = tempfile.mkdtemp(prefix="jc-bench-cg-")
        dump = os.path.join(tmp, "callgrind.out")
        wrapper = os.path.join(tmp, "joincanary")
        with open(wrapper, "w") as f:
            f.write(f"#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file={dump} "
                    f"--dump-instr=no {binary} \"$@\"\n")
        os.chmod(wrapper, 0o755)
        svc = h.Service(flow_probes(sim, a.rate), every_second(a.rate), bin=wrapper)
        try:
            time.sleep(3 * WARMUP)  # valgrind's start-up translates the code first
            load = h.loadavg()
            subprocess.run(["callgrind_control", "-z", str(svc.proc.pid)], capture_output=True,
                           timeout=60)
            m0 = svc.metrics()
            time.sleep(a.window)
            subprocess.run(["callgrind_control", "-d", str(svc.proc.pid)], capture_output=True,
                           timeout=60)
            m1 = svc.metrics()
        finally:
            svc.stop()
        # The dump asked for is the first numbered one; the last is written at exit.
        dumps = sorted(p for p in os.listdir(tmp) if re.fullmatch(r"callgrind\.out\.\d+", p))
        if not dumps:
            print(f"  {name}: callgrind wrote no dump; skipped", flush=True)
            shutil.rmtree(tmp, ignore_errors=True)
            continue
        total, calls = callgrind_counts(os.path.join(tmp, dumps[0]))
        shutil.rmtree(tmp, ignore_errors=True)
        # The scrapes bracket the zeroing and the dump: a flow or two either side.
        flows = runs_in(m1) - runs_in(m0)
        failed = flows - (runs_in(m1, "success") - runs_in(m0, "success"))
        n = max(flows, 1)
        row = {"instructions_per_flow": total / n, "allocs_per_flow": sum(calls.values()) / n,
               "by_allocator": {k: v / n for k, v in calls.items()}, "flows": flows,
               "failed": failed, "load": load}
        out["instructions"][name] = row
        ratio = ""
        if first is None:
            first = row
        else:
            ratio = (f"; / {builds(a)[0][0]}: instructions "
                     f"{row['instructions_per_flow'] / first['instructions_per_flow']:.2f}, "
                     f"allocations {row['allocs_per_flow'] / max(first['allocs_per_flow'], 1):.2f}")
        print(f"  {name}: {row['instructions_per_flow'] / 1000:.0f}k instructions and "
              f"{row['allocs_per_flow']:.0f} allocations per flow (" + ", ".join(
                  f"{k} {v:.0f}" for k, v in row["by_allocator"].items()) +
              f"; callgrind, user space, every thread; {flows:.0f} flows at {a.rate}/s, "
              f"{failed:.0f} failed; load {load:.1f}){ratio}", flush=True)


def once_runs(config, n):
    res = []
    for _ in range(n):
        p = subprocess.run([h.BIN, "once", "--config", config, "--format", "json"],
                           capture_output=True, timeout=60,
                           env=dict(os.environ, JOINCANARY_LOG="error"))
        res.append(json.loads(p.stdout)["probes"][0])
    return res


def curl_first_byte(url):
    """curl's time from the request sent to the first byte of the reply, in ms: the same
    phase as blackbox's `processing` and joincanary's `first_byte`."""
    p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-X", "POST", "-H",
                        "content-type: application/json", "-d", LOGIN_JSON, "-w",
                        "%{time_pretransfer} %{time_starttransfer}", "--max-time", "10", url],
                       capture_output=True, text=True, timeout=20)
    pre, first = (float(x) for x in p.stdout.split())
    return (first - pre) * 1000


def section_timing(sim, a, out):
    d = h.tmpdir("jc-bench-timing-")
    os.makedirs(os.path.join(d, "probes"))
    with open(os.path.join(d, "probes", "login.toml"), "w") as f:
        f.write(login_probe("login", sim, "5s"))
    with open(os.path.join(d, "probes", "join.toml"), "w") as f:
        f.write(h.shipped_probe("join", sim))
    cfg = os.path.join(d, "joincanary.toml")
    with open(cfg, "w") as f:
        f.write(f'region = "bench"\nlisten = "127.0.0.1:0"\nprobes = ["probes/login.toml"]\n'
                f'state_dir = "state"\n')
    cfg_join = os.path.join(d, "join.toml")
    with open(cfg_join, "w") as f:
        f.write(f'region = "bench"\nlisten = "127.0.0.1:0"\nprobes = ["probes/join.toml"]\n'
                f'state_dir = "state"\n')
    out["timing"] = {}
    bb = Blackbox()
    try:
        for delay in a.delays:
            h.http_json("PUT", f"{sim}/_sim/faults", {"login_delay_ms": delay})
            jc = [r["steps"][0]["phases"]["first_byte"] - delay for r in once_runs(cfg, a.samples)]
            bbe, ce = [], []
            load = h.loadavg()
            for _ in range(a.samples):
                body = bb.probe(f"{sim}/api/login")
                m = re.search(r'probe_http_duration_seconds\{phase="processing"\} (\S+)', body)
                bbe.append(float(m.group(1)) * 1000 - delay)
                ce.append(curl_first_byte(f"{sim}/api/login") - delay)
            jm, bm, cm = h.median(jc), h.median(bbe), h.median(ce)
            out["timing"][f"login_{delay}ms"] = {"joincanary": jm, "blackbox": bm, "curl": cm,
                                                 "load": load}
            # The sim's own sleep overshoots by about a millisecond: every client sees that,
            # so what a prober adds is its excess over curl on the same endpoint.
            print(f"login first byte at {delay} ms injected (load {load:.1f}): over curl, "
                  f"joincanary {jm - cm:+.1f} ms, blackbox {bm - cm:+.1f} ms (curl itself "
                  f"{cm:+.1f} ms over the injected delay; medians of {a.samples})", flush=True)
        h.http_json("DELETE", f"{sim}/_sim/faults")
        for delay in a.delays:
            h.http_json("PUT", f"{sim}/_sim/faults", {"signalling_delay_ms": delay})
            jc = [next(s for s in r["steps"] if s["name"] == "signalling")["phases"]["round_trip"]
                  - delay for r in once_runs(cfg_join, a.samples)]
            out["timing"][f"round_trip_{delay}ms"] = {"joincanary": h.median(jc)}
            print(f"signalling round trip at {delay} ms injected: error joincanary "
                  f"{h.median(jc):.1f} ms (median of {a.samples}; blackbox has no websocket "
                  f"flow)", flush=True)
    finally:
        h.http_json("DELETE", f"{sim}/_sim/faults")
        bb.stop()


def section_metrics(sim, a, out):
    out["metrics"] = {}
    for n in a.metric_probes:
        probes = flow_probes(sim, n, 5)
        svc = h.Service(probes, 'schedule = "*/10 * * * * *"\ntimeout = "5s"\njitter = "9s"')
        try:
            h.wait_until(lambda: runs_in(svc.metrics()) >= n, 60, 0.5, f"{n} probes to run once")
            rss0 = h.rss_kib(svc.proc.pid)
            load = h.loadavg()
            times, size, series = [], 0, 0
            for _ in range(a.scrapes):
                t = time.monotonic()
                text = svc.metrics()
                times.append((time.monotonic() - t) * 1000)
                size = len(text)
                series = sum(1 for line in text.splitlines()
                             if line and not line.startswith("#") and 'probe="' in line)
            rss1 = h.rss_kib(svc.proc.pid)
        finally:
            svc.stop()
        row = {"series_per_probe": series / n, "bytes": size, "scrape_ms": h.median(times),
               "rss_kib": rss1, "rss_kib_per_probe": rss1 / n,
               "scrape_added_kib": rss1 - rss0, "load": load}
        out["metrics"][n] = row
        print(f"{n} join-flow probes: {row['series_per_probe']:.0f} series per probe, /metrics "
              f"{size / 1024:.0f} KiB, scrape {row['scrape_ms']:.0f} ms (median of {a.scrapes}, load "
              f"{load:.1f}), "
              f"RSS {rss1 / 1024:.1f} MiB = {row['rss_kib_per_probe']:.1f} KiB per probe "
              f"({row['scrape_added_kib'] / 1024:.1f} MiB added by the scrapes)", flush=True)
    bb = Blackbox()
    try:
        body = bb.probe(f"{sim}/api/login")
        n = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
    finally:
        bb.stop()
    out["metrics"]["blackbox_series_per_http_probe"] = n
    print(f"blackbox_exporter: {n} series per HTTP probe (one /probe answer)", flush=True)


def resident_probes(sim, n):
    with open(os.path.join(h.ROOT, "probes/examples/resident-sim.toml")) as f:
        text = f.read().replace("${SIM_URL:-http://127.0.0.1:7480}", sim)
    return {f"res-{i}": text.replace('name = "sim-resident"', f'name = "res-{i}"', 1)
            for i in range(n)}


def section_resident(sim, a, out):
    """Resident sessions (probes/examples/resident-sim.toml: two websockets kept open, an
    exchange every 5 s, pings while idle) held by one `joincanary run`: CPU per session-hour
    over a window after every session is open, and the resident memory each session adds
    (RSS with N sessions minus RSS with one, over N - 1)."""
    rows = []
    for r in range(a.rounds):
        row = {}
        for n in (1, a.resident_sessions):
            svc = h.Service(resident_probes(sim, n), "")
            try:
                h.wait_until(lambda: runs_in(svc.metrics()) >= n, 60, 0.5,
                             f"{n} resident sessions to exchange once")
                load = h.loadavg()
                m0 = svc.metrics()
                c0, t0 = h.cpu_ms(svc.proc.pid), time.monotonic()
                time.sleep(a.resident_seconds)
                c1, t1 = h.cpu_ms(svc.proc.pid), time.monotonic()
                m1 = svc.metrics()
                rss = h.rss_kib(svc.proc.pid)
            finally:
                svc.stop()
            row[n] = {"cpu_s_per_session_hour": (c1 - c0) / 1000 / n / ((t1 - t0) / 3600),
                      "exchanges": runs_in(m1) - runs_in(m0),
                      "failed": runs_in(m1, "failure") - runs_in(m0, "failure"),
                      "rss_kib": rss, "load": load}
        big = row[a.resident_sessions]
        per_session_kib = (big["rss_kib"] - row[1]["rss_kib"]) / (a.resident_sessions - 1)
        rows.append({"per_session_kib": per_session_kib, **big})
        print(f"  round {r + 1} (load {big['load']:.1f}): {a.resident_sessions} sessions: "
              f"{sig(big['cpu_s_per_session_hour'])} CPU-s per session-hour, "
              f"{big['exchanges']:.0f} exchanges ({big['failed']:.0f} failed), "
              f"{per_session_kib:.0f} KiB per session", flush=True)
    cpu = h.median([x["cpu_s_per_session_hour"] for x in rows])
    kib = h.median([x["per_session_kib"] for x in rows])
    out["resident"] = {"cpu_s_per_session_hour": cpu, "kib_per_session": kib, "rounds": rows}
    print(f"resident sessions ({a.resident_sessions}, {a.resident_seconds:g} s windows, median "
          f"of {a.rounds}, {loads(rows)}): {sig(cpu)} CPU-s per session-hour, {kib:.0f} KiB per "
          f"session", flush=True)


def section_watch(sim, a, out):
    """The idle service's fixed cost with `--watch-probes` probe files: CPU per second with none
    due, the config watcher on (`--config.watch-interval`, default 5 s) and off (`0s`), each
    build, alternating round by round (the order rotating) so every build and mode meets the
    same load. The difference is what the watcher's looks cost."""
    n = a.watch_probes
    modes = [("watch 5s", ()), ("watch off", ("--config.watch-interval", "0s"))]
    res = {}
    bs = builds(a)
    for r in range(a.rounds):
        order = bs[r % len(bs):] + bs[:r % len(bs)]
        for mode, args in (modes if r % 2 == 0 else modes[::-1]):
            for name, binary in order:
                # Past the watcher's second look (5 s): the files were written just before the
                # start, so the first two looks read them all (written < 3 s before: see
                # config/fingerprint.rs); a long-running service's files are settled.
                x = jc_window(flow_probes(sim, n), NEVER, a.window, bin=binary, args=args,
                              warmup=7.0)
                res.setdefault(name, {}).setdefault(mode, []).append(x)
                print(f"  {n} probes idle round {r + 1} {mode:<9} {name:<12} "
                      f"{sig(x['cpu_ms_per_s'])} CPU-ms/s (load {x['load']:.1f})", flush=True)
    out["watch"] = {"probes": n, "window_s": a.window, "builds": {}}
    for name, by_mode in res.items():
        med = {mode: h.median([x["cpu_ms_per_s"] for x in xs]) for mode, xs in by_mode.items()}
        out["watch"]["builds"][name] = {"median_cpu_ms_per_s": med, "windows": by_mode}
        print(f"  {name}: idle with {n} probes, median of {a.rounds}: watch 5s "
              f"{sig(med['watch 5s'])} CPU-ms/s (windows "
              f"{' '.join(sig(x['cpu_ms_per_s']) for x in by_mode['watch 5s'])}; load "
              f"{load_list(by_mode['watch 5s'])}), watch off {sig(med['watch off'])} (windows "
              f"{' '.join(sig(x['cpu_ms_per_s']) for x in by_mode['watch off'])}; load "
              f"{load_list(by_mode['watch off'])}): the watcher "
              f"{sig(med['watch 5s'] - med['watch off'])} CPU-ms/s", flush=True)


def section_binary(a, out):
    bb = os.path.getsize(BB)
    out["binary"] = {name: os.path.getsize(path) for name, path in builds(a)}
    out["binary"]["blackbox"] = bb
    sizes = ", ".join(f"{name} {os.path.getsize(path):,} bytes ({os.path.getsize(path) / 1e6:.1f} "
                      f"MB)" for name, path in builds(a))
    print(f"binary: {sizes}; blackbox_exporter {bb / 1e6:.1f} MB (Debian {BB})", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true",
                    help="about 4 minutes before and after a change: the headline (HTTP probe, "
                    "flow at 20/s, blackbox), syscalls per flow, 3 rounds of 10 s, and "
                    "instructions and allocations per flow (callgrind)")
    ap.add_argument("--sections",
                    default="binary,http,flow,syscalls,instructions,profile,resident,timing,"
                    "metrics,ceiling")
    ap.add_argument("--rate", type=int, default=20, help="HTTP probes per second, both tools")
    ap.add_argument("--window", type=float, default=20, help="seconds per measured window")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--flow-rates", type=lambda s: [int(x) for x in s.split(",")],
                    default=[20, 200])
    ap.add_argument("--ceiling-rates", type=lambda s: [int(x) for x in s.split(",")],
                    default=[200, 400, 800, 1600, 3200, 6400])
    ap.add_argument("--delays", type=lambda s: [int(x) for x in s.split(",")],
                    default=[50, 100, 300, 1000])
    ap.add_argument("--samples", type=int, default=15)
    ap.add_argument("--metric-probes", type=lambda s: [int(x) for x in s.split(",")],
                    default=[100, 1000])
    ap.add_argument("--scrapes", type=int, default=5)
    ap.add_argument("--strace-seconds", type=float, default=15)
    ap.add_argument("--resident-sessions", type=int, default=100)
    ap.add_argument("--resident-seconds", type=float, default=60)
    ap.add_argument("--compare", type=parse_compare, metavar="NAME=BIN[,NAME=BIN...]",
                    help="alternate these builds of joincanary (and blackbox) window by window "
                    "in the http, flow and syscalls sections; print each one's figures, its "
                    "ratio to blackbox and to the first one named. The other sections, and the "
                    "reference server, use the last one named")
    ap.add_argument("--watch-probes", type=int, default=1000,
                    help="probe files for the watch section (the idle service, watcher on/off)")
    ap.add_argument("--no-idle", action="store_true",
                    help="skip the idle windows (the service with nothing due) and the flows "
                    "started together")
    ap.add_argument("--json", help="also write every figure to this file")
    a = ap.parse_args()
    if a.quick:
        a.sections, a.window, a.rounds, a.strace_seconds = "http,syscalls,instructions", 10, 3, 10
        a.no_idle = True
    if a.compare:
        h.BIN = a.compare[-1][1]
    sim_proc, sim = h.start_sim()
    a.sim_pid = sim_proc.pid
    print(f"load average at the start: {h.loadavg():.2f} (2 cores; the sim and blackbox run "
          f"beside the prober)", flush=True)
    out = {}
    for s in a.sections.split(","):
        if s == "binary":
            section_binary(a, out)
        elif s == "http":
            section_http(sim, a, out)
        elif s == "flow":
            section_flow(sim, a, out)
        elif s == "resident":
            section_resident(sim, a, out)
        elif s == "syscalls":
            section_syscalls(sim, a, out)
        elif s == "timing":
            section_timing(sim, a, out)
        elif s == "metrics":
            section_metrics(sim, a, out)
        elif s == "ceiling":
            section_ceiling(sim, a, out)
        elif s == "profile":
            section_profile(sim, a, out)
        elif s == "watch":
            section_watch(sim, a, out)
        elif s == "instructions":
            section_instructions(sim, a, out)
        else:
            raise SystemExit(f"unknown section {s}")
    print(f"load average at the end: {h.loadavg():.2f}", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()
