#!/usr/bin/env python3
"""The shipped Alertmanager receiver templates (deploy/alertmanager/templates/joincanary.tmpl, loaded
by the shipped alertmanager.yml's `templates:`), called by the receivers of docs/pages.md
("Through Alertmanager") as written there, make a real page's first line the prober's summary: a
`joincanary run` whose probe fails (the sim's login answering 500) pushes its JoinFlowFailing to
Debian's Alertmanager, configured with the shipped templates and the docs' receivers (their
placeholders filled, their URLs pointed at a loopback recorder), and the PagerDuty summary,
Opsgenie message and Slack title Alertmanager sends must name the probe, region, step and the
server's words (the Opsgenie description and Slack text too, with the step table). The region's
name is long enough that the summary passes Opsgenie's 130 characters, which Alertmanager cuts
from the end: the message (joincanary.short) must cut the name, not the cause. The same
receivers without the templates must not (Alertmanager's defaults show labels only), so the
docs' reason to add them still holds. The example in alertmanager.yml's comments must be the
docs' receivers. All on 127.0.0.1, about 10 s, bounded; logs in target/deploy/page-templates/.
"""
import http.server as httpserver
import json
import os
import re
import sys
import threading
import time

import yaml

from stack import AM_CONFIG, OUT, ROOT, Stack, absolute_templates, free_port, http, probe_file, require_tools

stack = Stack(os.path.join(OUT, "page-templates"), time.monotonic() + 60)
# A region name long enough that the summary passes Opsgenie's 130 characters, where
# Alertmanager cuts the message from the end: joincanary.short must keep the cause.
REGION = "europe-west3-frankfurt-availability-zone-c-dedicated"
got = []


class Recorder(httpserver.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        got.append((self.path, json.loads(body or b"{}")))
        self.send_response(202)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status":"success","ok":true}')

    def log_message(self, *args):
        pass


def docs_receivers():
    text = open(os.path.join(ROOT, "docs/pages.md"), encoding="utf-8").read()
    section = text.split("## Through Alertmanager", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```([a-z]*)\n(.*?)^```", section, re.S | re.M)
    receivers = next(b for lang, b in blocks if lang == "yaml")
    return yaml.safe_load(receivers)["receivers"]


def config_example():
    """The receiver example in the shipped alertmanager.yml's comments (the lines after `for
    `page`:`), as YAML."""
    lines = open(AM_CONFIG).read().splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("# ") and l.rstrip().endswith("for `page`:"))
    body = []
    for line in lines[start + 1:]:
        if not line.startswith("#   "):
            break
        body.append(line[2:])
    return yaml.safe_load("\n".join(body))


def first_lines(path):
    """What each integration shows first, from the recorded requests under `path`."""
    out = {}
    for p, b in got:
        if p == f"{path}/pd":
            out["pagerduty"] = b["payload"]["summary"]
        elif p.startswith(f"{path}/og/"):
            out["opsgenie"] = b["message"]
            out["opsgenie description"] = b.get("description", "")
        elif p == f"{path}/slack":
            out["slack"] = b["attachments"][0]["title"]
            out["slack text"] = b["attachments"][0].get("text", "")
    return out


def main():
    require_tools()
    receivers = docs_receivers()
    example = config_example()
    if example != {k: v for k, v in receivers[0].items() if k != "name"}:
        stack.fail(f"{AM_CONFIG}'s receiver example differs from docs/pages.md's: {example} != {receivers[0]}")
    templates = absolute_templates(yaml.safe_load(open(AM_CONFIG)))["templates"]
    recorder = httpserver.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    rec = f"http://127.0.0.1:{recorder.server_address[1]}"

    ams = {}
    for mode in ("docs", "defaults"):
        page = json.loads(json.dumps(receivers[0]))
        base = f"{rec}/{mode}"
        for c in page.get("pagerduty_configs", []):
            c.update(routing_key="KEY", url=f"{base}/pd")
        for c in page.get("opsgenie_configs", []):
            c.update(api_key="KEY", api_url=f"{base}/og/")
        for c in page.get("slack_configs", []):
            c.update(api_url=f"{base}/slack")
        if mode == "defaults":
            for kind in ("pagerduty_configs", "opsgenie_configs", "slack_configs"):
                for c in page.get(kind, []):
                    for key in ("description", "message", "title", "text"):
                        c.pop(key, None)
        port = free_port()
        stack.alertmanager(f"alertmanager-{mode}", port, {
            "templates": templates,
            # The join flow's alert only: the prober's watchdog goes nowhere here.
            "route": {"receiver": "nobody", "routes": [{
                "receiver": page["name"], "matchers": ['alertname="JoinFlowFailing"'],
                "group_by": ["probe"], "group_wait": "1s", "group_interval": "2s",
                "repeat_interval": "1h"}]},
            "receivers": [page, {"name": "nobody"}],
        })
        ams[mode] = port

    sim = stack.sim()
    http("PUT", f"{sim}/_sim/faults", json.dumps({"login_status": 500}).encode())
    probe_file(stack.work, {"20s": "900ms", "5s": "400ms", "2s": "200ms"})
    pagers = "".join(f'''
[[pager]]
name = "am-{mode}"
type = "alertmanager"
url = "http://127.0.0.1:{port}"
resend_interval = "1s"
''' for mode, port in ams.items())
    stack.prober("joincanary", f'''region = "{REGION}"
listen = "127.0.0.1:{free_port()}"
probes = ["probes"]
state_dir = "state"
[defaults]
schedule = "* * * * * *"
[alerting]
confirm_delay = "300ms"
{pagers}''', {"SIM_URL": sim})

    stack.wait_for("every integration notified, with and without the docs' template",
                   lambda: len(first_lines("/docs")) == 5 and len(first_lines("/defaults")) == 5, 30)
    for kind, line in sorted(first_lines("/docs").items()):
        print(f"shipped templates, {kind}: {line!r}")
        if not line.startswith("sim-join failing in ") and not line.startswith("[FIRING] sim-join failing"):
            stack.fail(f"{kind} through the shipped templates does not start with the summary: {line!r}")
        # Opsgenie's message (130, cut from the end by Alertmanager) has the region cut instead.
        region = REGION[:15] if kind == "opsgenie" else REGION
        for word in (f"sim-join failing in {region}", 'step "login"', "http_status",
                     "HTTP 500: injected fault: login_status"):
            if word not in line:
                stack.fail(f"{kind} through the shipped templates: {word!r} missing from {line!r}")
        if kind == "opsgenie" and len(line) > 130:
            stack.fail(f"opsgenie message is {len(line)} characters, over 130: {line!r}")
        # The bodies carry the step table too (the alert's description annotation).
        if kind.endswith(("description", "text")) and "login" not in line.split("\n", 1)[-1]:
            stack.fail(f"{kind} through the shipped templates: no step table after the first line: {line!r}")
    for kind, line in sorted(first_lines("/defaults").items()):
        if kind.endswith(("description", "text")):
            continue  # the first line is the question; Opsgenie's default body lists annotations
        print(f"Alertmanager's default, {kind}: {line}")
        if "injected fault" in line:
            stack.fail(f"{kind}: Alertmanager's default now shows the summary ({line!r}): "
                       "docs/pages.md's reason for the template is out of date")
    print(f"page templates: {len(got)} notifications recorded, {len(stack.errors)} errors")


if __name__ == "__main__":
    try:
        main()
    finally:
        stack.stop()
    sys.exit(1 if stack.errors else 0)
