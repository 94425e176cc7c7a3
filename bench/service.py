"""`joincanary run` as a service: resident memory, CPU and schedule lag with N copies of the
shipped probe (the full 5-step join flow) every 5 s against one reference server, scraped once a
second. Each configuration runs ROUNDS times in a fresh process; prints each round and the
medians. Lag is taken per run, not from one final scrape: every second the scrape's
`probe_schedule_lag_seconds` of each probe whose `probe_last_run_timestamp_seconds` moved is one
sample (one run). All traffic stays on 127.0.0.1; every process is stopped at exit."""

import argparse
import json
import time

import harness as h


def series(text, name):
    """{probe: value} of a per-probe gauge."""
    out = {}
    prefix = name + "{"
    for line in text.splitlines():
        if line.startswith(prefix):
            labels, value = line[len(prefix):].rsplit("} ", 1)
            probe = labels.split('probe="', 1)[1].split('"', 1)[0]
            out[probe] = float(value)
    return out


def total(text, name, match=""):
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and match in line)


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def one_round(sim, n, seconds, interval):
    probes = {f"join-{i}": h.shipped_probe(f"join-{i}", sim, 5, interval - 1) for i in range(n)}
    defaults = (f'schedule = "{h.interval_schedule(interval)}"\ntimeout = "{interval - 1}s"\n'
                f'jitter = "{h.ms(interval * 0.98)}"')
    svc = h.Service(probes, defaults)
    try:
        # One full interval (plus the jitter spread) so every probe has run before measuring.
        time.sleep(interval + 1)
        load = h.loadavg()
        m0 = svc.metrics()
        c0, t0 = h.cpu_ms(svc.proc.pid), time.monotonic()
        seen = series(m0, "probe_last_run_timestamp_seconds")
        lags, rss, scrape_ms = [], [], []
        end = t0 + seconds
        for _ in range(int(seconds) + 5):  # bounded: one pass a second
            if time.monotonic() >= end:
                break
            time.sleep(max(0.0, min(1.0, end - time.monotonic())))
            t = time.monotonic()
            text = svc.metrics()
            scrape_ms.append((time.monotonic() - t) * 1000)
            rss.append(h.rss_kib(svc.proc.pid))
            last = series(text, "probe_last_run_timestamp_seconds")
            lag = series(text, "probe_schedule_lag_seconds")
            for probe, ts in last.items():
                if seen.get(probe) != ts:
                    seen[probe] = ts
                    if probe in lag:
                        lags.append(lag[probe])
        c1, t1 = h.cpu_ms(svc.proc.pid), time.monotonic()
        m1 = svc.metrics()
    finally:
        svc.stop()
    runs = total(m1, "probe_runs_total") - total(m0, "probe_runs_total")
    return {
        "probes": n, "seconds": t1 - t0, "runs": runs, "load": load,
        "failed": total(m1, "probe_runs_total", 'result="failure"')
        - total(m0, "probe_runs_total", 'result="failure"'),
        "skipped": total(m1, "probe_skipped_total") - total(m0, "probe_skipped_total"),
        "cpu_pct": (c1 - c0) / (t1 - t0) / 10, "cpu_ms_per_run": (c1 - c0) / max(runs, 1),
        "rss_mib_median": h.median(rss) / 1024, "rss_mib_max": max(rss, default=0) / 1024,
        "lag_ms_median": h.median(lags) * 1000, "lag_ms_p99": pct(lags, 0.99) * 1000,
        "lag_ms_max": max(lags, default=float("nan")) * 1000, "lag_samples": len(lags),
        "scrape_ms_median": h.median(scrape_ms),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--probes", type=lambda s: [int(x) for x in s.split(",")],
                    default=[1, 100, 1000])
    ap.add_argument("--seconds", type=float, default=60, help="measured seconds per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--interval", type=int, default=5)
    ap.add_argument("--json", help="also write every figure to this file")
    a = ap.parse_args()
    _, sim = h.start_sim()
    cols = ["load", "cpu_pct", "cpu_ms_per_run", "rss_mib_median", "rss_mib_max", "lag_ms_median",
            "lag_ms_p99", "lag_ms_max", "scrape_ms_median"]
    out = {}
    for n in a.probes:
        rounds = []
        for r in range(a.rounds):
            x = one_round(sim, n, a.seconds, a.interval)
            rounds.append(x)
            print(f"  {n} probes, round {r + 1}: " + ", ".join(
                f"{c} {x[c]:.2f}" for c in cols) +
                f", runs {x['runs']:.0f} (failed {x['failed']:.0f}, skipped {x['skipped']:.0f}), "
                f"{x['lag_samples']} lag samples", flush=True)
        med = {c: h.median([x[c] for x in rounds]) for c in cols}
        out[n] = {"median": med, "rounds": rounds}
        print(f"{n} probes every {a.interval} s, {a.seconds:g} s x {a.rounds} (medians): CPU "
              f"{med['cpu_pct']:.1f} % of a core ({med['cpu_ms_per_run']:.3f} CPU-ms per run), "
              f"RSS {med['rss_mib_median']:.1f} MiB (max {med['rss_mib_max']:.1f}), schedule lag "
              f"median {med['lag_ms_median']:.2f} ms, p99 {med['lag_ms_p99']:.2f} ms, max "
              f"{med['lag_ms_max']:.2f} ms, scrape {med['scrape_ms_median']:.1f} ms", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
