#!/usr/bin/env python3
"""The Alertmanager receiver templates of docs/pages.md ("Through Alertmanager"), as written there,
make a real page's first line the prober's summary: a `joincanary run` whose probe fails (the
sim's login answering 500) pushes its JoinFlowFailing to Debian's Alertmanager, configured with
the docs' template and receivers (their placeholders filled, their URLs pointed at a loopback
recorder), and the PagerDuty summary, Opsgenie message and Slack title Alertmanager sends must
name the probe, region, step and the server's words. The same receivers without the template
must not (Alertmanager's defaults show labels only), so the docs' reason to add it still holds.
All on 127.0.0.1, about 10 s, bounded; logs in target/deploy/page-templates/.
"""
import http.server as httpserver
import json
import os
import re
import sys
import threading
import time

import yaml

from stack import ROOT, Stack, free_port, http, probe_file, require_tools

stack = Stack(os.path.join(ROOT, "target/deploy/page-templates"), time.monotonic() + 60)
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


def docs_blocks():
    text = open(os.path.join(ROOT, "docs/pages.md"), encoding="utf-8").read()
    section = text.split("## Through Alertmanager", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```([a-z]*)\n(.*?)^```", section, re.S | re.M)
    template = next(b for lang, b in blocks if not lang)
    receivers = next(b for lang, b in blocks if lang == "yaml")
    return template, yaml.safe_load(receivers)["receivers"]


def first_lines(path):
    """What each integration shows first, from the recorded requests under `path`."""
    out = {}
    for p, b in got:
        if p == f"{path}/pd":
            out["pagerduty"] = b["payload"]["summary"]
        elif p.startswith(f"{path}/og/"):
            out["opsgenie"] = b["message"]
        elif p == f"{path}/slack":
            out["slack"] = b["attachments"][0]["title"]
    return out


def main():
    require_tools()
    template, receivers = docs_blocks()
    recorder = httpserver.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    rec = f"http://127.0.0.1:{recorder.server_address[1]}"
    tmpl = stack.path("joincanary.tmpl")
    open(tmpl, "w").write(template)

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
                    for key in ("description", "message", "title"):
                        c.pop(key, None)
        port = free_port()
        stack.alertmanager(f"alertmanager-{mode}", port, {
            "templates": [tmpl],
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
    stack.prober("joincanary", f'''region = "eu-west-1"
listen = "127.0.0.1:{free_port()}"
probes = ["probes"]
state_dir = "state"
[defaults]
schedule = "* * * * * *"
[alerting]
confirm_delay = "300ms"
{pagers}''', {"SIM_URL": sim})

    stack.wait_for("every integration notified, with and without the docs' template",
                   lambda: len(first_lines("/docs")) == 3 and len(first_lines("/defaults")) == 3, 30)
    for kind, line in sorted(first_lines("/docs").items()):
        print(f"docs' template, {kind}: {line}")
        for word in ("sim-join failing in eu-west-1", 'step "login"', "http_status",
                     "HTTP 500: injected fault: login_status"):
            if word not in line:
                stack.fail(f"{kind} through the docs' template: {word!r} missing from {line!r}")
    for kind, line in sorted(first_lines("/defaults").items()):
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
