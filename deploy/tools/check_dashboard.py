#!/usr/bin/env python3
"""Runs every Grafana panel query and variable of deploy/grafana/joincanary-dashboard.json against a
live Prometheus that scrapes real probers, and fails on an error or an empty answer.

All on 127.0.0.1, bounded (about 40 s): `joincanary sim`; Debian's Alertmanager with the shipped
alertmanager.yml (receivers pointed at a closed loopback port); two `joincanary run` (regions ci-a
and ci-b) probing the sim every 3 s with an Alertmanager pager and a heartbeat; Debian's Prometheus
scraping them every second as job "joincanary" with the shipped rules. Half-way the sim's login
fails for a few runs, so failures, an incident and its deliveries exist. Then every panel query
(variables as "All") must answer with series, the notifications panel must show a delivery, and
every shipped rule must evaluate without error. Logs go to target/deploy/dashboard/.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
WORK = os.path.join(ROOT, "target/deploy/dashboard")
BIN = os.path.join(ROOT, "target/debug/joincanary")
DEADLINE = time.monotonic() + 120
procs = []
errors = []


def fail(msg):
    errors.append(msg)
    print("ERROR", msg)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name, args, **kw):
    log = open(os.path.join(WORK, f"{name}.log"), "w")
    p = subprocess.Popen(args, stdout=kw.pop("stdout", log), stderr=log, stdin=subprocess.DEVNULL, **kw)
    procs.append(p)
    return p


def http(method, url, body=None, timeout=2):
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"content-type": "application/json"} if body else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def wait_for(what, check, seconds):
    end = min(time.monotonic() + seconds, DEADLINE)
    while time.monotonic() < end:
        try:
            if check():
                return True
        except OSError:
            pass
        time.sleep(0.2)
    fail(f"timed out waiting for {what}")
    return False


def query(prom, expr):
    url = f"http://127.0.0.1:{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        _, body = http("GET", url, timeout=5)
    except urllib.error.HTTPError as e:
        return {"status": "error", "error": e.read().decode(errors="replace")}
    return json.loads(body)


def grafana_expr(expr):
    # What Grafana sends with every variable at "All": a regex of all values, here any value.
    return expr.replace("$probe", ".+").replace("$region", ".+")


def main():
    for tool in ("prometheus", "prometheus-alertmanager"):
        if not shutil.which(tool):
            sys.exit(f"{tool} missing: bash .ci/run installs it (.ci/apt.d/deploy.txt)")
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} missing: cargo build --bin joincanary")
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)

    # The platform under test.
    sim = start("sim", [BIN, "sim", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    line = sim.stdout.readline().strip()
    if not line.startswith("listening on "):
        sys.exit(f"sim said {line!r}")
    sim_url = line.removeprefix("listening on ")

    # Alertmanager with the shipped config; receivers to a closed loopback port (no traffic out).
    am = free_port()
    amcfg = yaml.safe_load(open(os.path.join(ROOT, "deploy/alertmanager/alertmanager.yml")))
    for r in amcfg["receivers"]:
        for w in r.get("webhook_configs") or []:
            w["url"] = "http://127.0.0.1:9/" + r["name"]
    yaml.safe_dump(amcfg, open(os.path.join(WORK, "alertmanager.yml"), "w"))
    start("alertmanager", ["prometheus-alertmanager", f"--config.file={WORK}/alertmanager.yml",
                           f"--storage.path={WORK}/am-data", f"--web.listen-address=127.0.0.1:{am}",
                           "--cluster.listen-address="])
    wait_for("alertmanager", lambda: http("GET", f"http://127.0.0.1:{am}/-/ready")[0] == 200, 20)

    # Two regional probers.
    os.makedirs(os.path.join(WORK, "probes"))
    # The shipped probe with deadlines that fit a 3 s schedule.
    probe = open(os.path.join(ROOT, "probes/sim-join.toml")).read()
    for old, short in (('timeout = "20s"', 'timeout = "2500ms"'), ('timeout = "5s"', 'timeout = "1s"'),
                       ('timeout = "2s"', 'timeout = "1s"')):
        probe = probe.replace(old, short)
    open(os.path.join(WORK, "probes", "sim-join.toml"), "w").write(probe)
    targets = []
    for region in ("ci-a", "ci-b"):
        port = free_port()
        targets.append(f"127.0.0.1:{port}")
        cfg = os.path.join(WORK, f"{region}.toml")
        open(cfg, "w").write(f'''region = "{region}"
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
url = "http://127.0.0.1:{am}/-/healthy"
interval = "2s"
timeout = "1s"
''')
        start(f"joincanary-{region}", [BIN, "run", "--config", cfg],
              env={**os.environ, "SIM_URL": sim_url, "NO_COLOR": "1"})

    # Prometheus scraping them as job "joincanary" with the shipped rules.
    prom = free_port()
    yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [os.path.join(ROOT, "deploy/prometheus/joincanary-rules.yaml"),
                       os.path.join(ROOT, "deploy/prometheus/global/joincanary-global-rules.yaml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am}"]}]}]},
        "scrape_configs": [{"job_name": "joincanary", "static_configs": [{"targets": targets}]}],
    }, open(os.path.join(WORK, "prometheus.yml"), "w"))
    start("prometheus", ["prometheus", f"--config.file={WORK}/prometheus.yml",
                         f"--storage.tsdb.path={WORK}/prom-data", f"--web.listen-address=127.0.0.1:{prom}"])
    wait_for("prometheus", lambda: http("GET", f"http://127.0.0.1:{prom}/-/ready")[0] == 200, 20)
    wait_for("both probers scraped and probing", lambda: len(
        query(prom, 'probe_success{job="joincanary"} == 1')["data"]["result"]) == 2, 25)

    # A few failing runs: failures by step and reason, an incident, its trigger and resolve.
    http("PUT", f"{sim_url}/_sim/faults", json.dumps({"login_status": 500}).encode())
    wait_for("an incident", lambda: query(prom, 'sum(probe_alert_firing{job="joincanary"}) > 0')["data"]["result"], 20)
    wait_for("a delivery", lambda: query(
        prom, 'sum(joincanary_notifications_total{job="joincanary",result="delivered"}) > 0')["data"]["result"], 20)
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
    rules = json.loads(http("GET", f"http://127.0.0.1:{prom}/api/v1/rules")[1])["data"]["groups"]
    evaluated = 0
    for g in rules:
        for r in g["rules"]:
            evaluated += 1
            if r.get("health") != "ok":
                fail(f"rule {r['name']}: {r.get('health')} {r.get('lastError')}")
    if evaluated < 15:
        fail(f"only {evaluated} rules loaded")
    # The probers' pushed alerts reached the shipped Alertmanager: the watchdog of each region.
    alerts = json.loads(http("GET", f"http://127.0.0.1:{am}/api/v2/alerts")[1])
    watchdogs = {a["labels"].get("region") for a in alerts if a["labels"].get("alertname") == "JoinCanaryWatchdog"}
    if watchdogs != {"ci-a", "ci-b"}:
        fail(f"JoinCanaryWatchdog in Alertmanager for {watchdogs}, expected ci-a and ci-b")
    print(f"dashboard: {checked} queries against a live Prometheus, {evaluated} rules evaluated, {len(errors)} errors")


def stop():
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


if __name__ == "__main__":
    try:
        main()
    finally:
        stop()
    sys.exit(1 if errors else 0)
