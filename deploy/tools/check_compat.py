#!/usr/bin/env python3
"""The shipped Prometheus and Alertmanager files against what changed in Prometheus 3.x and
Alertmanager 0.27+, which CI cannot run (Debian ships Prometheus 2.42 and Alertmanager 0.25; CI
runs those): every hazard of the migration guides that a file can show is looked for here, so a
rule, dashboard query, route or flag that would break on the newer versions fails CI on the older.

Prometheus 3 (docs/migration.md of prometheus/prometheus):
- `le` / `quantile` values are normalized to floats on ingestion (`le="1"` becomes `le="1.0"`): a
  matcher on a whole-number value selects nothing;
- `holt_winters` is renamed and behind a feature flag;
- range selectors are left-open: a subquery `[A:B]` with A <= B holds one point, too few for
  rate() or increase();
- feature flags now default or removed (`--enable-feature=` of them is ignored with a warning, and
  `agent` / `remote-write-receiver` turn into their own flags);
- Alertmanager's v1 API is gone (`api_version: v1`);
- the regex `.` matches a newline: a matcher on a free-text label (`error`, `summary`) could
  match more; only fixed-vocabulary labels may carry a regex matcher.
Alertmanager 0.27+ (the UTF-8 matcher parser, the classic one kept as a fallback until removed):
- only `matchers` / `source_matchers` / `target_matchers` (the `match` / `match_re` /
  `source_match*` maps are deprecated), each `name op "quoted value"`, which both parsers read
  the same; routes.tests' label values free of the new parser's reserved characters;
- joincanary's alertmanager pager speaks API v2 only (v1 was removed in 0.27).
The scrape side (Prometheus 3 fails a scrape without a Content-Type it knows) is checked live by
check_dashboard.py against the real probers. docs/deploy.md, "Versions", lists what was reviewed.
"""
import json
import os
import re
import sys

import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
RULES = ["deploy/prometheus/joincanary-rules.yaml", "deploy/prometheus/global/joincanary-global-rules.yaml",
         "deploy/prometheus/joincanary-alertmanager-rules.yaml"]
PROMETHEUS = ["deploy/prometheus/prometheus.yml", "deploy/prometheus/global/prometheus.yml"]
DASHBOARD = "deploy/grafana/joincanary-dashboard.json"
AM = "deploy/alertmanager/alertmanager.yml"
ROUTE_CASES = "deploy/alertmanager/routes.tests"
ARGS = ["deploy/compose.yaml", "deploy/kubernetes/base/statefulset.yaml"]

# Flags Prometheus 3 removed from --enable-feature (now default, or a flag of their own).
REMOVED_FEATURES = {"promql-at-modifier", "promql-negative-offset", "remote-write-receiver",
                    "new-service-discovery-manager", "expand-external-labels", "no-default-scrape-port",
                    "agent", "auto-gomemlimit", "auto-gomaxprocs", "utf8-names"}
# Labels whose values joincanary fixes (names from its config or its own vocabulary): a regex `.`
# on them never meets a newline. Free text (error, summary) is never a label.
FIXED_LABELS = {"job", "instance", "region", "probe", "sink", "step", "phase", "reason", "result",
                "event", "severity", "task", "heartbeat", "type", "alertname", "test", "source",
                "member", "file", "cause", "name", "version", "cluster", "__name__"}
# The UTF-8 matcher parser's reserved characters (whitespace too), which an unquoted value may not hold.
RESERVED = set('{}!=~,\\"\'`')
MATCHER = re.compile(r'^([a-zA-Z_][a-zA-Z0-9_]*)(=~|!~|!=|=)"((?:[^"\\]|\\.)*)"$')

errors = []


def fail(where, msg):
    errors.append(f"{where}: {msg}")
    print(f"ERROR {where}: {msg}")


def promql_hazards(where, expr):
    for m in re.finditer(r'\b(le|quantile)\s*(=|!=)\s*"(\+?\d+)"', expr):
        fail(where, f'{m.group(0)}: Prometheus 3 stores {m.group(1)}="{m.group(3)}.0"; match the float form '
                    f'(or a regex of both)')
    if re.search(r"\bholt_winters\s*\(", expr):
        fail(where, "holt_winters is double_exponential_smoothing behind a feature flag in Prometheus 3")
    for m in re.finditer(r"\[(\d+)([smhdwy]):(\d+)([smhdwy])\]", expr):
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
        rng, step = int(m.group(1)) * unit[m.group(2)], int(m.group(3)) * unit[m.group(4)]
        if rng <= step:
            fail(where, f"subquery {m.group(0)}: left-open in Prometheus 3, one point, too few for a rate")
    for m in re.finditer(r'\b([a-zA-Z_]\w*)\s*(=~|!~)\s*"', expr):
        if m.group(1) not in FIXED_LABELS:
            fail(where, f"regex matcher on {m.group(1)!r}: `.` matches a newline in Prometheus 3; "
                        "only fixed-vocabulary labels may carry a regex")


def rules_exprs(path):
    for g in yaml.safe_load(open(os.path.join(ROOT, path)))["groups"]:
        for r in g["rules"]:
            yield f"{path}: {r.get('alert') or r.get('record')}", r["expr"]


def check_prometheus():
    checked = 0
    for path in RULES:
        for where, expr in rules_exprs(path):
            promql_hazards(where, expr)
            checked += 1
    dash = json.load(open(os.path.join(ROOT, DASHBOARD)))
    for p in dash["panels"]:
        for t in p["targets"]:
            promql_hazards(f"{DASHBOARD}: panel {p['title']!r}", t["expr"])
            checked += 1
    for v in dash["templating"]["list"]:
        if v.get("type") == "query":
            promql_hazards(f"{DASHBOARD}: variable {v['name']}", v["query"])
            checked += 1
    for path in PROMETHEUS:
        config = yaml.safe_load(open(os.path.join(ROOT, path)))
        for am in (config.get("alerting") or {}).get("alertmanagers") or []:
            if am.get("api_version", "v2") != "v2":
                fail(path, f"alertmanagers api_version {am['api_version']}: Prometheus 3 speaks v2 only")
        for job in config.get("scrape_configs") or []:
            if "scrape_classic_histograms" in job:
                fail(path, f"job {job['job_name']}: scrape_classic_histograms is always_scrape_classic_histograms in Prometheus 3")
            for t in (sc.get("targets") or [] for sc in job.get("static_configs") or []):
                for target in t:
                    if not re.search(r":\d+$", target):
                        fail(path, f"target {target}: Prometheus 3 adds no default port; give it one")
        checked += 1
    for path in ARGS:
        text = open(os.path.join(ROOT, path)).read()
        for m in re.finditer(r"--enable-feature=([\w,-]+)", text):
            gone = REMOVED_FEATURES & set(m.group(1).split(","))
            if gone:
                fail(path, f"--enable-feature={m.group(1)}: {sorted(gone)} removed in Prometheus 3")
        for flag in ("--web.console.templates", "--web.console.libraries"):
            if flag in text:
                fail(path, f"{flag}: Prometheus 3 ships no console templates (the flag's files are gone from its image)")
        checked += 1
    return checked


def check_alertmanager():
    checked = 0
    config = yaml.safe_load(open(os.path.join(ROOT, AM)))

    def routes(route, where):
        yield route, where
        for i, child in enumerate(route.get("routes") or []):
            yield from routes(child, f"{where}.routes[{i}]")

    places = [(r, w, "matchers") for r, w in routes(config["route"], "route")]
    places += [(r, f"inhibit_rules[{i}]", k) for i, r in enumerate(config.get("inhibit_rules") or [])
               for k in ("source_matchers", "target_matchers")]
    for node, where, key in places:
        for old in ("match", "match_re", "source_match", "source_match_re", "target_match", "target_match_re"):
            if old in node:
                fail(f"{AM}: {where}", f"`{old}` is deprecated since Alertmanager 0.22; use `{key}`")
        for m in node.get(key) or []:
            checked += 1
            g = MATCHER.match(m)
            if not g:
                fail(f"{AM}: {where}", f"matcher {m!r}: write it `name op \"value\"`, which the classic and the "
                                       "UTF-8 parsers (Alertmanager 0.27+) read the same")
            elif "\\" in g.group(3):
                fail(f"{AM}: {where}", f"matcher {m!r}: a backslash escape reads differently in the two parsers")
    for lineno, line in enumerate(open(os.path.join(ROOT, ROUTE_CASES)), 1):
        tokens = line.split("#", 1)[0].split()
        if tokens[:1] == ["quorum-only"]:
            tokens = tokens[1:]
        for label in tokens[1:]:
            checked += 1
            if RESERVED & set(label.partition("=")[2]):
                fail(f"{ROUTE_CASES}:{lineno}", f"{label}: the UTF-8 parser of amtool 0.27+ needs it quoted")
    # joincanary's own alertmanager pager (posting alerts, reading routes for test-page).
    pager = os.path.join(ROOT, "src/alert/alertmanager")
    for name in sorted(os.listdir(pager)):
        checked += 1
        for lineno, line in enumerate(open(os.path.join(pager, name)), 1):
            if "/api/v1/" in line:
                fail(f"src/alert/alertmanager/{name}:{lineno}", "Alertmanager's v1 API is gone in 0.27; use /api/v2")
    return checked


def main():
    n = check_prometheus() + check_alertmanager()
    print(f"Prometheus 3 / Alertmanager 0.27+ hazards: {n} rules, queries, configs and matchers read, "
          f"{len(errors)} found")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
