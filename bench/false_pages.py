"""False pages: a soak of `joincanary run` (the shipped policy and probe, several copies against
two Redis-backed sims) with transient blips armed at random in about 5 % of runs — one dropped
signalling message, one login answered 500, one 200 ms signalling spike — each a one-shot fault
consumed by exactly one run. Counts the pages a loopback webhook receiver gets (goal: 0)."""

import argparse
import random
import sys
import time

import harness as h

BLIPS = {
    "drop": {"signalling_drop_next": 1},
    "login_500": {"login_error_next": 1},
    "spike_200ms": {"signalling_spike_next": 1, "signalling_spike_ms": 200},
}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=1000, help="stop after this many runs")
    ap.add_argument("--probes", type=int, default=6)
    ap.add_argument("--interval", type=int, default=2, help="seconds between a probe's runs")
    ap.add_argument("--rate", type=float, default=0.05, help="share of runs given a blip")
    ap.add_argument("--seed", type=int, default=11)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    ratio = 60 / a.interval
    redis = h.Redis()
    sims = [h.start_sim(redis.url)[1] for _ in range(2)]
    receiver = h.Receiver()
    names = [f"join-{i}" for i in range(a.probes)]
    # Step timeouts stay long enough that a 200 ms spike is a blip, not a failure; the run's
    # deadline and the confirmation delay are scaled to the compressed interval.
    probes = {n: h.shipped_probe(n, sims[i % 2], 5, a.interval * 0.9)
              for i, n in enumerate(names)}
    defaults = (f'schedule = "{h.interval_schedule(a.interval)}"\n'
                f'timeout = "{h.ms(a.interval * 0.9)}"\njitter = "{h.ms(a.interval * 0.9)}"')
    tail = (f'[alerting]\nconfirm_delay = "{h.ms(10 / ratio)}"\n'
            f'[[pager]]\nname = "hook"\ntype = "webhook"\nurl = "{receiver.url}"\n')
    svc = h.Service(probes, defaults, tail)
    t0 = time.monotonic()
    runs_per_s = a.probes / a.interval
    mean_gap = 1 / (runs_per_s * a.rate)
    # Two blips closer than one interval + the confirmation could hit one probe twice in a row:
    # that is a real (if short) outage, not a blip, so arming keeps them apart.
    min_gap = a.interval + 10 / ratio + 0.5
    armed = {k: 0 for k in BLIPS}
    bound = a.runs / runs_per_s * 3 + 60

    def total_runs():
        return sum(p["runs"] for p in svc.status().get("probes", []))

    next_blip = time.monotonic() + max(min_gap, rnd.expovariate(1 / mean_gap))
    done = 0
    while done < a.runs:
        if time.monotonic() - t0 > bound:
            sys.exit(f"soak did not reach {a.runs} runs in {bound:.0f} s")
        now = time.monotonic()
        if now >= next_blip:
            kind = rnd.choice(list(BLIPS))
            h.http_json("PUT", f"{rnd.choice(sims)}/_sim/faults", BLIPS[kind])
            armed[kind] += 1
            next_blip = now + max(min_gap, rnd.expovariate(1 / mean_gap))
        time.sleep(0.05)
        done = total_runs()
    # Let the last blip's confirmation run and any alert settle before counting.
    time.sleep(a.interval * 3)
    metrics = svc.metrics()
    svc.stop()
    failed = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                 if line.startswith("probe_runs_total{") and 'result="failure"' in line)
    runs = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("probe_runs_total{"))
    pages = [e for _, e in receiver.since(t0) if e.get("event") == "trigger"]
    blips = sum(armed.values())
    print(f"runs {runs:.0f} (scheduled + confirmations), probes {a.probes} every {a.interval} s, "
          f"{time.monotonic() - t0:.0f} s")
    print(f"blips armed {blips} ({blips / max(runs, 1) * 100:.1f} % of runs): "
          + ", ".join(f"{k} {v}" for k, v in armed.items()))
    print(f"failed runs {failed:.0f}")
    print(f"pages {len(pages)} (goal 0)")
    for e in pages:
        print(f"  page: {e.get('probe')} {e.get('severity')} {e.get('failed_step')} {e.get('reason')}")


if __name__ == "__main__":
    main()
