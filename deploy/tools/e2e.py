#!/usr/bin/env python3
"""End to end: the shipped rules and routes page on time, in every documented topology.

Real `joincanary run` probers (three regions with `peers`, each probing its own `joincanary sim`, so
one region can be broken alone through that sim's `PUT /_sim/faults`), Debian's Prometheus with the
shipped rules and Debian's Alertmanager with the shipped alertmanager.yml, its receivers rewritten
to a loopback recorder that timestamps every webhook. Three topologies run side by side:

  a  one Prometheus for every region (regional + global rules)
  b  one Prometheus per region (regional rules) + a global one federating them (the shipped
     deploy/prometheus/global/prometheus.yml, targets replaced; global rules); the probers
     scraped as job `prod-joincanary`, the regional rules generated for it (`--job`)
  c  a single region (one prober, one Prometheus, regional rules)
  ha as (c), with two Alertmanagers clustered on loopback (--cluster.listen-address/--cluster.peer)
     and the prober's pager listing both (`urls`), Prometheus sending to both
The Prometheus with the regional rules in (a)/(c)/ha, and (b)'s global one, also scrapes
Alertmanager and loads joincanary-alertmanager-rules.yaml, as the shipped configs do (ha's page
receiver refusing is reported through the other receivers).

Time is compressed by K = 10 (`--scale K`; 1 runs the shipped timings), proportionally: schedule
60 s -> 6 s, confirm_delay 10 s -> 1 s, the failing step's timeout (signalling) 5 s -> 500 ms, the
Alertmanager pager's resend_interval 30 s -> 3 s, Prometheus' resend delay 60 s -> 6 s, scrape
and evaluation 15 s -> 1.5 s (the probers' scrape and the fallback group's evaluation 5 s -> 0.5 s,
as shipped), every rule's `for:` and every route's group_wait / group_interval /
repeat_interval divided by 10 (rules' range windows are kept). Each measured time is asserted
against the bound the (compressed) config implies plus ALLOW (process and HTTP latency on a busy CI
machine, also compressed-time seconds: x10 in real-time terms overstates it tenfold).

Each fault is injected just after the region's run finished (status API `runs`), the worst offset:
the next run is a whole interval away. Alertmanager is restarted (fresh storage) between cases so
each case's page is a new notification group. Logs, configs and results.json go to
target/deploy/e2e/. `--runs N` repeats the whole run and prints medians (BENCHMARKS.md).
"""
import argparse
import datetime
import json
import os
import re
import signal
import statistics
import sys
import threading
import time
import subprocess
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

from check_routes import quorum_only as quorum_only_switch
from gen_prometheusrule import for_job
from stack import (AM_CONFIG, AM_RULES, BIN, GLOBAL_RULES, OUT, ROOT, RULES, Stack, alertmanager_config,
                   alertmanager_features, duration, free_port, get_json, http, probe_file, rules_file, seconds,
                   series, versions)



def _scale():
    """--scale K (default 10): how many times time is compressed; 1 runs the shipped timings."""
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--scale", type=float, default=10.0)
    k = ap.parse_known_args()[0].scale
    if not 1 <= k <= 20:
        sys.exit("--scale must be between 1 and 20")
    return k


K = _scale()
WORK = os.path.join(OUT, "e2e" if K == 10 else f"e2e-x{K:g}")
REGIONS = ["eu-west-1", "us-east-1", "ap-southeast-1"]

# The shipped settings (real time) the bounds come from; compressed by K below.
INTERVAL = 60 / K            # the shipped schedule: every minute (`* * * * *`)
CONFIRM = 10 / K             # [alerting] confirm_delay default
SIGNALLING = 5 / K           # the shipped probe's signalling timeout: the failing step here
# The shipped Prometheus timings: the probers' scrape (the Compose prometheus.yml's joincanary job,
# as the ServiceMonitor), the evaluation interval, the federation scrape of the global Prometheus,
# and the fallback group's own evaluation interval (JoinFlowFailingInRegion).
_PROM = yaml.safe_load(open(os.path.join(ROOT, "deploy/prometheus/prometheus.yml")))
SCRAPE = seconds(next(j for j in _PROM["scrape_configs"] if j["job_name"] == "joincanary")["scrape_interval"]) / K
EVAL = seconds(_PROM["global"]["evaluation_interval"]) / K
FEDERATE = seconds(yaml.safe_load(open(os.path.join(ROOT, "deploy/prometheus/global/prometheus.yml")))
                   ["global"]["scrape_interval"]) / K
# Alertmanager's own metrics, scraped by the Prometheus loading joincanary-alertmanager-rules.yaml.
AM_SCRAPE = seconds(next(j for j in _PROM["scrape_configs"] if j["job_name"] == "alertmanager")
                    .get("scrape_interval", _PROM["global"]["scrape_interval"])) / K
RESEND = 30 / K              # the alertmanager pager's resend_interval default
PROM_RESEND = 60 / K         # Prometheus' --rules.alert.resend-delay default
PEER_TIMEOUT = 15 / K        # Alertmanager's --cluster.peer-timeout default: the wait per peer position
ALLOW = 1.0                  # latency allowance, compressed seconds

SHIPPED_AM = yaml.safe_load(open(AM_CONFIG))


def route_for(**labels):
    """The first child route of the shipped config matching `labels` (alertname, severity)."""
    for r in SHIPPED_AM["route"]["routes"]:
        ok = True
        for m in r.get("matchers") or []:
            name, op, value = re.match(r'(\w+)(=~|!=|=)"(.*)"', m).groups()
            have = labels.get(name, "")
            ok &= {"=": have == value, "!=": have != value, "=~": re.fullmatch(value, have) is not None}[op]
        if ok:
            return r
    return SHIPPED_AM["route"]


def route_timing(key, **labels):
    r = route_for(**labels)
    return seconds(r.get(key, SHIPPED_AM["route"][key])) / K


def group_interval(name):
    """The evaluation interval of the rule group holding alert `name` (its own, or the global one)."""
    for f in (RULES, AM_RULES):
        for g in yaml.safe_load(open(f))["groups"]:
            if any(r.get("alert") == name for r in g["rules"]):
                return seconds(g["interval"]) / K if "interval" in g else EVAL
    raise KeyError(name)


def rule_for(name):
    for f in (RULES, GLOBAL_RULES, AM_RULES):
        for g in yaml.safe_load(open(f))["groups"]:
            for r in g["rules"]:
                if r.get("alert") == name:
                    return seconds(r.get("for", "0s")) / K
    raise KeyError(name)


PAGE_GW = route_timing("group_wait", alertname="JoinFlowFailing", severity="critical")
PAGE_GI = route_timing("group_interval", alertname="JoinFlowFailing", severity="critical")
CRIT_GW = route_timing("group_wait", alertname="JoinCanaryDown", severity="critical")
DMS_GI = route_timing("group_interval", alertname="JoinCanaryWatchdog")
CONFIRMED = INTERVAL + SIGNALLING + CONFIRM + SIGNALLING     # fault -> the prober's confirmation
# A new group pages group_wait after its first alert; a group that already exists (Prometheus
# re-sends resolved alerts for 15 minutes, so the previous case's group is there) on its next
# group_interval tick. The bound takes the longer.
PAGE_WAIT = max(PAGE_GW, PAGE_GI)
CRIT_WAIT = max(CRIT_GW, route_timing("group_interval", alertname="JoinCanaryDown", severity="critical"))
EVERYWHERE_FIRES = INTERVAL + SIGNALLING + SCRAPE + EVAL + rule_for("JoinFlowFailingEverywhere") + EVAL
BOUNDS = {
    # the prober's own JoinFlowFailing
    "push": CONFIRMED + PAGE_WAIT,
    # Prometheus' copy when the push is refused: one scrape and one evaluation of its group (5 s)
    # later, no `for:`
    "fallback": CONFIRMED + SCRAPE + group_interval("JoinFlowFailingInRegion") + rule_for("JoinFlowFailingInRegion")
    + PAGE_WAIT,
    # the refused delivery happens at the confirmation
    "refused": CONFIRMED + SCRAPE + group_interval("JoinCanaryNotificationsFailing")
    + rule_for("JoinCanaryNotificationsFailing") + CRIT_WAIT,
    # the first failed run, seen, `for:`, then the page group's next tick
    "escalate": EVERYWHERE_FIRES + PAGE_GI,
    # quorum-only: the first of MultiRegion / Everywhere (same `for:`) is the page
    "quorum": EVERYWHERE_FIRES + PAGE_WAIT,
    # kill -9: the next scrape fails, `for:`, evaluation
    "down": SCRAPE + rule_for("JoinCanaryDown") + group_interval("JoinCanaryDown") + CRIT_WAIT,
}
# Alertmanager's page receiver refusing (a revoked PagerDuty key): the page's attempt (the prober's
# confirmation + the page route's wait) fails at once (4xx: no retry); Prometheus scrapes
# Alertmanager, evaluates the rule (no `for:`), and its route's group_wait later the other receivers
# hear it.
AM_FAILING = "JoinCanaryAlertmanagerNotificationsFailing"
BOUNDS["page-refused"] = (BOUNDS["push"] + AM_SCRAPE + group_interval(AM_FAILING) + rule_for(AM_FAILING)
                          + route_timing("group_wait", alertname=AM_FAILING, severity="critical"))
# (b): the global Prometheus sees a failure one federation scrape later.
BOUNDS["escalate-federated"] = BOUNDS["escalate"] + FEDERATE


def schedule():
    """The shipped every-minute schedule, compressed: `*/6 * * * * *` at x10."""
    if INTERVAL % 60 == 0:
        return f"0 */{round(INTERVAL / 60)} * * * *"
    return f"*/{round(INTERVAL)} * * * * *"


class Recorder(ThreadingHTTPServer):
    """The receivers' webhooks (`/r/<receiver>`, 403 while the receiver is in `refused_receivers`:
    recorded as `<receiver>!refused`), a pager that refuses (`/refuse`, 403), and each region's
    path to Alertmanager (`/am/<region>/...`, proxied, or 403 while the region is in `refused`)."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.port = self.server_address[1]
        self.lock = threading.Lock()
        self.entries = []            # (monotonic time, receiver, payload)
        self.refused = set()
        self.refused_receivers = set()
        self.am_port = None
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def handle_error(self, request, client_address):
        # A prober killed or timing out mid-request hangs up: not the recorder's failure.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def since(self, receiver, t0):
        with self.lock:
            return [(t, p) for t, r, p in self.entries if r == receiver and t >= t0]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body=b""):
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_any(self):
        rec = self.server
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path.startswith("/r/"):
            receiver = self.path[3:]
            refused = receiver in rec.refused_receivers
            with rec.lock:
                rec.entries.append((time.monotonic(), receiver + ("!refused" if refused else ""),
                                    json.loads(body or b"{}")))
            return self.reply(403, b"refused by the e2e test") if refused else self.reply(200)
        if self.path == "/refuse":
            return self.reply(403, b"refused by the e2e test")
        m = re.match(r"/am/([^/]+)(/.*)", self.path)
        if not m:
            return self.reply(404)
        if m.group(1) in rec.refused:
            return self.reply(403, b"refused by the e2e test")
        req = urllib.request.Request(f"http://127.0.0.1:{rec.am_port}{m.group(2)}", data=body or None,
                                     method=self.command,
                                     headers={"content-type": self.headers.get("content-type", "application/json")})
        try:
            with urllib.request.urlopen(req, timeout=3) as r:
                return self.reply(r.status, r.read())
        except urllib.error.HTTPError as e:
            return self.reply(e.code, e.read())
        except OSError:
            return self.reply(502, b"alertmanager unreachable")

    do_GET = do_POST = do_PUT = do_DELETE = handle_any


def firing(payload, **labels):
    """The payload's firing alerts with these labels (a tuple value: any of them)."""
    def like(have, want):
        return have in want if isinstance(want, tuple) else have == want
    return [a for a in payload.get("alerts", []) if a["status"] == "firing"
            and all(like(a["labels"].get(k), v) for k, v in labels.items())]


class Fleet:
    """One topology's processes: sims, probers, Prometheus(es), one Alertmanager, the recorder."""

    def __init__(self, name, regions, deadline, results):
        self.name = name
        self.regions = regions
        self.job = "prod-joincanary" if name == "b" else "joincanary"   # the scrape job
        self.stack = Stack(os.path.join(WORK, name), deadline)
        self.results = results
        self.rec = Recorder()
        self.am = free_port()
        self.rec.am_port = self.am
        # (ha) both members' web and cluster ports; self.am is the first member's.
        self.ams = [self.am, free_port()] if name == "ha" else [self.am]
        self.cluster = [free_port() for _ in self.ams] if name == "ha" else []
        self.sims = {}
        self.ports = {r: free_port() for r in regions}
        self.proms = {}              # name -> (port, config, args)
        self.prober_configs = {}
        self.am_started = 0.0
        self.dms = []                # (region, interval) of one Alertmanager's life, probers alive
        self.carried = []            # alerts firing in Prometheus when this Alertmanager started
        self.t_start = time.monotonic()

    # --- set-up ------------------------------------------------------------------------------
    def start(self, prometheus_layout, quorum_only=False):
        st = self.stack
        # Deadlines that fit the compressed schedule (in this order: 2 s -> 1 s, then 5 s -> 2 s;
        # at --scale 1 the shipped ones).
        probe_file(st.work, {"20s": "4s", "2s": "1s", "5s": "2s"} if K > 2 else {})
        # The failing step keeps its shipped timeout, compressed (5 s -> 500 ms).
        path = st.path("probes", "sim-join.toml")
        text = open(path).read()
        i = text.index('name = "signalling"')
        text = text[:i] + re.sub(r'timeout = "[^"]*"', f'timeout = "{round(SIGNALLING * 1000)}ms"', text[i:], count=1)
        open(path, "w").write(text)
        text = open(AM_CONFIG).read()
        self.am_config = alertmanager_config(lambda n: self.rec.url(f"/r/{n}"), K,
                                             quorum_only_switch(text) if quorum_only else text)
        # The page receiver also as PagerDuty with the shipped template (docs/pages.md), posting
        # to the recorder: what on-call reads first, rendered by this Alertmanager.
        page = next(r for r in self.am_config["receivers"] if r["name"] == "page")
        # `component` tells the join flow's group from the prober-health ones on the same receiver.
        page["pagerduty_configs"] = [{"routing_key": "e2e", "url": self.rec.url("/r/page-pagerduty"),
                                      "description": '{{ template "joincanary.line" . }}',
                                      "component": "{{ .CommonLabels.alertname }}"}]
        self.start_am()
        for r in self.regions:
            self.sims[r] = st.sim(f"sim-{r}")
        for r in self.regions:
            peers = ", ".join(f'"http://127.0.0.1:{self.ports[o]}"' for o in self.regions if o != r)
            self.prober_configs[r] = f'''region = "{r}"
listen = "127.0.0.1:{self.ports[r]}"
probes = ["probes"]
state_dir = "state-{r}"
status_url = "http://127.0.0.1:{self.ports[r]}/"
dashboard_url = "http://127.0.0.1:{self.ports[r]}/metrics"
peers = [{peers}]
[defaults]
schedule = "{schedule()}"
jitter = "{round(10 / K * 1000)}ms"
[alerting]
confirm_delay = "{round(CONFIRM * 1000)}ms"
[[pager]]
name = "alertmanager"
type = "alertmanager"
{self.pager_urls(r)}
resend_interval = "{round(RESEND * 1000)}ms"
'''
            if self.has_chat(r):
                # A second pager that refuses every delivery (a revoked chat webhook).
                self.prober_configs[r] += f'''[[pager]]
name = "chat"
type = "webhook"
url = "{self.rec.url('/refuse')}"
'''
            self.start_prober(r)
        # (b) scrapes the probers as another job, as a Prometheus Operator install whose Service
        # got a kustomize namePrefix would, with the rules generated for it (`--job`).
        src = RULES
        if self.job != "joincanary":
            src = st.path("rules-for-job.yaml")
            open(src, "w").write(for_job(open(RULES).read(), self.job))
        rules = rules_file(src, st.path("rules.yaml"), K)
        global_rules = rules_file(GLOBAL_RULES, st.path("global-rules.yaml"), K)
        # Globally the federation's scrape (the global Prometheus) and the evaluation interval; the
        # probers' job its own, as shipped.
        common = {"scrape_interval": duration(FEDERATE), "evaluation_interval": duration(EVAL),
                  "scrape_timeout": duration(min(1, FEDERATE))}
        alerting = {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{p}" for p in self.ams]}]}]}

        def job(regions):
            return [{"job_name": self.job, "scrape_interval": duration(SCRAPE), "scrape_timeout": duration(SCRAPE),
                     "static_configs": [{"targets": [f"127.0.0.1:{self.ports[r]}" for r in regions]}]}]
        # Alertmanager itself (every member), scraped by the Prometheus that loads its rules: the
        # one Prometheus, or the global one (as the shipped configs).
        am_rules = rules_file(AM_RULES, st.path("alertmanager-rules.yaml"), K)
        am_job = {"job_name": "alertmanager", "scrape_interval": duration(AM_SCRAPE),
                  "scrape_timeout": duration(min(1, AM_SCRAPE)),
                  "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in self.ams]}]}
        if prometheus_layout == "one":
            files = [rules, global_rules] if len(self.regions) > 1 else [rules]
            self.add_prom("prometheus", {"global": common, "rule_files": [*files, am_rules], "alerting": alerting,
                                         "scrape_configs": [*job(self.regions), am_job]})
        else:
            for r in self.regions:
                self.add_prom(f"prometheus-{r}", {"global": {**common, "external_labels": {"cluster": r}},
                                                  "rule_files": [rules], "alerting": alerting,
                                                  "scrape_configs": job([r])})
            shipped = yaml.safe_load(open(os.path.join(ROOT, "deploy/prometheus/global/prometheus.yml")))
            shipped["global"] = common
            shipped["rule_files"] = [global_rules, am_rules]
            shipped["alerting"] = alerting
            fed = shipped["scrape_configs"][0]
            fed["static_configs"] = [{"targets": [f"127.0.0.1:{self.proms[f'prometheus-{r}'][0]}" for r in self.regions]}]
            shipped_am = next(j for j in shipped["scrape_configs"] if j["job_name"] == "alertmanager")
            shipped_am.update(am_job)
            self.add_prom("prometheus-global", shipped)
        for name in self.proms:
            self.start_prom(name)

    def add_prom(self, name, config):
        self.proms[name] = (free_port(), config)

    def start_prom(self, name):
        port, config = self.proms[name]
        self.stack.prometheus(name, port, config, [f"--rules.alert.resend-delay={round(PROM_RESEND * 1000)}ms"])

    def start_prober(self, r):
        self.stack.prober(f"joincanary-{r}", self.prober_configs[r], {"SIM_URL": self.sims[r]})

    def pager_urls(self, r):
        """The pager's Alertmanager: through the recorder (which can refuse it), or (ha) each member."""
        if len(self.ams) > 1:
            return "urls = [" + ", ".join(f'"http://127.0.0.1:{p}"' for p in self.ams) + "]"
        return f'url = "{self.rec.url("/am/" + r)}"'

    def start_am(self):
        # The new Alertmanager's life starts when its process does, not when it was seen ready: a
        # notification it sends in between (the Watchdog's, group_wait 0, the moment a prober's
        # re-post lands) belongs to it. Counted from readiness, that one was lost 100 ms early and
        # a prober killed a few seconds later left its switch "never" notified.
        names = ["alertmanager"] if len(self.ams) == 1 else [f"alertmanager-{i}" for i in range(len(self.ams))]
        for name in names:
            self.stack.stop_one(name)
        started = time.monotonic()
        if len(self.ams) == 1:
            self.stack.alertmanager("alertmanager", self.am, self.am_config)
        else:
            for i, port in enumerate(self.ams):
                peers = [f"--cluster.peer=127.0.0.1:{c}" for j, c in enumerate(self.cluster) if j != i]
                self.stack.alertmanager(f"alertmanager-{i}", port, self.am_config,
                                        [f"--cluster.listen-address=127.0.0.1:{self.cluster[i]}", *peers,
                                         f"--cluster.peer-timeout={round(PEER_TIMEOUT * 1000)}ms"])
            self.stack.wait_for("the Alertmanager cluster settled with every member", lambda: all(
                get_json(f"http://127.0.0.1:{p}/api/v2/status")["cluster"]["status"] == "ready"
                and len(get_json(f"http://127.0.0.1:{p}/api/v2/status")["cluster"]["peers"]) == len(self.ams)
                for p in self.ams), 30)
        self.am_started = started
        self.carried = self.firing_in_prometheus()

    def firing_in_prometheus(self):
        """The labels of every alert firing in this fleet's Prometheus servers now."""
        out = []
        for port, _ in self.proms.values():
            try:
                alerts = get_json(f"http://127.0.0.1:{port}/api/v1/alerts", timeout=5)["data"]["alerts"]
            except (OSError, ValueError, KeyError):
                continue
            out += [a["labels"] for a in alerts if a.get("state") == "firing"]
        return out

    def prom_of(self, region):
        return self.proms["prometheus"][0] if "prometheus" in self.proms else self.proms[f"prometheus-{region}"][0]

    # --- observing ---------------------------------------------------------------------------
    def record(self, case, what, secs, bound):
        ok = secs is not None and secs <= bound + ALLOW
        self.results.append({"topology": self.name, "case": case, "what": what,
                             "seconds": None if secs is None else round(secs, 2), "bound": round(bound, 2)})
        shown = "never" if secs is None else f"{secs:.2f} s"
        print(f"[{self.name}] {case}: {what} after {shown} (bound {bound:.2f} s + {ALLOW} s)", flush=True)
        if not ok:
            self.stack.fail(f"[{self.name}] {case}: {what} after {shown}, over the bound {bound:.2f} s + {ALLOW} s")

    def has_chat(self, region):
        """Whether the region's prober has the second pager, `chat`, that refuses every delivery."""
        return region == self.regions[0] and self.name in ("b", "c", "quorum")

    def wait_page(self, t0, secs, receiver="page", **labels):
        """Seconds from t0 to the first notification to `receiver` with a firing alert like `labels`."""
        found = []

        def check():
            for t, p in self.rec.since(receiver, t0):
                if firing(p, **labels):
                    found.append(t)
                    return True
            return False
        self.stack.wait_for(f"{receiver} notified of {labels}", check, secs, fail=False)
        return found[0] - t0 if found else None

    def healthy(self, regions=None):
        """Every region probing successfully with no alert open, seen by Prometheus."""
        for r in regions or self.regions:
            ok = series(self.prom_of(r), f'probe_success{{job="{self.job}",region="{r}"}} == 1'
                        f' and on (region) probe_alert_firing{{job="{self.job}",region="{r}",severity="critical"}} == 0')
            if not ok:
                return False
        return True

    def wait_run_finished(self, region):
        """Returns just after `region`'s next run finished: the following run is an interval away."""
        url = f"http://127.0.0.1:{self.ports[region]}/api/v1/status"
        runs = get_json(url)["probes"][0]["runs"]
        self.stack.wait_for(f"a run in {region}", lambda: get_json(url)["probes"][0]["runs"] > runs, INTERVAL + 5)

    def fault(self, regions, body):
        t0 = time.monotonic()
        for r in regions:
            http("PUT", f"{self.sims[r]}/_sim/faults", json.dumps(body).encode())
        return t0

    def heal(self, regions):
        for r in regions:
            http("DELETE", f"{self.sims[r]}/_sim/faults")

    def watchdog_notes(self, t_end):
        """Intervals between each region's dead man's switch notifications since Alertmanager started."""
        for r in self.regions:
            times = [t for t, p in self.rec.since(f"deadmans-switch-{r}", self.am_started) if t <= t_end]
            self.dms += [(r, b - a) for a, b in zip(times, times[1:])]

    def next_case(self, regions, restart_am=True):
        """Heal, wait until every region passes with no alert open and no delivery waiting, then a
        fresh Alertmanager (so the next page is a new group, not a group_interval tick of this one;
        `restart_am=False` keeps it: the HA pair's cluster).
        Nothing may page after the heal: a notification to `page` then may only repeat alerts
        already paged (resolved now or soon), never one firing for the first time."""
        t_heal = time.monotonic()
        self.heal(regions)
        self.stack.wait_for(f"{self.name}: every region healthy again", self.healthy, 6 * INTERVAL)
        self.rec.refused.clear()
        self.rec.refused_receivers.clear()
        # Let Prometheus' last evaluation reach Alertmanager and its next tick notify.
        time.sleep(SCRAPE + EVAL + PAGE_GI)

        def alerts(notes):
            # JoinFlowFailingMultiRegion may show once while an outage everywhere heals region by
            # region (JoinFlowFailingEverywhere resolved, two regions still failing): true then.
            return {tuple(sorted(a["labels"].items())) for _, p in notes for a in firing(p)
                    if a["labels"].get("alertname") != "JoinFlowFailingMultiRegion"}
        # What page refused (page_refused) counts as paged: Alertmanager retries it on the next tick.
        before = alerts([(t, p) for receiver in ("page", "page!refused")
                         for t, p in self.rec.since(receiver, self.am_started) if t < t_heal])
        late = alerts(self.rec.since("page", t_heal)) - before
        # Alerts already firing in Prometheus when this Alertmanager started (the previous case's
        # JoinCanaryNotificationsFailing, firing for its rule's 15-minute window): Prometheus
        # re-sends them to the fresh Alertmanager up to a resend delay + an evaluation later, where
        # they page again as a new group, before or after this heal depending on where that resend
        # falls. A repeat of what paged before this case, not a page after its recovery.
        late = {a for a in late if not any(c.items() <= dict(a).items() for c in self.carried)}
        if late:
            self.stack.fail(f"[{self.name}] paged after the recovery: {[dict(a) for a in late]}")
        if restart_am:
            self.watchdog_notes(time.monotonic())
            self.start_am()


# --- the cases ----------------------------------------------------------------------------------
DROP = {"signalling_drop": True}


def one_region_down(f, region, case="one region down"):
    f.wait_run_finished(region)
    t0 = f.fault([region], DROP)
    f.record(case, f"JoinFlowFailing {{region={region}}} paged",
             f.wait_page(t0, BOUNDS["push"] + 10, alertname="JoinFlowFailing", region=region), BOUNDS["push"])
    first_line(f, case, t0, region)
    return t0


def first_line(f, case, t0, region, alertname="JoinFlowFailing", cause="no frame matched"):
    """The page as PagerDuty shows it (the page receiver's pagerduty_configs, the shipped
    joincanary.line template): its first line names the probe, the region, the failing step, the
    reason and the cause (Prometheus' JoinFlowFailingInRegion knows no server's words: it says
    the prober confirmed it). The webhook came first; PagerDuty's event is sent in the same flush."""
    lines = []

    def check():
        lines[:] = [p["payload"]["summary"] for _, p in f.rec.since("page-pagerduty", t0)
                    if p.get("event_action") == "trigger" and p["payload"].get("component") == alertname]
        return lines
    f.stack.wait_for("the PagerDuty event of the page", check, 5, fail=False)
    want = [f'sim-join failing in {region}: step "signalling" no_match', cause]
    print(f"[{f.name}] {case}: PagerDuty summary {lines[:1]}", flush=True)
    if not lines or not all(w in lines[0] for w in want) or not lines[0].startswith(want[0]):
        f.stack.fail(f"[{f.name}] {case}: the page's first line (PagerDuty summary through the shipped "
                     f"template) is {lines[:1]}, want it to start {want[0]!r} and say {want[1]!r}")


def push_refused(f, region):
    """The region's Alertmanager pager answered 403 (and its chat pager refuses too): Prometheus'
    JoinFlowFailingInRegion pages, and JoinCanaryNotificationsFailing for the given-up deliveries."""
    f.rec.refused.add(region)
    f.wait_run_finished(region)
    t0 = f.fault([region], DROP)
    case = "push refused"
    f.record(case, f"JoinFlowFailingInRegion {{region={region}}} paged",
             f.wait_page(t0, BOUNDS["fallback"] + 10, alertname="JoinFlowFailingInRegion", region=region),
             BOUNDS["fallback"])
    first_line(f, case, t0, region, "JoinFlowFailingInRegion", "confirmed by its prober")
    f.record(case, f"JoinCanaryNotificationsFailing {{region={region}}} paged",
             f.wait_page(t0, BOUNDS["refused"] + 10, alertname="JoinCanaryNotificationsFailing", region=region),
             BOUNDS["refused"])
    if f.has_chat(region):
        # The two pagers give up within milliseconds of each other, but a scrape can fall between
        # them: the second sink's alert then joins the page group on its next group_interval tick.
        # Waited for here, or it pages after the heal and reads as a late page.
        f.record(case, f"JoinCanaryNotificationsFailing {{region={region},sink=chat}} paged",
                 f.wait_page(t0, BOUNDS["refused"] + CRIT_WAIT + 10, alertname="JoinCanaryNotificationsFailing",
                             region=region, sink="chat"),
                 BOUNDS["refused"] + CRIT_WAIT)
    if f.rec.since("page", t0) and any(firing(p, alertname="JoinFlowFailing") for _, p in f.rec.since("page", t0)):
        f.stack.fail(f"[{f.name}] {case}: a refused JoinFlowFailing reached the page receiver")
    # The path to Alertmanager opens again in next_case, once the prober has seen the flow pass:
    # opened now, the prober's next re-post delivers its still-open incident (a late page, true
    # until its next run), which the after-the-heal check would count.


def page_refused(f, region):
    """Alertmanager's page receiver refuses every notification (403, as PagerDuty answers a revoked
    routing key; both its webhook and its PagerDuty integration): the region's JoinFlowFailing page
    is lost, and JoinCanaryAlertmanagerNotificationsFailing, from Prometheus scraping Alertmanager,
    reaches the other receivers (`warning` and `fallback`) and is never sent to `page`. With receiver
    names in Alertmanager's metrics (0.28+, the flag set) it names `page`; without (0.25), the
    integrations."""
    case = "page receiver refused"
    f.rec.refused_receivers |= {"page", "page-pagerduty"}
    f.wait_run_finished(region)
    t0 = f.fault([region], DROP)
    bound = BOUNDS["page-refused"]
    for receiver in ("warning", "fallback"):
        f.record(case, f"{AM_FAILING} reached {receiver}",
                 f.wait_page(t0, bound + 10, receiver=receiver, alertname=AM_FAILING), bound)
    attempts = [p for _, p in f.rec.since("page!refused", t0) if firing(p, alertname="JoinFlowFailing", region=region)]
    if not attempts:
        f.stack.fail(f"[{f.name}] {case}: Alertmanager never tried to page JoinFlowFailing {region}")
    named = alertmanager_features()
    heard = [a["labels"] for _, p in f.rec.since("warning", t0) for a in firing(p, alertname=AM_FAILING)]
    want = ({"page"} if named else {None}, {"webhook", "pagerduty"})
    got = ({a.get("receiver_name") for a in heard}, {a.get("integration") for a in heard})
    print(f"[{f.name}] {case}: {AM_FAILING} names receivers {sorted(map(str, got[0]))}, "
          f"integrations {sorted(map(str, got[1]))}", flush=True)
    if heard and (got[0] != want[0] or not got[1] <= want[1]):
        f.stack.fail(f"[{f.name}] {case}: {AM_FAILING} labels {heard}, want receiver_name {want[0]} "
                     f"and integrations among {sorted(want[1])}")
    # Never through the receiver it names (nor any alert of it to page, where no name is known).
    sent = [a["labels"] for r in ("page", "page!refused") for _, p in f.rec.since(r, t0)
            for a in firing(p, alertname=AM_FAILING)]
    if sent:
        f.stack.fail(f"[{f.name}] {case}: {AM_FAILING} was sent to page, the receiver failing, "
                     f"{len(sent)} time(s): {sent[:2]}")


def all_regions_down(f, federated=False):
    first = f.regions[0]
    f.wait_run_finished(first)
    t0 = f.fault(f.regions, DROP)
    case = "all regions down"
    f.record(case, "first JoinFlowFailing paged",
             f.wait_page(t0, BOUNDS["push"] + 10, alertname="JoinFlowFailing"), BOUNDS["push"])
    bound = BOUNDS["escalate-federated" if federated else "escalate"]
    f.record(case, "escalated to JoinFlowFailingEverywhere",
             f.wait_page(t0, bound + 10, alertname="JoinFlowFailingEverywhere"), bound)
    notes = [(t, p) for t, p in f.rec.since("page", t0) if p.get("groupLabels", {}).get("probe") == "sim-join"]
    keys = {p.get("groupKey") for _, p in notes}
    if len(keys) != 1:
        f.stack.fail(f"[{f.name}] {case}: {len(keys)} notification groups for one probe: {keys}")
    esc = [p for _, p in notes if firing(p, alertname="JoinFlowFailingEverywhere")]
    if esc and any(a["labels"]["alertname"] != "JoinFlowFailingEverywhere" for a in firing(esc[0])):
        f.stack.fail(f"[{f.name}] {case}: the escalated page still lists inhibited alerts: "
                     f"{[a['labels'] for a in firing(esc[0])]}")
    print(f"[{f.name}] {case}: {len(notes)} notifications to page, one group", flush=True)


def quorum_all_down(f):
    first = f.regions[0]
    f.wait_run_finished(first)
    t0 = f.fault(f.regions, DROP)
    bound = BOUNDS["quorum"]
    t = f.wait_page(t0, bound + 10, alertname=("JoinFlowFailingMultiRegion", "JoinFlowFailingEverywhere"))
    f.record("all regions down, quorum-only", "JoinFlowFailingMultiRegion/Everywhere paged", t, bound)
    early = [p for _, p in f.rec.since("page", t0) if firing(p, alertname="JoinFlowFailing")]
    if early:
        f.stack.fail(f"[{f.name}] quorum-only: one region's JoinFlowFailing paged")


def restart_together(f):
    """Probers and Prometheus stopped for over three intervals, started together: nothing pages."""
    t0 = time.monotonic()
    for r in f.regions:
        f.stack.stop_one(f"joincanary-{r}")
    for name in f.proms:
        f.stack.stop_one(name)
    time.sleep(3 * INTERVAL + 2)
    for name in f.proms:
        f.start_prom(name)
    for r in f.regions:
        f.start_prober(r)
    t1 = time.monotonic()
    watch = rule_for("JoinCanaryStuck") + INTERVAL + 3
    f.stack.wait_for("the restart's watch window", lambda: False, watch, fail=False)
    pages = f.rec.since("page", t0)
    f.results.append({"topology": f.name, "case": "restart of probers and Prometheus together",
                      "what": f"pages in the {watch:.0f} s after", "seconds": None, "bound": None,
                      "pages": len(pages)})
    print(f"[{f.name}] restart together: {len(pages)} pages in {time.monotonic() - t1:.0f} s after", flush=True)
    if pages:
        f.stack.fail(f"[{f.name}] restart together paged: {[a['labels'] for _, p in pages for a in firing(p)]}")
    f.stack.wait_for(f"{f.name}: every region healthy after the restart", f.healthy, 6 * INTERVAL)
    f.start_am()


def prober_killed(f, region):
    """An incident open in the region, then its prober killed: JoinCanaryDown pages, the dead man's
    switch stops, the incident stays open (no false RESOLVED)."""
    t0 = f.fault([region], DROP)
    f.stack.wait_for("the incident paged before the kill",
                     lambda: any(firing(p, alertname="JoinFlowFailing", region=region)
                                 for _, p in f.rec.since("page", t0)), BOUNDS["push"] + 10)
    # A fresh Alertmanager (each case starts one) hears the Watchdog at the prober's next re-post,
    # up to a resend_interval later: at --scale 1 the incident can page before that.
    wd = []

    def watchdog():
        wd[:] = [a for a in get_json(f"http://127.0.0.1:{f.am}/api/v2/alerts")
                 if a["labels"].get("alertname") == "JoinCanaryWatchdog" and a["labels"].get("region") == region]
        return wd
    f.stack.wait_for(f"the Watchdog of {region} in Alertmanager", watchdog, RESEND + 2, fail=False)
    t_kill = time.monotonic()
    f.watchdog_notes(t_kill)
    f.stack.stop_one(f"joincanary-{region}", signal.SIGKILL)
    case = "prober killed"
    f.record(case, f"JoinCanaryDown {{region={region}}} paged",
             f.wait_page(t_kill, BOUNDS["down"] + 10, alertname="JoinCanaryDown", region=region), BOUNDS["down"])
    # How long Alertmanager keeps the Watchdog after its last post: its endsAt as the prober set it.
    lead = None
    if wd:
        def at(field):
            return datetime.datetime.fromisoformat(wd[0][field].replace("Z", "+00:00"))
        lead = (at("endsAt") - at("updatedAt")).total_seconds()
        if at("startsAt") > at("updatedAt"):
            f.stack.fail(f"[{f.name}] the Watchdog of {region} starts in the future: {wd[0]['startsAt']}")
    if lead is None:
        f.stack.fail(f"[{f.name}] no JoinCanaryWatchdog for {region} in Alertmanager before the kill")
        lead = DMS_GI
    f.stack.wait_for("the watchdog's end", lambda: False, lead + DMS_GI + 1, fail=False)
    times = [t for t, _ in f.rec.since(f"deadmans-switch-{region}", f.am_started)]
    last = max(times) - t_kill if times else None
    # The last post came before the kill and lasts `lead`; the documented promise is that the
    # switch stops within its cadence (one group_interval) of the kill.
    f.record(case, f"dead man's switch {region}: last notification after the kill", last, min(lead, DMS_GI))
    f.record(case, "Watchdog endsAt after its post (within the cadence)", lead, DMS_GI)
    resolved = [a["labels"] for _, p in f.rec.since("page", t_kill) for a in p.get("alerts", [])
                if a["status"] == "resolved" and a["labels"].get("alertname") == "JoinFlowFailing"]
    if resolved:
        f.stack.fail(f"[{f.name}] {case}: the open incident was resolved after the kill: {resolved}")
    active = [a for a in get_json(f"http://127.0.0.1:{f.am}/api/v2/alerts?active=true")
              if a["labels"].get("alertname") == "JoinFlowFailing" and a["labels"].get("region") == region]
    if not active:
        f.stack.fail(f"[{f.name}] {case}: JoinFlowFailing {region} no longer active in Alertmanager after the kill")


def prometheus_killed(f, alive):
    """The second line's own heartbeat: JoinCanaryRulesWatchdog reaches its own switch
    (deadmans-switch-prometheus) every group_interval while Prometheus runs; after Prometheus is
    killed it stops within the alert's validity (4 x --rules.alert.resend-delay), while the
    switch of a prober still running (`alive`) keeps being notified: the two are independent."""
    case = "Prometheus killed"
    times = [t for t, _ in f.rec.since("deadmans-switch-prometheus", f.am_started)]
    gaps = [b - a for a, b in zip(times, times[1:])]
    f.results.append({"topology": f.name, "case": case, "what": "rules watchdog's switch: cadence before (median)",
                      "seconds": round(statistics.median(gaps), 2) if gaps else None, "bound": DMS_GI,
                      "n": len(gaps)})
    print(f"[{f.name}] {case}: rules watchdog's switch before the kill: {len(gaps)} intervals "
          f"{[round(g, 2) for g in gaps]}, expected {DMS_GI:.2f} s", flush=True)
    if not gaps or any(abs(g - DMS_GI) > ALLOW for g in gaps):
        f.stack.fail(f"[{f.name}] {case}: the rules watchdog's switch intervals {gaps}, want {DMS_GI} s each")
    t_kill = time.monotonic()
    f.stack.stop_one("prometheus", signal.SIGKILL)
    valid = 4 * PROM_RESEND
    f.stack.wait_for("the rules watchdog's end", lambda: False, valid + 2 * DMS_GI + 1, fail=False)
    after = [t - t_kill for t, _ in f.rec.since("deadmans-switch-prometheus", t_kill)]
    f.record(case, "rules watchdog's switch: last notification after the kill", max(after, default=0.0), valid)
    prober = [t - t_kill for t, _ in f.rec.since(f"deadmans-switch-{alive}", t_kill)]
    if not prober or max(prober) < valid:
        f.stack.fail(f"[{f.name}] {case}: the switch of {alive}, whose prober runs, fell silent too: {prober}")


def test_page(f, region):
    """`joincanary test-page` through the alertmanager pager, against the shipped routes: the page
    receiver gets the test alert (it stays firing past the route's group_wait)."""
    t0 = time.monotonic()
    with open(f.stack.path("test-page.log"), "w") as log:
        run = subprocess.run([BIN, "test-page", "--config", f.stack.path(f"joincanary-{region}.toml"),
                              "--pager", "alertmanager"], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                             cwd=f.stack.work, timeout=90, env={**os.environ, "SIM_URL": f.sims[region], "NO_COLOR": "1"})
    if run.returncode != 0:
        f.stack.fail(f"[{f.name}] test-page exited {run.returncode} (see {f.stack.path('test-page.log')})")
    # It posts after reading Alertmanager's routes; the new group notifies group_wait later.
    f.record("test-page", "the [TEST] alert reached page", f.wait_page(t0, 10, alertname="JoinFlowFailing",
                                                                      test="true"), PAGE_GW + 1)


def ha_pair(f, region):
    """Two Alertmanagers clustered on loopback behind the shipped routes, the prober posting to both
    (`urls`) and Prometheus sending to both. One region down pages once (the members share their
    notification log, not alerts: each got the alert, one notified). Then the first member killed:
    the next outage still pages, once, through the other; the prober shows the dead member
    (`joincanary_alertmanager_member_failing` 1, its pager `degraded`) and its pager is not
    failing, so Prometheus' JoinFlowFailingInRegion stays silent."""
    for case in ("HA pair, one region down", "HA pair, one member killed"):
        killed = case.endswith("killed")
        if killed:
            # The cadence with both members up (the switch hears one of them per tick).
            f.watchdog_notes(time.monotonic())
            t_kill = time.monotonic()
            f.stack.stop_one("alertmanager-0", signal.SIGKILL)
        f.wait_run_finished(region)
        t0 = f.fault([region], DROP)
        # With a member gone the survivor may still count it before itself for a moment: its
        # notification then waits one --cluster.peer-timeout.
        bound = BOUNDS["push"] + (PEER_TIMEOUT if killed else 0)
        f.record(case, f"JoinFlowFailing {{region={region}}} paged",
                 f.wait_page(t0, bound + 10, alertname="JoinFlowFailing", region=region), bound)
        # Time for the other member to notify too, were it going to: its wait, and a tick more.
        time.sleep(2 * PEER_TIMEOUT + PAGE_GI + 1)
        notes = [p for _, p in f.rec.since("page", t0) if firing(p)]
        f.results.append({"topology": f.name, "case": case, "what": "notifications to page",
                          "seconds": None, "bound": None, "count": len(notes)})
        print(f"[{f.name}] {case}: {len(notes)} notification(s) to page", flush=True)
        if len(notes) != 1 or any(a["labels"]["alertname"] != "JoinFlowFailing" for p in notes for a in firing(p)):
            f.stack.fail(f"[{f.name}] {case}: want one notification of JoinFlowFailing, got "
                         f"{[[a['labels']['alertname'] for a in firing(p)] for p in notes]}")
        if killed:
            prom = f.prom_of(region)
            dead = series(prom, 'joincanary_alertmanager_member_failing{job="joincanary"} == 1')
            if [s["metric"].get("member") for s in dead] != [f"127.0.0.1:{f.ams[0]}"]:
                f.stack.fail(f"[{f.name}] {case}: joincanary_alertmanager_member_failing == 1 for "
                             f"{[s['metric'] for s in dead]}, want only the killed member")
            if series(prom, 'joincanary_pager_failing{job="joincanary",type="alertmanager"} == 1'):
                f.stack.fail(f"[{f.name}] {case}: the pager counts as failing with one member alive")
            shown = [m["member"] for d in get_json(f"http://127.0.0.1:{f.ports[region]}/api/v1/status")["delivery"]
                     for m in d.get("members", []) if m.get("failing_since")]
            if shown != [f"127.0.0.1:{f.ams[0]}"]:
                f.stack.fail(f"[{f.name}] {case}: the status shows failing members {shown}, want the killed one")
            # The survivor notifies the switch on, one tick shifted by at most its wait for the
            # dead member (--cluster.peer-timeout) until the cluster has dropped that member.
            times = [t for t, _ in f.rec.since(f"deadmans-switch-{region}", t_kill - DMS_GI)]
            gaps = [b - a for a, b in zip(times, times[1:])]
            f.record(case, "dead man's switch: longest interval across the member's death",
                     max(gaps) if gaps else None, DMS_GI + PEER_TIMEOUT)
        f.next_case([region], restart_am=False)


def run_topology(name, deadline, results, errors):
    regions = REGIONS if name not in ("c", "ha") else REGIONS[:1]
    f = Fleet(name, regions, deadline, results)
    try:
        f.start("one" if name in ("a", "c", "quorum", "ha") else "per-region", quorum_only=name == "quorum")
        f.stack.wait_for(f"{name}: every region probing and scraped", f.healthy, max(30, 2 * INTERVAL + 10 / K))
        if name == "b":
            f.stack.wait_for("b: the global Prometheus sees every region", lambda: len(series(
                f.proms["prometheus-global"][0], "region_probe:probe_failing:max")) == len(regions), max(20, 4 * FEDERATE))
        if name == "a":
            one_region_down(f, "eu-west-1")
            f.next_case(["eu-west-1"])
            all_regions_down(f)
            f.next_case(regions)
            restart_together(f)
            prober_killed(f, "us-east-1")
            prometheus_killed(f, "eu-west-1")
        elif name == "b":
            push_refused(f, regions[0])
            f.next_case(regions[:1])
            all_regions_down(f, federated=True)
            f.next_case(regions)
            prober_killed(f, "ap-southeast-1")
        elif name == "c":
            # Refused first: its JoinCanaryNotificationsFailing stays firing for the rule's window.
            push_refused(f, regions[0])
            f.next_case(regions)
            one_region_down(f, regions[0])
            f.next_case(regions)
            prober_killed(f, regions[0])
            test_page(f, regions[0])
        elif name == "quorum":
            quorum_all_down(f)
        elif name == "ha":
            # Alertmanager's page receiver refusing, with both members up: each member tries the
            # page (the other's notification log has no record of a failed one), and fails. The
            # pair is not restarted after it: a member restarted while the prober posts can get
            # the Watchdog one re-post after the other, its group's ticks then shifted by up to a
            # resend_interval, which ha_pair's interval across the first member's death (bound:
            # group_interval + peer-timeout) would carry.
            page_refused(f, regions[0])
            f.next_case(regions, restart_am=False)
            ha_pair(f, regions[0])
        # The cadence where every region's path to Alertmanager stayed open (no refusals): a; and
        # the HA pair's (the switch hears one of the two members per tick, not both).
        cadence = [d for _, d in f.dms] if name in ("a", "ha") else []
        if cadence:
            f.results.append({"topology": name, "case": "dead man's switch", "what": "cadence (median)",
                              "seconds": round(statistics.median(cadence), 2), "bound": DMS_GI,
                              "min": round(min(cadence), 2), "max": round(max(cadence), 2), "n": len(cadence)})
            # Each interval also carries the jitter of two webhook deliveries: ALLOW, not zero.
            bad = [round(d, 2) for d in cadence if abs(d - DMS_GI) > ALLOW]
            print(f"[{name}] dead man's switch: {len(cadence)} intervals, median {statistics.median(cadence):.2f} s "
                  f"(min {min(cadence):.2f}, max {max(cadence):.2f}), expected {DMS_GI:.2f} s", flush=True)
            if bad:
                f.stack.fail(f"[{name}] dead man's switch intervals off the {DMS_GI} s cadence: {bad}")
        elif name == "a":
            f.stack.fail("[a] no dead man's switch notifications recorded")
    except Exception as e:  # a crash in one topology is its failure, not the others'
        f.stack.fail(f"[{name}] {type(e).__name__}: {e}")
    finally:
        f.stack.stop()
        f.rec.shutdown()
        # Every notification the receivers got, for reading a failure afterwards.
        with f.rec.lock, open(f.stack.path("notifications.json"), "w") as out:
            json.dump([{"t": round(t - f.t_start, 3), "receiver": r, "status": p.get("status"),
                        "groupKey": p.get("groupKey"),
                        "alerts": [{"status": a["status"], **a["labels"]} for a in p.get("alerts", [])]}
                       for t, r, p in f.rec.entries if not r.startswith("deadmans-switch")], out, indent=1)
        errors.extend(f.stack.errors)


def run_once(topologies):
    os.makedirs(WORK, exist_ok=True)
    # 280 s at x10; proportionally longer when less compressed.
    budget = 280 * 10 / K
    deadline = time.monotonic() + budget
    results, errors = [], []
    threads = [threading.Thread(target=run_topology, args=(t, deadline, results, errors)) for t in topologies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=budget + 20)
    if any(t.is_alive() for t in threads):
        errors.append(f"a topology did not finish within {budget + 20:.0f} s")
    return results, errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=1, help="repeat the whole run and print medians")
    ap.add_argument("--scale", type=float, default=10.0,
                    help="time compression (default 10; 1 runs the shipped timings, about 15 minutes for topology c)")
    ap.add_argument("--topology", action="append", choices=["a", "b", "c", "quorum", "ha"],
                    help="only these (default: all)")
    args = ap.parse_args()
    topologies = args.topology or ["a", "b", "c", "quorum", "ha"]
    tools = versions()
    print("; ".join(tools.values()), flush=True)
    print(f"time compressed x{K:g}; bounds (compressed s): "
          + ", ".join(f"{k} {v:.2f}" for k, v in BOUNDS.items()), flush=True)
    runs, failed = [], []
    for i in range(max(1, min(args.runs, 20))):
        start = time.monotonic()
        results, errors = run_once(topologies)
        load = os.getloadavg()
        runs.append({"versions": tools, "results": results, "errors": errors, "seconds": round(time.monotonic() - start),
                     "loadavg": [round(x, 2) for x in load]})
        failed += errors
        print(f"run {i + 1}: {len(errors)} errors in {time.monotonic() - start:.0f} s, load average "
              f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    json.dump(runs, open(os.path.join(WORK, "results.json"), "w"), indent=1)
    if len(runs) > 1:
        table = {}
        for run in runs:
            for r in run["results"]:
                if r.get("seconds") is not None:
                    table.setdefault((r["topology"], r["case"], r["what"]), []).append(r["seconds"])
        print("\nmedians over", len(runs), f"runs (compressed seconds; x{K:g} for real time):")
        for (topo, case, what), v in sorted(table.items()):
            print(f"  {topo:6} {case:32} {what:60} median {statistics.median(v):6.2f}  "
                  f"min {min(v):6.2f}  max {max(v):6.2f}  n {len(v)}")
    for e in failed:
        print("ERROR", e)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
