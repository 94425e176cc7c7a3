"""A platform-wide incident must not stall the prober (issue 9): `joincanary run` with N copies
of the shipped probe (default 1,000) every 5 s against one reference server, then signalling
dropped for all of them at once (the sim's `signalling_drop`), then mended. Prints the schedule
lag (median and max over the run's lag samples), the time from the fault to each probe's first
failed run being recorded (the consumer's `probe run failed` log line) and whether that was
within one run, the time from the fault to each trigger page at a loopback webhook receiver,
the time from the mend to each probe's first recorded pass and to each resolve page, scrape
times during the incident, and how long SIGTERM takes. Every loop is bounded; everything
listens on 127.0.0.1 and is stopped at exit."""

import argparse
import json
import os
import subprocess
import threading
import time
from datetime import datetime

import harness as h


def wall(ts):
    """Seconds since the epoch of a tracing JSON timestamp (`2026-11-30T01:02:03.456789Z`)."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def runs_in_log(path):
    """(wall time, probe, success) of every recorded run, from the JSON log."""
    out = []
    with open(path, "rb") as f:
        for line in f:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            msg = e.get("message") or e.get("fields", {}).get("message")
            if msg not in ("probe run succeeded", "probe run failed"):
                continue
            out.append((wall(e["timestamp"]), e.get("probe"), msg == "probe run succeeded"))
    return out


class Sampler:
    """Scrapes /metrics every `every` seconds in a thread: the schedule lag of each run (a
    probe's `probe_schedule_lag_seconds` when its `probe_last_run_timestamp_seconds` moved; runs
    that start and finish between two scrapes are sampled once), skipped ticks, and how long
    each scrape took."""

    def __init__(self, svc, every):
        self.svc, self.every = svc, every
        self.lags, self.scrapes, self.skipped = [], [], 0.0
        self.last_run = {}
        self.path = os.path.join(svc.dir, "scrape.txt")
        self.stop_evt = threading.Event()
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def loop(self):
        for _ in range(100_000):  # bounded; stopped long before
            if self.stop_evt.wait(self.every):
                return
            # curl, not urllib: this process is also the webhook receiver, and 1,000 pages
            # arriving at once would hold this thread up on the GIL and inflate the time.
            t_wall = time.time()
            p = subprocess.run(["curl", "-sS", "--max-time", "60", "-o", self.path, "-w",
                                "%{time_total}", f"{self.svc.base}/metrics"],
                               capture_output=True, text=True, timeout=90)
            if p.returncode != 0:
                continue
            self.scrapes.append((t_wall, float(p.stdout) * 1000))
            with open(self.path) as f:
                text = f.read()
            skipped, last, lag = 0.0, {}, {}
            for line in text.splitlines():
                if line.startswith("probe_schedule_lag_seconds{"):
                    lag[line.split("}", 1)[0]] = float(line.rsplit(" ", 1)[1])
                elif line.startswith("probe_last_run_timestamp_seconds{"):
                    last[line.split("{", 1)[1].split("}", 1)[0]] = line.rsplit(" ", 1)[1]
                elif line.startswith("probe_skipped_total{"):
                    skipped += float(line.rsplit(" ", 1)[1])
            for labels, ts in last.items():
                if self.last_run.get(labels) != ts:
                    self.last_run[labels] = ts
                    key = "probe_schedule_lag_seconds{" + labels
                    if key in lag:
                        self.lags.append(lag[key])
            self.skipped = skipped

    def stop(self):
        self.stop_evt.set()
        self.t.join(60)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--probes", type=int, default=1000)
    ap.add_argument("--interval", type=int, default=5, help="seconds between runs of a probe")
    ap.add_argument("--warmup", type=float, default=20, help="seconds of healthy running")
    ap.add_argument("--fault", type=float, default=30, help="seconds the fault lasts")
    ap.add_argument("--mended", type=float, default=30, help="seconds watched after the mend")
    ap.add_argument("--sample", type=float, default=2, help="seconds between /metrics scrapes")
    ap.add_argument("--json", help="also write every figure to this file")
    a = ap.parse_args()

    os.environ["JOINCANARY_LOG_FORMAT"] = "json"
    _, sim = h.start_sim()
    receiver = h.Receiver()
    iv = a.interval
    # The shipped probe with its step timeouts divided by 5 (signalling waits 1 s, so a dropped
    # message fails a run 1 s after it starts) and a 4 s deadline under the 5 s interval; runs
    # spread over the interval by the jitter, as a fleet of probes would be.
    probes = {f"join-{i}": h.shipped_probe(f"join-{i}", sim, 5, iv - 1) for i in range(a.probes)}
    defaults = (f'schedule = "{h.interval_schedule(iv)}"\ntimeout = "{iv - 1}s"\n'
                f'jitter = "{h.ms(iv * 0.98)}"')
    # The shipped policy (2 failures page, 2 passes resolve), confirmation after 1 s.
    tail = ('[alerting]\nconfirm_delay = "1s"\n'
            f'[[pager]]\nname = "hook"\ntype = "webhook"\nurl = "{receiver.url}"\n'
            'retry_base = "100ms"\n')
    t_start = time.monotonic()
    load_start = h.loadavg()
    svc = h.Service(probes, defaults, tail, "info")
    print(f"{a.probes} probes every {iv} s, started in {time.monotonic() - t_start:.1f} s; "
          f"log {svc.log.name}", flush=True)
    sampler = Sampler(svc, a.sample)
    out = {}
    try:
        time.sleep(a.warmup)
        fault_wall, fault_mono = time.time(), time.monotonic()
        h.http_json("PUT", f"{sim}/_sim/faults", {"signalling_drop": True})
        print("fault: signalling dropped for every probe", flush=True)
        time.sleep(a.fault)
        mend_wall, mend_mono = time.time(), time.monotonic()
        h.http_json("DELETE", f"{sim}/_sim/faults")
        print("mended", flush=True)
        time.sleep(a.mended)
    finally:
        sampler.stop()
        t0 = time.monotonic()
        h.stop(svc.proc, 60)
        sigterm_s = time.monotonic() - t0
        code = svc.proc.returncode
    svc.log.flush()

    runs = runs_in_log(svc.log.name)
    names = list(probes)
    first_fail, first_pass, passes_before_fail = {}, {}, {}
    for t, probe, ok in runs:
        if fault_wall <= t < mend_wall:
            if not ok and probe not in first_fail:
                first_fail[probe] = t - fault_wall
            elif ok and probe not in first_fail:
                passes_before_fail[probe] = passes_before_fail.get(probe, 0) + 1
        if t >= mend_wall and ok and probe not in first_pass:
            first_pass[probe] = t - mend_wall
    # "Within one run": at most one pass recorded after the fault (a run already past its
    # signalling step when the fault came) before the first failure.
    late = [p for p in names if passes_before_fail.get(p, 0) > 1]
    ff = [first_fail[p] for p in names if p in first_fail]
    fp = [first_pass[p] for p in names if p in first_pass]

    def page_times(kind, t_mono):
        seen = {}
        for t, e in receiver.since(t_mono):
            if e.get("event") == kind and e.get("severity") == "critical" and not e.get("test"):
                seen.setdefault(e.get("probe"), t - t_mono)
        return seen

    triggers = page_times("trigger", fault_mono)
    resolves = page_times("resolve", mend_mono)
    trig = [v for k, v in triggers.items() if k in probes]
    res = [v for k, v in resolves.items() if k in probes]
    lags = sampler.lags
    scrape_ms = [ms for _, ms in sampler.scrapes]
    during = [ms for t, ms in sampler.scrapes if fault_wall <= t < mend_wall]
    healthy_runs = sum(1 for t, _, _ in runs if t < fault_wall)

    def line(label, xs, n=a.probes):
        return (f"{label}: {len(xs)}/{n}, median {h.median(xs):.2f} s, p99 {pct(xs, 0.99):.2f} s, "
                f"max {max(xs) if xs else float('nan'):.2f} s")

    print(f"runs recorded: {len(runs)} ({healthy_runs} before the fault, "
          f"{len(runs) / (time.monotonic() - t_start):.0f}/s overall); skipped ticks "
          f"{sampler.skipped:.0f}")
    print(f"schedule lag ({len(lags)} runs sampled, scrapes every {a.sample:g} s): "
          f"median {h.median(lags) * 1000:.1f} ms, p99 {pct(lags, 0.99) * 1000:.1f} ms, "
          f"max {max(lags, default=float('nan')) * 1000:.1f} ms")
    print(line("fault -> failure recorded", ff) +
          f"; within one run: {a.probes - len(late) - (a.probes - len(ff))}/{a.probes}")
    print(line("fault -> trigger page received", trig))
    print(line("mend -> pass recorded", fp))
    print(line("mend -> resolve page received", res))
    print(f"/metrics scrape: median {h.median(scrape_ms):.1f} ms, max "
          f"{max(scrape_ms, default=float('nan')):.1f} ms ({len(scrape_ms)} scrapes; during "
          f"the fault median {h.median(during):.1f} ms)")
    print(f"SIGTERM -> exit: {sigterm_s:.2f} s (exit code {code})")
    print(f"load average: {load_start:.1f} at the start, {h.loadavg():.1f} at the end (2 cores)")
    out = {"load_start": load_start, "load_end": h.loadavg(), "probes": a.probes, "interval_s": iv, "runs": len(runs), "skipped": sampler.skipped,
           "lag_median_s": h.median(lags), "lag_p99_s": pct(lags, 0.99),
           "lag_max_s": max(lags, default=None),
           "fail_recorded_s": {"n": len(ff), "median": h.median(ff), "max": max(ff, default=None),
                               "late": late},
           "trigger_s": {"n": len(trig), "median": h.median(trig), "max": max(trig, default=None)},
           "pass_recorded_s": {"n": len(fp), "median": h.median(fp), "max": max(fp, default=None)},
           "resolve_s": {"n": len(res), "median": h.median(res), "max": max(res, default=None)},
           "scrape_ms_median": h.median(scrape_ms), "sigterm_s": sigterm_s, "exit_code": code}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
