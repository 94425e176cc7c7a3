#!/usr/bin/env python3
"""Runs every Grafana panel query and variable of deploy/grafana/joincanary-dashboard.json against a
live Prometheus that scrapes real probers, and fails on an error or an empty answer.

First, without any process (`--static` stops there): the dashboard has Grafana's usual variables
(`datasource`, `job`, `region`, `probe`); every selector of every query and variable selects
`job=~"$job"` (never a fixed job name, so a scrape job named otherwise works); the `job`
variable's values come from `joincanary_build_info` with no custom "All" value (so "All" never
takes in blackbox_exporter's `probe_success`); and each panel has one unit: every query's unit,
read from the expression (`time() - ...`, a histogram of seconds or a `*_seconds` gauge are
seconds; `increase()` and other gauges are counts), is the panel's unit, and no override sets
another.

Then live, all on 127.0.0.1, bounded (about 40 s): `joincanary sim`; Debian's Alertmanager with the shipped
alertmanager.yml (receivers pointed at a closed loopback port); three `joincanary run` (regions
ci-a and ci-b probing the sim, ci-c a second sim whose login always fails) every 3 s with an Alertmanager pager and a heartbeat; Debian's Prometheus
scraping them every second, ci-a and ci-b as job "joincanary" with the shipped rules and ci-c as
job "synthetic-canary", plus a stand-in for blackbox_exporter (job "blackbox", its own
`probe_success`). Half-way the sim's login
fails for a few runs, so failures, an incident and its deliveries exist. Then every panel query
(variables as "All", expanded as Grafana does from the variables' own queries, then one region
and probe picked: ci-a, and ci-c that never succeeded) must
answer with series and none from a job outside the `job` variable, no panel in seconds may read a timestamp of 0 as 56 years, the notifications panel must show a delivery,
every shipped rule must evaluate without error, and every metric name the rules, the dashboard,
docs/deploy.md and README's Metrics table use must have been scraped from the probers. Logs go to target/deploy/dashboard/.
"""
import http.server as httpserver
import json
import os
import re
import sys
import threading
import time
import urllib.parse
import urllib.request

from stack import (GLOBAL_RULES, OUT, ROOT, RULES, Stack, alertmanager_config, free_port, get_json,
                   http, probe_file, query, require_tools)

stack = Stack(os.path.join(OUT, "dashboard"), time.monotonic() + 120)
fail = stack.fail
wait_for = stack.wait_for


DASHBOARD = os.path.join(ROOT, "deploy/grafana/joincanary-dashboard.json")
# The variables, in the order they depend on each other (each query may use the ones before).
VARIABLES = ("datasource", "job", "region", "probe")


def regex_escape(value):
    """A value as Grafana writes it into a Prometheus regex of a multi-value variable."""
    return re.sub(r"([$^*{}\[\]'+?.()|\\])", r"\\\\\1", value)


def grafana(expr, picks):
    """`expr` as Grafana sends it: each `$name` replaced by the picked values of that variable
    (one value as itself, several, or "All", as a regex alternation of them)."""
    for name in sorted(picks, key=len, reverse=True):
        values = picks[name]
        text = regex_escape(values[0]) if len(values) == 1 else "(" + "|".join(map(regex_escape, values)) + ")"
        expr = expr.replace(f"${{{name}}}", text).replace(f"${name}", text)
    return expr


# A metric name as the rules, the dashboard and the docs write it (not inside a recording rule's
# name such as region_probe:probe_failing:max), with its label matchers if any.
SELECTOR = re.compile(r"(?<![\w:])((?:probe|joincanary|process)_[a-z0-9_]+)(?![\w:])(\{[^}]*\})?")
JOB = 'job=~"$job"'


def expr_unit(expr):
    """The unit a query's values are in, read from the expression: `s` or `count` (or another
    name for what neither covers, which then must be the panel's unit)."""
    if "histogram_quantile" in expr:
        m = re.search(r"(\w+)_bucket", expr)
        return "s" if m and m.group(1).endswith("_seconds") else "count"
    if re.search(r"\btime\(\)\s*-", expr):
        return "s"
    if re.search(r"\b(increase|changes|resets|count_over_time)\(", expr):
        return "count"
    if re.search(r"\b(rate|irate|deriv)\(", expr):
        return "per second"
    names = [n for n, _ in SELECTOR.findall(expr)]
    if names and all(n.endswith("_timestamp_seconds") for n in names):
        return "dateTimeAsIso"
    if names and all(n.endswith("_seconds") for n in names):
        return "s"
    if names and all(n.endswith("_bytes") for n in names):
        return "bytes"
    return "count"


def panel_unit(panel):
    unit = ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("unit")
    return "count" if unit in (None, "", "short", "none") else unit


def check_static(dashboard):
    """What the dashboard must be before any query runs: the variables a Grafana user expects,
    every selector filtered by `$job`, one unit per panel. Returns how many things it checked."""
    checked = 0
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    for name in VARIABLES:
        if name not in variables:
            fail(f"dashboard: no `{name}` variable (Grafana's convention: datasource, job, region)")
    job = variables.get("job", {})
    if job and not re.fullmatch(r"label_values\(joincanary_build_info(\{[^}]*\})?,\s*job\)", job.get("query", "")):
        fail(f"variable job: {job.get('query')!r}: its values must be the jobs exporting joincanary_build_info")
    if job.get("allValue"):
        fail(f"variable job: a custom All value ({job['allValue']!r}) selects other jobs' probe_success too")
    exprs = [(f"variable {v['name']}", v["query"]) for v in dashboard["templating"]["list"]
             if v["type"] == "query" and v["name"] != "job"]
    exprs += [(f"panel {p['title']!r} {t['refId']}", t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
    for where, expr in exprs:
        if re.search(r"\bjob\s*=~?\s*\"(?!\$job\")", expr):
            fail(f"{where}: {expr}: a fixed job name; select {JOB}")
        for name, matchers in SELECTOR.findall(expr):
            checked += 1
            if JOB not in matchers:
                fail(f"{where}: {name}{matchers} does not select {JOB}: a scrape job named otherwise shows nothing")
    for p in dashboard["panels"]:
        units = {t["refId"]: expr_unit(t["expr"]) for t in p["targets"]}
        want = panel_unit(p)
        checked += 1
        if set(units.values()) != {want}:
            fail(f"panel {p['title']!r}: one unit per panel: the panel is in {want!r}, its queries in {units}")
        for o in (p.get("fieldConfig") or {}).get("overrides") or []:
            if any(prop.get("id") == "unit" for prop in o.get("properties", [])):
                fail(f"panel {p['title']!r}: an override sets another unit ({o['matcher']}): one unit per panel")
    print(f"dashboard, static: {checked} selectors and panel units checked")
    return checked


def variable_values(prom, dashboard):
    """Each query variable's values as Grafana gets them (`label_values(selector, label)` through
    Prometheus' label values API), every earlier variable at "All"."""
    picks = {}
    for v in dashboard["templating"]["list"]:
        if v["type"] != "query":
            continue
        inner = v["query"][len("label_values("):-1]
        selector, label = inner.rsplit(",", 1)
        url = f"http://127.0.0.1:{prom}/api/v1/label/{label.strip()}/values?" + urllib.parse.urlencode(
            {"match[]": grafana(selector, picks)})
        values = json.loads(http("GET", url)[1])["data"]
        print(f"variable {v['name']}: {values}")
        if not values:
            fail(f"variable {v['name']}: {v['query']} has no values")
        picks[v["name"]] = values or ["none"]
    return picks


# Metric names only some probes export, documented as such in README's Metrics table.
CONDITIONAL = {
    "probe_gauge_value": "a redis or http_json step",
    "probe_resident_reconnects_total": "a resident probe",
    "probe_ssl_earliest_cert_expiry": "a step that makes a TLS handshake",
}
# Of those, the ones a shipped rule may read although the probers here (plain HTTP to the sim)
# never export them: the rule's metric name is checked against what the service exports by
# tests/container.rs (dashboard_and_rules_use_only_metrics_joincanary_exports, a step with a
# certificate recorded), its logic by promtool (deploy/prometheus/tests/certificates.yaml).
IN_RULES_UNSCRAPED = {"probe_ssl_earliest_cert_expiry"}


def check_metric_names(prom):
    """Every metric name the shipped rules, the dashboard, docs/deploy.md and README's Metrics table
    use was scraped from the real probers: a renamed metric would leave a rule silently empty."""
    scraped = set(json.loads(http("GET", f"http://127.0.0.1:{prom}/api/v1/label/__name__/values")[1])["data"])
    readme = open(os.path.join(ROOT, "README.md")).read()
    table = readme[readme.index("### Metrics"):]
    table = table[:table.index("\n#", 1)]
    sources = {
        "deploy/prometheus/joincanary-rules.yaml": open(RULES).read(),
        "deploy/prometheus/global/joincanary-global-rules.yaml": open(GLOBAL_RULES).read(),
        "deploy/grafana/joincanary-dashboard.json": open(os.path.join(ROOT, "deploy/grafana/joincanary-dashboard.json")).read(),
        "docs/deploy.md": open(os.path.join(ROOT, "docs/deploy.md")).read(),
        "README.md (Metrics)": table,
    }
    names = 0
    for where, text in sources.items():
        for name in sorted({n for n, _ in SELECTOR.findall(text)}):
            names += 1
            # A histogram is written by its family name in the docs, scraped as _bucket/_sum/_count.
            if name in scraped or f"{name}_bucket" in scraped:
                continue
            if name in CONDITIONAL and (not where.startswith("deploy/") or name in IN_RULES_UNSCRAPED):
                continue
            fail(f"{where}: metric {name} is not exported by joincanary run (scraped: {sorted(scraped)})")
    print(f"metric names: {names} uses in rules, dashboard and docs, each scraped from the probers")
    return names


# Longest believable "seconds since" on a dashboard: more means a timestamp of 0 (never) went
# through `time() - x` and the panel shows 56 years.
LONGEST_SECONDS = 365 * 24 * 3600


def check_jobs(where, result, jobs):
    """No series from a job outside the `job` variable (blackbox_exporter's probe_success)."""
    other = sorted({s["metric"]["job"] for s in result if s["metric"].get("job", jobs[0]) not in jobs})
    if other:
        fail(f"{where}: series of job {other}, outside the job variable's {jobs}")


def check_per_region(prom, dashboard, picks):
    """Every panel with one region and one probe picked, as on-call opens it from a page: for a
    healthy region (ci-a, one fault window behind it) and for one whose probe and heartbeat never
    succeeded (ci-c), each query answers with series (or, for ci-c, the panel's `noValue` text
    says why there is nothing to measure), and no panel in seconds shows a timestamp of 0 as
    "56 years ago"."""
    checked = 0
    for region in ("ci-a", "ci-c"):
        for p in dashboard["panels"]:
            defaults = (p.get("fieldConfig") or {}).get("defaults", {})
            unit = defaults.get("unit")
            for t in p["targets"]:
                # One value picked in region and probe, job at "All".
                expr = grafana(t["expr"], {**picks, "region": [region], "probe": ["sim-join"]})
                r = query(prom, expr)
                checked += 1
                result = r.get("data", {}).get("result", [])
                # A step the failing flow never reaches measures nothing: the panel says so.
                if r.get("status") == "success" and not result and region == "ci-c" and defaults.get("noValue"):
                    print(f"panel {p['title']!r} {t['refId']} region={region}: {defaults['noValue']!r}")
                    continue
                if r.get("status") != "success" or not result:
                    fail(f"panel {p['title']!r} with region={region}: {expr}: {r.get('error') or 'no series'}")
                    continue
                print(f"panel {p['title']!r} {t['refId']} region={region}: "
                      + ", ".join(f"{float(s['value'][1]):.6g}" for s in result))
                check_jobs(f"panel {p['title']!r} with region={region}", result, picks["job"])
                if unit == "s":
                    for series_ in result:
                        v = float(series_["value"][1])
                        if not 0 <= v < LONGEST_SECONDS:
                            fail(f"panel {p['title']!r} with region={region} shows {v:.0f} s for "
                                 f"{series_['metric']}: a timestamp of 0 (never) read as a time")
    return checked


class Blackbox(httpserver.BaseHTTPRequestHandler):
    """A stand-in for blackbox_exporter: its own `probe_success` and `probe_duration_seconds`,
    which the dashboard must keep out of every panel."""

    def do_GET(self):
        body = b"probe_success 1\nprobe_duration_seconds 0.05\n"
        self.send_response(200)
        self.send_header("content-type", "text/plain; version=0.0.4")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    dashboard = json.load(open(DASHBOARD))
    check_static(dashboard)
    if "--static" in sys.argv[1:]:
        return
    require_tools()
    # The platform under test.
    sim_url = stack.sim()

    # Alertmanager with the shipped config; receivers to a closed loopback port (no traffic out).
    am = free_port()
    stack.alertmanager("alertmanager", am, alertmanager_config(lambda name: "http://127.0.0.1:9/" + name))

    # A platform that never lets the canary in: region ci-c's probe fails from its first run,
    # and its heartbeat goes to a closed port, so no success of either is ever recorded.
    broken_url = stack.sim("sim-broken")
    http("PUT", f"{broken_url}/_sim/faults", json.dumps({"login_status": 500}).encode())

    # Three regional probers, the shipped probe with deadlines that fit a 3 s schedule.
    probe_file(stack.work, {"20s": "2500ms", "5s": "1s", "2s": "1s"})
    targets = []
    for region in ("ci-a", "ci-b", "ci-c"):
        port = free_port()
        targets.append(f"127.0.0.1:{port}")
        heartbeat_url = f"http://127.0.0.1:{am}/-/healthy" if region != "ci-c" else "http://127.0.0.1:9/"
        stack.prober(f"joincanary-{region}", f'''region = "{region}"
listen = "127.0.0.1:{port}"
probes = ["probes"]
state_dir = "state-{region}"
[defaults]
schedule = "*/3 * * * * *"
[alerting]
confirm_delay = "500ms"
[[pager]]
name = "alertmanager"
type = "alertmanager"
url = "http://127.0.0.1:{am}"
resend_interval = "2s"
[[heartbeat]]
name = "am-healthy"
type = "http"
url = "{heartbeat_url}"
interval = "2s"
timeout = "1s"
''', {"SIM_URL": sim_url if region != "ci-c" else broken_url})

    blackbox = httpserver.ThreadingHTTPServer(("127.0.0.1", 0), Blackbox)
    threading.Thread(target=blackbox.serve_forever, daemon=True).start()

    # Prometheus scraping them with the shipped rules: two as job "joincanary", the third under
    # another job name (the dashboard's job variable must find it), and the blackbox stand-in.
    prom = free_port()
    stack.prometheus("prometheus", prom, {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [RULES, GLOBAL_RULES],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am}"]}]}]},
        "scrape_configs": [
            {"job_name": "joincanary", "static_configs": [{"targets": targets[:2]}]},
            {"job_name": "synthetic-canary", "static_configs": [{"targets": targets[2:]}]},
            {"job_name": "blackbox", "static_configs": [{"targets": [f"127.0.0.1:{blackbox.server_address[1]}"]}]},
        ],
    })
    wait_for("the probers scraped and probing", lambda: len(
        query(prom, 'probe_success{job="joincanary"} == 1')["data"]["result"]) == 2 and len(
        query(prom, 'probe_success{job="synthetic-canary",region="ci-c"} == 0')["data"]["result"]) == 1, 25)
    # Prometheus 3 fails a scrape whose Content-Type it does not know (2.x guessed the text format).
    for t in targets:
        with urllib.request.urlopen(f"http://{t}/metrics", timeout=5) as r:
            ctype = r.headers.get("content-type", "")
        if not re.fullmatch(r"text/plain; ?version=0\.0\.4(; ?charset=utf-8)?", ctype):
            fail(f"{t}/metrics: Content-Type {ctype!r}, not the text format's: Prometheus 3 fails the scrape")
    print(f"/metrics Content-Type: {ctype}")

    # A few failing runs: failures by step and reason, an incident, its trigger and resolve.
    http("PUT", f"{sim_url}/_sim/faults", json.dumps({"login_status": 500}).encode())
    wait_for("an incident", lambda: query(
        prom, 'sum(probe_alert_firing{job="joincanary",region=~"ci-a|ci-b"}) > 0')["data"]["result"], 20)
    wait_for("a delivery", lambda: query(
        prom, 'sum(joincanary_notifications_total{job="joincanary",region=~"ci-a|ci-b",result="delivered"}) > 0'
    )["data"]["result"], 20)
    http("DELETE", f"{sim_url}/_sim/faults")
    wait_for("recovery", lambda: len(query(prom, 'probe_success{job="joincanary"} == 1')["data"]["result"]) == 2, 20)
    time.sleep(2)

    picks = variable_values(prom, dashboard)
    checked = len(picks)
    if sorted(picks.get("job", [])) != ["joincanary", "synthetic-canary"]:
        fail(f"variable job: {picks.get('job')}, want the two jobs scraping probers (not blackbox)")
    if "ci-c" not in picks.get("region", []):
        fail(f"variable region: {picks.get('region')}: the prober scraped as job synthetic-canary is missing")
    for p in dashboard["panels"]:
        for t in p["targets"]:
            expr = grafana(t["expr"], picks)
            r = query(prom, expr)
            checked += 1
            if r.get("status") != "success":
                fail(f"panel {p['title']!r}: {t['expr']}: {r.get('error')}")
                continue
            result = r["data"]["result"]
            print(f"panel {p['title']!r} {t['refId']}: {len(result)} series")
            if not result:
                fail(f"panel {p['title']!r}: {t['expr']} returned no series")
            check_jobs(f"panel {p['title']!r}", result, picks["job"])
            if "joincanary_notifications_total" in expr and not any(
                    s["metric"].get("result") == "delivered" and float(s["value"][1]) > 0 for s in result):
                fail(f"panel {p['title']!r}: no delivery shown: {result}")
    checked += check_per_region(prom, dashboard, picks)
    rules = json.loads(http("GET", f"http://127.0.0.1:{prom}/api/v1/rules")[1])["data"]["groups"]
    evaluated = 0
    for g in rules:
        for r in g["rules"]:
            evaluated += 1
            if r.get("health") != "ok":
                fail(f"rule {r['name']}: {r.get('health')} {r.get('lastError')}")
    if evaluated < 15:
        fail(f"only {evaluated} rules loaded")
    checked += check_metric_names(prom)
    # The probers' pushed alerts reached the shipped Alertmanager: the watchdog of each region.
    alerts = get_json(f"http://127.0.0.1:{am}/api/v2/alerts")
    watchdogs = {a["labels"].get("region") for a in alerts if a["labels"].get("alertname") == "JoinCanaryWatchdog"}
    if watchdogs != {"ci-a", "ci-b", "ci-c"}:
        fail(f"JoinCanaryWatchdog in Alertmanager for {watchdogs}, expected ci-a, ci-b and ci-c")
    print(f"dashboard: {checked} queries against a live Prometheus, {evaluated} rules evaluated, {len(stack.errors)} errors")


if __name__ == "__main__":
    try:
        main()
    finally:
        stack.stop()
    sys.exit(1 if stack.errors else 0)
