"""Cost and accuracy of joincanary side by side with Debian's prometheus-blackbox-exporter, on
the same loopback login endpoint (the reference server's POST /api/login) at the same rate, in
alternating windows, each a fresh process measured after a warm-up. Prints every figure, the
medians over the rounds and joincanary/blackbox ratios. All traffic stays on 127.0.0.1."""

import argparse
import concurrent.futures as cf
import json
import os
import re
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


def jc_window(probes, defaults, seconds, scrape_every=15.0):
    """CPU-ms per run of `joincanary run` over `seconds` after the warm-up, plus the counts."""
    svc = h.Service(probes, defaults)
    try:
        time.sleep(WARMUP)
        m0 = svc.metrics()
        c0 = h.cpu_ms(svc.proc.pid)
        t_end = time.monotonic() + seconds
        next_scrape = time.monotonic() + scrape_every
        while time.monotonic() < t_end:  # a Prometheus scraping every 15 s
            time.sleep(min(0.2, max(0.0, t_end - time.monotonic())))
            if time.monotonic() >= next_scrape:
                svc.metrics()
                next_scrape += scrape_every
        c1 = h.cpu_ms(svc.proc.pid)
        m1 = svc.metrics()
    finally:
        svc.stop()
    runs = runs_in(m1) - runs_in(m0)
    failed = runs_in(m1, "failure") - runs_in(m0, "failure")
    return {"cpu_ms_per_run": (c1 - c0) / max(runs, 1), "runs": runs, "failed": failed,
            "skipped": skipped_in(m1) - skipped_in(m0),
            "lag_max_s": gauge_max(m1, "probe_schedule_lag_seconds"),
            "rate": runs / seconds}


class Blackbox:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="jc-bench-bb-")
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
            c0 = h.cpu_ms(bb.proc.pid)
            n = drive(seconds)
            c1 = h.cpu_ms(bb.proc.pid)
    finally:
        bb.stop()
    return {"cpu_ms_per_run": (c1 - c0) / max(n, 1), "runs": n, "failed": ok[1],
            "rate": n / seconds}


def section_http(sim, a, out):
    probes = {f"login-{i}": login_probe(f"login-{i}", sim) for i in range(a.rate)}
    jc, bb = [], []
    for r in range(a.rounds):
        jc.append(jc_window(probes, every_second(a.rate), a.window))
        bb.append(bb_window(sim, a.rate, a.window))
        print(f"  round {r + 1}: joincanary {jc[-1]['cpu_ms_per_run']:.3f} CPU-ms/probe "
              f"({jc[-1]['runs']:.0f} runs, {jc[-1]['failed']:.0f} failed), blackbox "
              f"{bb[-1]['cpu_ms_per_run']:.3f} ({bb[-1]['runs']} probes, {bb[-1]['failed']} failed)",
              flush=True)
    j = h.median([x["cpu_ms_per_run"] for x in jc])
    b = h.median([x["cpu_ms_per_run"] for x in bb])
    out["http"] = {"joincanary": j, "blackbox": b, "ratio": j / b, "rounds": jc + bb}
    print(f"HTTP probe at {a.rate}/s: joincanary {j:.3f} CPU-ms, blackbox {b:.3f} CPU-ms, "
          f"ratio {j / b:.2f} (median of {a.rounds})", flush=True)


def flow_probes(sim, n, ratio=10, run_timeout="900ms"):
    return {f"join-{i}": h.shipped_probe(f"join-{i}", sim, ratio, 0.9) for i in range(n)}


def section_flow(sim, a, out):
    out["flow"] = {}
    for rate in a.flow_rates:
        xs = [jc_window(flow_probes(sim, rate), every_second(rate), a.window)
              for _ in range(a.rounds)]
        med = h.median([x["cpu_ms_per_run"] for x in xs])
        out["flow"][rate] = {"cpu_ms_per_flow": med, "rounds": xs}
        print(f"full join flow at {rate}/s: {med:.3f} CPU-ms per flow (median of {a.rounds}; "
              f"failed {sum(x['failed'] for x in xs):.0f})", flush=True)


def section_ceiling(sim, a, out):
    best = 0
    rows = []
    for rate in a.ceiling_rates:
        x = jc_window(flow_probes(sim, rate), every_second(rate), a.window)
        clean = x["failed"] == 0 and x["skipped"] == 0 and x["lag_max_s"] < 0.5 \
            and x["rate"] >= rate * 0.95
        rows.append({"rate": rate, **x, "clean": clean})
        print(f"  {rate} flows/s: {x['rate']:.0f}/s done, failed {x['failed']:.0f}, skipped "
              f"{x['skipped']:.0f}, lag max {x['lag_max_s'] * 1000:.0f} ms -> "
              f"{'clean' if clean else 'not clean'}", flush=True)
        if not clean:
            break
        best = rate
    out["ceiling"] = {"flows_per_min": best * 60, "rows": rows}
    print(f"ceiling: {best * 60} flows/min clean (highest rate tried without failures, skips "
          f"or 0.5 s lag; the sim shares the cores)", flush=True)


def once_runs(config, n):
    res = []
    for _ in range(n):
        p = subprocess.run([h.BIN, "once", "--config", config, "--format", "json"],
                           capture_output=True, timeout=60,
                           env=dict(os.environ, JOINCANARY_LOG="error"))
        res.append(json.loads(p.stdout)["probes"][0])
    return res


def section_timing(sim, a, out):
    d = tempfile.mkdtemp(prefix="jc-bench-timing-")
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
            bbe = []
            for _ in range(a.samples):
                body = bb.probe(f"{sim}/api/login")
                m = re.search(r'probe_http_duration_seconds\{phase="processing"\} (\S+)', body)
                bbe.append(float(m.group(1)) * 1000 - delay)
            out["timing"][f"login_{delay}ms"] = {"joincanary": h.median(jc),
                                                 "blackbox": h.median(bbe)}
            print(f"login first byte at {delay} ms injected: error joincanary "
                  f"{h.median(jc):.2f} ms, blackbox {h.median(bbe):.2f} ms (median of "
                  f"{a.samples})", flush=True)
        h.http_json("DELETE", f"{sim}/_sim/faults")
        for delay in a.delays:
            h.http_json("PUT", f"{sim}/_sim/faults", {"signalling_delay_ms": delay})
            jc = [next(s for s in r["steps"] if s["name"] == "signalling")["phases"]["round_trip"]
                  - delay for r in once_runs(cfg_join, a.samples)]
            out["timing"][f"round_trip_{delay}ms"] = {"joincanary": h.median(jc)}
            print(f"signalling round trip at {delay} ms injected: error joincanary "
                  f"{h.median(jc):.2f} ms (median of {a.samples}; blackbox has no websocket "
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
               "scrape_added_kib": rss1 - rss0}
        out["metrics"][n] = row
        print(f"{n} join-flow probes: {row['series_per_probe']:.0f} series per probe, /metrics "
              f"{size / 1024:.0f} KiB, scrape {row['scrape_ms']:.1f} ms (median of {a.scrapes}), "
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


def section_binary(out):
    jc = os.path.getsize(h.BIN)
    bb = os.path.getsize(BB)
    out["binary"] = {"joincanary": jc, "blackbox": bb}
    print(f"binary: joincanary {jc / 1e6:.1f} MB, blackbox_exporter {bb / 1e6:.1f} MB "
          f"(Debian {BB})", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sections", default="binary,http,flow,timing,metrics,ceiling")
    ap.add_argument("--rate", type=int, default=20, help="HTTP probes per second, both tools")
    ap.add_argument("--window", type=float, default=20, help="seconds per measured window")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--flow-rates", type=lambda s: [int(x) for x in s.split(",")],
                    default=[20, 200])
    ap.add_argument("--ceiling-rates", type=lambda s: [int(x) for x in s.split(",")],
                    default=[200, 400, 800])
    ap.add_argument("--delays", type=lambda s: [int(x) for x in s.split(",")],
                    default=[50, 100, 300, 1000])
    ap.add_argument("--samples", type=int, default=15)
    ap.add_argument("--metric-probes", type=lambda s: [int(x) for x in s.split(",")],
                    default=[100, 1000])
    ap.add_argument("--scrapes", type=int, default=5)
    ap.add_argument("--json", help="also write every figure to this file")
    a = ap.parse_args()
    _, sim = h.start_sim()
    out = {}
    for s in a.sections.split(","):
        if s == "binary":
            section_binary(out)
        elif s == "http":
            section_http(sim, a, out)
        elif s == "flow":
            section_flow(sim, a, out)
        elif s == "timing":
            section_timing(sim, a, out)
        elif s == "metrics":
            section_metrics(sim, a, out)
        elif s == "ceiling":
            section_ceiling(sim, a, out)
        else:
            raise SystemExit(f"unknown section {s}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()
