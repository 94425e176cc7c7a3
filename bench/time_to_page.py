"""The incident, reproduced: `joincanary run` with the shipped alert policy probes two
Redis-backed sims (one shipped sim-join probe each, sharing one real redis-server); faults are
injected at offsets spread across the interval; prints, per fault, the time from injection to
the trigger at a loopback webhook receiver, from recovery to the resolve, and the step and
reason named. Time may be compressed: every duration of the schedule, policy and probe is
divided by RATIO (RATIO=1 is the shipped every-minute schedule)."""

import argparse
import json
import sys
import time

import harness as h

# fault name -> (inject(ctx), undo(ctx), expected failed step)
FAULTS = {
    "redis_oom": (lambda c: c.redis.oom(), lambda c: c.redis.oom_undo(), "signalling"),
    "redis_pause": (lambda c: c.redis.pause(), lambda c: c.redis.pause_undo(), "signalling"),
    "redis_sigstop": (lambda c: c.redis.sigstop(), lambda c: c.redis.sigstop_undo(), "signalling"),
    # Each DEBUG SLEEP lasts ten times the sim's Redis deadline, back to back: a join meets
    # the rest of a sleep, so about one in ten still gets through (a slow, not a dead, Redis).
    "redis_slow": (lambda c: c.redis.slow(10 * c.redis_timeout_s),
                   lambda c: c.redis.slow_undo(), "signalling"),
    "sim_signalling_drop": (lambda c: c.sim_faults({"signalling_drop": True}),
                            lambda c: c.sim_faults(None), "signalling"),
    "sim_login_500": (lambda c: c.sim_faults({"login_status": 500}),
                      lambda c: c.sim_faults(None), "login"),
    "sim_ws_reject_503": (lambda c: c.sim_faults({"ws_reject_status": 503}),
                          lambda c: c.sim_faults(None), "websocket"),
}

PROBES = ("join-a", "join-b")


class Ctx:
    def __init__(self, ratio, log_level):
        self.ratio = ratio
        self.interval = 60 / ratio
        self.redis_timeout_s = 2.0 / ratio
        self.redis = h.Redis()
        self.sims = [h.start_sim(self.redis.url, h.ms(self.redis_timeout_s))[1] for _ in range(2)]
        self.receiver = h.Receiver()
        probes = {name: h.shipped_probe(name, url, ratio) for name, url in zip(PROBES, self.sims)}
        defaults = (f'schedule = "{h.interval_schedule(round(self.interval))}"\n'
                    f'timeout = "{h.ms(20 / ratio)}"\njitter = "{h.ms(10 / ratio)}"')
        # The shipped policy ([alerting] defaults: 2 failures page, 2 passes resolve), its
        # confirmation delay scaled like every other duration.
        tail = (f'[alerting]\nconfirm_delay = "{h.ms(10 / ratio)}"\n'
                f'[[pager]]\nname = "hook"\ntype = "webhook"\nurl = "{self.receiver.url}"\n'
                f'retry_base = "{h.ms(1 / ratio)}"\n')
        self.svc = h.Service(probes, defaults, tail, log_level)

    def sim_faults(self, body):
        for url in self.sims:
            if body is None:
                h.http_json("DELETE", f"{url}/_sim/faults")
            else:
                h.http_json("PUT", f"{url}/_sim/faults", body)

    def runs(self, probe):
        p = self.svc.probe(probe)
        return p["runs"] if p else 0

    def open_alert(self, probe):
        p = self.svc.probe(probe)
        return bool(p and p.get("alerts"))

    def healthy(self):
        for name in PROBES:
            p = self.svc.probe(name)
            if not p or p.get("alerts") or not p.get("last") or not p["last"].get("success"):
                return False
        return True


def event_for(probe, kind):
    return lambda e: (e.get("probe") == probe and e.get("event") == kind
                      and e.get("severity") == "critical" and not e.get("test"))


def one_cycle(c, fault, offset_s):
    inject, undo, expected = FAULTS[fault]
    bound = 5 * c.interval + 10
    h.wait_until(c.healthy, bound, 0.05, "both probes healthy")
    # Offsets are measured from the end of a scheduled run of join-a.
    n0 = c.runs("join-a")
    h.wait_until(lambda: c.runs("join-a") > n0, bound, 0.01, "a run of join-a")
    time.sleep(offset_s)
    t_inject = time.monotonic()
    inject(c)
    out = {"fault": fault, "offset_s": offset_s, "expected_step": expected, "probes": {}}
    try:
        for probe in PROBES:
            hit = h.wait_until(lambda p=probe: c.receiver.first(t_inject, event_for(p, "trigger")),
                               bound, 0.01, f"{probe} trigger")
            t, e = hit
            out["probes"][probe] = {"trigger_s": t - t_inject, "step": e.get("failed_step"),
                                    "reason": e.get("reason")}
    finally:
        undo(c)
        # Recovered once the undo returns (a DEBUG SLEEP loop ends with its last sleep).
        t_recover = time.monotonic()
    for probe in PROBES:
        trig = t_inject + out["probes"][probe]["trigger_s"]
        t, _ = h.wait_until(lambda p=probe: c.receiver.first(trig, event_for(p, "resolve")),
                            bound, 0.01, f"{probe} resolve")
        # A resolve before recovery: the fault let two runs in a row through (it flapped).
        out["probes"][probe]["resolve_s"] = t - t_recover
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ratio", type=float, default=10, help="time compression (1 = real time)")
    ap.add_argument("--offsets", type=int, default=4, help="fault offsets across the interval")
    ap.add_argument("--faults", default=",".join(FAULTS), help="comma-separated fault names")
    ap.add_argument("--json", help="also write every cycle's result to this file")
    ap.add_argument("--log-level", default="warn")
    a = ap.parse_args()
    faults = [f for f in a.faults.split(",") if f]
    for f in faults:
        if f not in FAULTS:
            sys.exit(f"unknown fault {f}; known: {', '.join(FAULTS)}")
    c = Ctx(a.ratio, a.log_level)
    interval = c.interval
    print(f"# ratio {a.ratio:g}: interval {interval:g} s, confirm_delay {10 / a.ratio:g} s, "
          f"sim redis timeout {c.redis_timeout_s * 1000:g} ms; {a.offsets} offsets; "
          f"times below are scaled back to real (x{a.ratio:g})", flush=True)
    results = []
    for fault in faults:
        for k in range(a.offsets):
            r = one_cycle(c, fault, k * interval / a.offsets)
            results.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
    c.svc.stop()
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"ratio": a.ratio, "offsets": a.offsets, "results": results}, f, indent=1)
    print(f"{'fault':<22} {'trigger worst s':>15} {'trigger median s':>16} "
          f"{'resolve worst s':>15} {'step (reason)':<40} {'step right':>10}")
    for fault in faults:
        rows = [r for r in results if r["fault"] == fault]
        trig = [p["trigger_s"] * a.ratio for r in rows for p in r["probes"].values()]
        res = [p["resolve_s"] * a.ratio for r in rows for p in r["probes"].values()]
        named = sorted({f'{p["step"]} ({p["reason"]})' for r in rows for p in r["probes"].values()})
        right = sum(p["step"] == r["expected_step"] for r in rows for p in r["probes"].values())
        total = sum(len(r["probes"]) for r in rows)
        print(f"{fault:<22} {max(trig):>15.1f} {h.median(trig):>16.1f} {max(res):>15.1f} "
              f"{', '.join(named):<40} {right:>4}/{total:<5}")


if __name__ == "__main__":
    main()
