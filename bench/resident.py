"""The resident participant against the incident: `joincanary run` with one resident probe (two
participants on two Redis-backed sims sharing one real redis-server, so every exchange crosses
Redis pub/sub) and a loopback webhook receiver.

1. time to page: Redis out of memory and `CLIENT PAUSE WRITE`, each injected at several offsets
   across the exchange interval; prints the time from injection to the trigger (goal < 30 s),
   from recovery to the resolve, the step and reason named and the reconnects counted; `--hold`
   keeps the fault on that long after the page (a long outage: the session is re-established,
   the opens fail and the reconnect backoff grows), `--reconnect-max` overrides the probe's;
2. soak: single dropped signalling messages (`signalling_drop_next: 1`, never two exchanges in a
   row) over N exchanges; counts pages (goal 0).

The shipped resident timings (every 5 s, confirm 2 s, step timeouts 3 s) by default; `--ratio`
divides the cadence and the confirmation delay (not the step timeouts) to compress time."""

import argparse
import json
import random
import sys
import time

import harness as h

PROBE = "sim-resident"


def probe_text(sim_a, sim_b, every_s, timeout_s, step_timeout_s, reconnect_max=None):
    """probes/examples/resident-sim.toml with participant a on sim A and b on sim B (each logs
    in to its own sim), so an exchange travels a -> sim A -> Redis -> sim B -> b."""
    with open(f"{h.ROOT}/probes/examples/resident-sim.toml") as f:
        text = f.read()
    login_b = (
        '[[steps]]\nname = "login-b"\nkind = "http"\nmethod = "POST"\n'
        f'url = "{sim_b}/api/login"\n'
        'json = { username = "canary", password = "canary-pass" }\n'
        'expect_status = [200]\nextract = { token_b = { json = "$.token" } }\ntimeout = "5s"\n\n'
    )
    text = text.replace("[[steps]]\nname = \"connect-a\"", login_b + "[[steps]]\nname = \"connect-a\"", 1)
    head, tail = text.split('name = "connect-b"', 1)
    tail = tail.replace("${SIM_URL:-http://127.0.0.1:7480}/ws?token={{token}}",
                        f"{sim_b}/ws?token={{{{token_b}}}}", 1)
    text = head + 'name = "connect-b"' + tail
    text = text.replace("${SIM_URL:-http://127.0.0.1:7480}", sim_a)
    text = text.replace('every = "5s"', f'every = "{h.ms(every_s)}"')
    text = text.replace('timeout = "4s"', f'timeout = "{h.ms(timeout_s)}"')
    text = text.replace('timeout = "3s"', f'timeout = "{h.ms(step_timeout_s)}"')
    if reconnect_max:
        text = text.replace('reconnect_max = "5s"', f'reconnect_max = "{reconnect_max}"', 1)
    return text


class Ctx:
    def __init__(self, ratio, step_timeout_s, log_level, reconnect_max=None):
        self.every = 5 / ratio
        self.redis = h.Redis()
        # The sim's own Redis deadline (2 s): a paused Redis is a timed-out join, as in the incident.
        self.sims = [h.start_sim(self.redis.url, "2s")[1] for _ in range(2)]
        self.receiver = h.Receiver()
        probes = {PROBE: probe_text(self.sims[0], self.sims[1], self.every,
                                    max(4, step_timeout_s + 1), step_timeout_s, reconnect_max)}
        tail = (f'[alerting]\nconfirm_delay = "{h.ms(2 / ratio)}"\n'
                f'[[pager]]\nname = "hook"\ntype = "webhook"\nurl = "{self.receiver.url}"\n'
                f'retry_base = "100ms"\n')
        self.svc = h.Service(probes, "", tail, log_level)

    def runs(self):
        p = self.svc.probe(PROBE)
        return p["runs"] if p else 0

    def healthy(self):
        p = self.svc.probe(PROBE)
        return bool(p and not p.get("alerts") and p.get("last") and p["last"].get("success"))

    def counter(self, prefix):
        for line in self.svc.metrics().splitlines():
            if line.startswith(prefix):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def reconnects(self):
        return self.counter('probe_resident_reconnects_total{cause="failure"')

    def failed_runs(self):
        return self.counter(f'probe_runs_total{{probe="{PROBE}",region="bench",result="failure"')


def event(kind):
    return lambda e: (e.get("probe") == PROBE and e.get("event") == kind
                      and e.get("severity") == "critical" and not e.get("test"))


FAULTS = {
    "redis_oom": (lambda c: c.redis.oom(), lambda c: c.redis.oom_undo()),
    "redis_pause": (lambda c: c.redis.pause(), lambda c: c.redis.pause_undo()),
}


def time_to_page(c, fault, offset_s, hold_s=0):
    inject, undo = FAULTS[fault]
    bound = 120 + hold_s
    h.wait_until(c.healthy, bound, 0.05, "the resident probe healthy")
    n0 = c.runs()
    h.wait_until(lambda: c.runs() > n0, bound, 0.005, "an exchange")
    time.sleep(offset_s)
    reconnects0 = c.reconnects()
    t_inject = time.monotonic()
    inject(c)
    try:
        t, e = h.wait_until(lambda: c.receiver.first(t_inject, event("trigger")), bound, 0.005,
                            "the trigger")
        time.sleep(hold_s)
    finally:
        undo(c)
        t_recover = time.monotonic()
    r, _ = h.wait_until(lambda: c.receiver.first(t, event("resolve")), bound, 0.01, "the resolve")
    return {"fault": fault, "offset_s": round(offset_s, 3), "trigger_s": round(t - t_inject, 3),
            "resolve_s": round(r - t_recover, 3), "step": e.get("failed_step"),
            "reason": e.get("reason"), "error": (e.get("details") or {}).get("error")
            or e.get("summary"), "reconnects": c.reconnects() - reconnects0}


def soak(c, exchanges, rate, seed):
    """Arms single drops on sim A (where participant a sends) at about `rate` of exchanges,
    never on two exchanges in a row; returns the counts."""
    rnd = random.Random(seed)
    h.wait_until(c.healthy, 120, 0.05, "the resident probe healthy")
    t0 = time.monotonic()
    start_runs = c.runs()
    failed0 = c.failed_runs()
    drops = 0
    last_armed_at = -10
    last_drawn = -1
    bound = exchanges * (c.every + 3) * 2 + 120
    while c.runs() - start_runs < exchanges:
        if time.monotonic() - t0 > bound:
            sys.exit(f"soak did not reach {exchanges} exchanges in {bound:.0f} s")
        n = c.runs() - start_runs
        # One draw per exchange; one drop is consumed by one exchange, and the next is armed
        # at least 3 exchanges later (two in a row would be an outage, not a blip).
        draw = n != last_drawn
        last_drawn = n
        if draw and n - last_armed_at >= 3 and rnd.random() < rate:
            h.http_json("PUT", f"{c.sims[0]}/_sim/faults", {"signalling_drop_next": 1})
            drops += 1
            last_armed_at = n
            h.wait_until(lambda: c.runs() - start_runs > n, 60, 0.005, "the exchange")
        else:
            time.sleep(min(0.05, c.every / 4))
    time.sleep(c.every * 3)
    runs = c.runs() - start_runs
    pages = [e for _, e in c.receiver.since(t0) if e.get("event") == "trigger"]
    return {"exchanges": runs, "drops_armed": drops, "failed_runs": c.failed_runs() - failed0,
            "pages": len(pages), "reconnects": c.reconnects(),
            "seconds": round(time.monotonic() - t0, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ratio", type=float, default=1, help="divide every and confirm_delay by this")
    ap.add_argument("--offsets", type=int, default=4, help="fault offsets across the interval")
    ap.add_argument("--faults", default="redis_oom,redis_pause")
    ap.add_argument("--soak", type=int, default=1000, help="exchanges in the soak (0: none)")
    ap.add_argument("--soak-ratio", type=float, default=10, help="--ratio of the soak")
    ap.add_argument("--rate", type=float, default=0.05, help="share of soak exchanges dropped")
    ap.add_argument("--step-timeout", type=float, default=3, help="exchange step timeouts, s")
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--log-level", default="warn")
    ap.add_argument("--hold", type=float, default=0, help="seconds the fault stays after the page")
    ap.add_argument("--reconnect-max", help="the probe's reconnect_max (default: the example's)")
    a = ap.parse_args()
    out = {"ratio": a.ratio, "results": [], "soak": None}
    faults = [f for f in a.faults.split(",") if f]
    if faults:
        c = Ctx(a.ratio, a.step_timeout, a.log_level, a.reconnect_max)
        print(f"# time to page: every {c.every:g} s, confirm {2 / a.ratio:g} s, step timeouts "
              f"{a.step_timeout:g} s, sim redis timeout 2 s; {a.offsets} offsets per fault; "
              f"fault held {a.hold:g} s after the page; reconnect_max "
              f"{a.reconnect_max or 'as in the example'}", flush=True)
        for fault in faults:
            for k in range(a.offsets):
                r = time_to_page(c, fault, k * c.every / a.offsets, a.hold)
                out["results"].append(r)
                print(json.dumps(r), file=sys.stderr, flush=True)
        c.svc.stop()
        print(f"{'fault':<12} {'trigger worst s':>15} {'median s':>9} {'best s':>7} "
              f"{'resolve worst s':>15} {'step (reason)':<28} {'reconnects':>10}")
        for fault in faults:
            rows = [r for r in out["results"] if r["fault"] == fault]
            trig = [r["trigger_s"] for r in rows]
            named = sorted({f'{r["step"]} ({r["reason"]})' for r in rows})
            print(f"{fault:<12} {max(trig):>15.1f} {h.median(trig):>9.1f} {min(trig):>7.1f} "
                  f"{max(r['resolve_s'] for r in rows):>15.1f} {', '.join(named):<28} "
                  f"{sum(r['reconnects'] for r in rows):>10.0f}")
    if a.soak:
        c = Ctx(a.soak_ratio, a.step_timeout, a.log_level)
        print(f"# soak: every {c.every:g} s, confirm {2 / a.soak_ratio:g} s, step timeouts "
              f"{a.step_timeout:g} s, single drops at ~{a.rate * 100:g} % of exchanges", flush=True)
        s = soak(c, a.soak, a.rate, a.seed)
        c.svc.stop()
        out["soak"] = s
        print(f"soak: {s['exchanges']} exchanges in {s['seconds']} s, {s['drops_armed']} single "
              f"drops, {s['failed_runs']:.0f} failed exchanges, {s['reconnects']:.0f} reconnects, "
              f"pages {s['pages']} (goal 0)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
