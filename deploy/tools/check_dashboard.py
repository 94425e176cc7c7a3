#!/usr/bin/env python3
"""Runs every Grafana panel query and variable of deploy/grafana/joincanary-dashboard.json against a
live Prometheus that scrapes real probers, and fails on an error or an empty answer.

All on 127.0.0.1, bounded (about 40 s): `joincanary sim`; Debian's Alertmanager with the shipped
alertmanager.yml (receivers pointed at a closed loopback port); three `joincanary run` (regions
ci-a and ci-b probing the sim, ci-c a second sim whose login always fails) every 3 s with an Alertmanager pager and a heartbeat; Debian's Prometheus
scraping them every second as job "joincanary" with the shipped rules. Half-way the sim's login
fails for a few runs, so failures, an incident and its deliveries exist. Then every panel query
(variables as "All", then one region and probe picked: ci-a, and ci-c that never succeeded) must
answer with series, no panel in seconds may read a timestamp of 0 as 56 years, the notifications panel must show a delivery,
every shipped rule must evaluate without error, and every metric name the rules, the dashboard,
docs/deploy.md and README's Metrics table use must have been scraped from the probers. Logs go to target/deploy/dashboard/.
"""
import json
import os
import re
import sys
import time
import urllib.parse

from stack import (GLOBAL_RULES, ROOT, RULES, Stack, alertmanager_config, free_port, get_json, http,
                   probe_file, query, require_tools)

stack = Stack(os.path.join(ROOT, "target/deploy/dashboard"), time.monotonic() + 120)
fail = stack.fail
wait_for = stack.wait_for


def grafana_expr(expr):
    # What Grafana sends with every variable at "All": a regex of all values, here any value.
    return expr.replace("$probe", ".+").replace("$region", ".+")


# A metric name as the rules, the dashboard and the docs write it (not inside a recording rule's
# name such as region_probe:probe_failing:max).
METRIC = re.compile(r"(?<![\w:])((?:probe|joincanary|process)_[a-z0-9_]+)(?![\w:])")
# Metric names only some probes export, documented as such in README's Metrics table.
CONDITIONAL = {"probe_gauge_value": "a redis or http_json step", "probe_resident_reconnects_total": "a resident probe"}


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
        for name in sorted(set(METRIC.findall(text))):
            names += 1
            # A histogram is written by its family name in the docs, scraped as _bucket/_sum/_count.
            if name in scraped or f"{name}_bucket" in scraped:
                continue
            if name in CONDITIONAL and not where.startswith("deploy/"):
                continue
            fail(f"{where}: metric {name} is not exported by joincanary run (scraped: {sorted(scraped)})")
    print(f"metric names: {names} uses in rules, dashboard and docs, each scraped from the probers")
    return names


# Longest believable "seconds since" on a dashboard: more means a timestamp of 0 (never) went
# through `time() - x` and the panel shows 56 years.
LONGEST_SECONDS = 365 * 24 * 3600


def check_per_region(prom, dashboard):
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
                # Grafana's substitution of a single value picked in a multi-value variable.
                expr = t["expr"].replace("$region", region).replace("$probe", "sim-join")
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
                if unit == "s":
                    for series_ in result:
                        v = float(series_["value"][1])
                        if not 0 <= v < LONGEST_SECONDS:
                            fail(f"panel {p['title']!r} with region={region} shows {v:.0f} s for "
                                 f"{series_['metric']}: a timestamp of 0 (never) read as a time")
    return checked


def main():
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

    # Prometheus scraping them as job "joincanary" with the shipped rules.
    prom = free_port()
    stack.prometheus("prometheus", prom, {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [RULES, GLOBAL_RULES],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am}"]}]}]},
        "scrape_configs": [{"job_name": "joincanary", "static_configs": [{"targets": targets}]}],
    })
    wait_for("the probers scraped and probing", lambda: len(
        query(prom, 'probe_success{job="joincanary"} == 1')["data"]["result"]) == 2 and len(
        query(prom, 'probe_success{job="joincanary",region="ci-c"} == 0')["data"]["result"]) == 1, 25)

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

    dashboard = json.load(open(os.path.join(ROOT, "deploy/grafana/joincanary-dashboard.json")))
    checked = 0
    for v in dashboard["templating"]["list"]:
        if v["type"] != "query":
            continue
        q = v["query"]
        inner = q[len("label_values("):-1]
        selector, label = inner.rsplit(",", 1)
        url = f"http://127.0.0.1:{prom}/api/v1/label/{label.strip()}/values?" + urllib.parse.urlencode(
            {"match[]": grafana_expr(selector)})
        values = json.loads(http("GET", url)[1])["data"]
        checked += 1
        print(f"variable {v['name']}: {values}")
        if not values:
            fail(f"variable {v['name']}: {q} has no values")
    for p in dashboard["panels"]:
        for t in p["targets"]:
            expr = grafana_expr(t["expr"])
            r = query(prom, expr)
            checked += 1
            if r.get("status") != "success":
                fail(f"panel {p['title']!r}: {t['expr']}: {r.get('error')}")
                continue
            result = r["data"]["result"]
            print(f"panel {p['title']!r} {t['refId']}: {len(result)} series")
            if not result:
                fail(f"panel {p['title']!r}: {t['expr']} returned no series")
            if "joincanary_notifications_total" in expr and not any(
                    s["metric"].get("result") == "delivered" and float(s["value"][1]) > 0 for s in result):
                fail(f"panel {p['title']!r}: no delivery shown: {result}")
    checked += check_per_region(prom, dashboard)
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
