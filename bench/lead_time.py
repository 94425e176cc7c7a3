"""The warning's lead time: how long before the join flow breaks does on-call hear that Redis is
filling up? `joincanary run` probes two Redis-backed sims with the shipped join probe (one each)
and the Redis itself with the shipped cause-side example (probes/examples/redis-health.toml: the
80 % memory warning, one run over it warns). A real redis-server with `maxmemory` and
`noeviction` is filled at a steady rate until it refuses writes (OOM), which breaks every join.
Each fill starts at another offset after a run of the cause probe (0, 1/N, ... of the interval),
so the 80 % crossing lands at every point of the schedule. Per run it prints, from the webhook
receiver's clock: when memory crossed 80 %, the warning page
(`JoinFlowDegraded`), OOM, the first critical join page, and the lead time = critical page -
warning page. Time may be compressed: every duration of the schedule, policy, probes and the fill
is divided by RATIO (1 = the shipped every-minute schedule); figures are scaled back."""

import argparse
import json
import os
import sys
import threading
import time

import harness as h

JOINS = ("join-a", "join-b")
CAUSE = "redis-health"
VALUE = b"x" * 65536
FILL_DB = 1  # the filler lives apart from the sims' keys (db 0), so the undo is one FLUSHDB


def cause_probe(redis_url, ratio):
    """The shipped example pointed at `redis_url`, its schedule left to the service default and
    its timeouts divided by `ratio`."""
    with open(os.path.join(h.ROOT, "probes/examples/redis-health.toml")) as f:
        text = f.read()
    text = text.replace("${REDIS_URL:-redis://127.0.0.1:6379}", redis_url)
    out = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("schedule = "):
            continue
        if s.startswith('timeout = "') and s.endswith('s"'):
            secs = float(s[len('timeout = "'):-2])
            line = f'timeout = "{h.ms(secs / ratio)}"'
        out.append(line)
    return "\n".join(out) + "\n"


class Filler:
    """Writes 64 KiB values so that used_memory grows linearly from where it is to `maxmemory`
    over `fill_s` seconds, until Redis refuses a write (OOM); then sets the limit 1 MiB under
    what is used so the outage stays (a full Redis stays full). Records when used_memory first
    reached 80 % of the limit and when the first write was refused."""

    def __init__(self, redis, maxmemory, fill_s):
        self.redis, self.maxmemory, self.fill_s = redis, maxmemory, fill_s
        self.t_start = self.t_cross = self.t_oom = None
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()

    def _run(self):
        c = h.Resp(self.redis.port)
        try:
            c.cmd("CONFIG", "SET", "maxmemory-policy", "noeviction")
            c.cmd("CONFIG", "SET", "maxmemory", self.maxmemory)
            c.cmd("SELECT", FILL_DB)
            used0 = int(h._info(c, "memory")["used_memory"])
            self.t_start = time.monotonic()
            used = used0
            # Bounded: 16,384 values of 64 KiB is 1 GiB, far past the limit.
            for i in range(16_384):
                now = time.monotonic()
                target = used0 + (self.maxmemory - used0) * (now - self.t_start) / self.fill_s
                # Pace by memory, not by count: the per-key overhead does not skew the rate.
                while used >= target:
                    time.sleep(0.005)
                    now = time.monotonic()
                    target = used0 + (self.maxmemory - used0) * (now - self.t_start) / self.fill_s
                try:
                    c.cmd("SET", f"fill:{i}", VALUE)
                except h.RespError as e:
                    self.t_oom = time.monotonic()
                    self.error = str(e)
                    used = int(h._info(c, "memory")["used_memory"])
                    c.cmd("CONFIG", "SET", "maxmemory", max(used - 1024 * 1024, 1))
                    return
                used = int(h._info(c, "memory")["used_memory"])
                if self.t_cross is None and used >= 0.8 * self.maxmemory:
                    self.t_cross = time.monotonic()
            self.error = "wrote 1 GiB without an OOM"
        except Exception as e:  # reported by the main thread
            self.error = f"filler failed: {e}"
        finally:
            c.close()


class Ctx:
    def __init__(self, ratio, maxmemory, log_level):
        self.ratio = ratio
        self.interval = 60 / ratio
        self.maxmemory = maxmemory
        self.redis_timeout_s = 2.0 / ratio
        self.redis = h.Redis()
        self.sims = [h.start_sim(self.redis.url, h.ms(self.redis_timeout_s))[1] for _ in range(2)]
        self.receiver = h.Receiver()
        probes = {name: h.shipped_probe(name, url, ratio) for name, url in zip(JOINS, self.sims)}
        probes[CAUSE] = cause_probe(self.redis.url, ratio)
        defaults = (f'schedule = "{h.interval_schedule(round(self.interval))}"\n'
                    f'timeout = "{h.ms(20 / ratio)}"\njitter = "{h.ms(10 / ratio)}"')
        tail = (f'[alerting]\nconfirm_delay = "{h.ms(10 / ratio)}"\n'
                f'[[pager]]\nname = "hook"\ntype = "webhook"\nurl = "{self.receiver.url}"\n'
                f'retry_base = "{h.ms(1 / ratio)}"\n')
        self.svc = h.Service(probes, defaults, tail, log_level)

    def healthy(self):
        for name in JOINS + (CAUSE,):
            p = self.svc.probe(name)
            if not p or p.get("alerts") or not p.get("last") or not p["last"].get("success"):
                return False
        return True

    def runs(self, probe):
        p = self.svc.probe(probe)
        return p["runs"] if p else 0

    def undo(self):
        c = h.Resp(self.redis.port)
        try:
            c.cmd("CONFIG", "SET", "maxmemory", 0)
            c.cmd("SELECT", FILL_DB)
            c.cmd("FLUSHDB")
        finally:
            c.close()


def trigger(probes, severity):
    return lambda e: (e.get("probe") in probes and e.get("event") == "trigger"
                      and e.get("severity") == severity and not e.get("test"))


def one_run(c, fill_s, offset_s):
    bound = fill_s + 10 * c.interval + 30
    h.wait_until(c.healthy, 10 * c.interval + 30, 0.05, "every probe healthy")
    # Where in the interval memory crosses 80 % decides how long the warning waits for the next
    # run: start the fill `offset_s` after a run of the cause probe, spread over the runs.
    n0 = c.runs(CAUSE)
    h.wait_until(lambda: c.runs(CAUSE) > n0, 10 * c.interval + 30, 0.01, "a run of the cause probe")
    time.sleep(offset_s)
    filler = Filler(c.redis, c.maxmemory, fill_s)
    filler.start()
    try:
        h.wait_until(lambda: filler.t_start or filler.error, 30, 0.01, "the fill to start")
        if filler.t_start is None:
            raise RuntimeError(filler.error)
        warn = h.wait_until(lambda: c.receiver.first(filler.t_start, trigger((CAUSE,), "warning")),
                            bound, 0.01, "the warning page")
        page = h.wait_until(lambda: c.receiver.first(filler.t_start, trigger(JOINS, "critical")),
                            bound, 0.01, "the critical join page")
        filler.thread.join(bound)
        if filler.t_oom is None:
            raise RuntimeError(filler.error or "paged without an OOM")
        t0 = filler.t_start
        out = {
            "fill_s": fill_s * c.ratio,
            "offset_s": offset_s * c.ratio,
            "cross_s": (filler.t_cross - t0) * c.ratio if filler.t_cross else None,
            "warning_s": (warn[0] - t0) * c.ratio,
            "warning_summary": warn[1].get("summary"),
            "oom_s": (filler.t_oom - t0) * c.ratio,
            "oom_error": filler.error,
            "page_s": (page[0] - t0) * c.ratio,
            "page_probe": page[1].get("probe"),
            "page_step": page[1].get("failed_step"),
            "page_reason": page[1].get("reason"),
        }
        out["lead_s"] = out["page_s"] - out["warning_s"]
        return out
    finally:
        filler.thread.join(bound)
        c.undo()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ratio", type=float, default=10, help="time compression (1 = real time)")
    ap.add_argument("--runs", type=int, default=5, help="runs per fill time")
    ap.add_argument("--fill-minutes", default="10,3",
                    help="comma-separated times (real minutes) from the start of the fill to OOM")
    ap.add_argument("--maxmemory-mib", type=int, default=64)
    ap.add_argument("--json", help="also write every run's result to this file")
    ap.add_argument("--log-level", default="warn")
    a = ap.parse_args()
    fills = [float(x) for x in a.fill_minutes.split(",") if x]
    c = Ctx(a.ratio, a.maxmemory_mib * 1024 * 1024, a.log_level)
    print(f"# ratio {a.ratio:g}: interval {c.interval:g} s, confirm_delay {10 / a.ratio:g} s; "
          f"maxmemory {a.maxmemory_mib} MiB noeviction; warning at memory_ratio 0.8 (one run); "
          f"{a.runs} runs per fill; times below are scaled back to real (x{a.ratio:g}) and "
          f"measured from the start of the fill", flush=True)
    results = []
    for minutes in fills:
        for k in range(a.runs):
            r = one_run(c, minutes * 60 / a.ratio, k * c.interval / a.runs)
            results.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
    c.svc.stop()
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"ratio": a.ratio, "results": results}, f, indent=1)
    print(f"{'fill to OOM':>11} {'80% crossed':>11} {'warning':>8} {'OOM':>7} {'page':>7} "
          f"{'lead median':>11} {'lead min':>8} {'lead max':>8} {'page step (reason)':<24}")
    for minutes in fills:
        rows = [r for r in results if abs(r["fill_s"] - minutes * 60) < 1e-6]
        med = lambda k: h.median([r[k] for r in rows if r[k] is not None])
        leads = [r["lead_s"] for r in rows]
        named = sorted({f'{r["page_step"]} ({r["page_reason"]})' for r in rows})
        print(f"{minutes * 60:>10.0f}s {med('cross_s'):>10.1f}s {med('warning_s'):>7.1f}s "
              f"{med('oom_s'):>6.1f}s {med('page_s'):>6.1f}s {h.median(leads):>10.1f}s "
              f"{min(leads):>7.1f}s {max(leads):>7.1f}s {', '.join(named):<24}")


if __name__ == "__main__":
    main()
