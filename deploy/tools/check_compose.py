#!/usr/bin/env python3
"""Checks deploy/compose.yaml as `docker-compose config` resolved it (stdin): the stack is whole.

Three probers with distinct regions and the shipped config and probes, each with its own
status_url (its published status page) and the other two as peers, the sim they probe,
Prometheus with the shipped prometheus.yml and rules, Alertmanager with the shipped config and,
where that config's `templates:` globs resolve inside the container (relative to its
`--config.file`), the shipped receiver templates; every bind-mounted host path exists; published
ports are distinct and on loopback.
"""
import glob
import os
import sys

import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
errors = []


def fail(msg):
    errors.append(msg)
    print("ERROR", msg)


def mounts(service):
    for v in service.get("volumes") or []:
        if isinstance(v, str):
            src, dst = v.split(":")[:2]
        else:
            src, dst = v.get("source"), v.get("target")
        yield src, dst


def host_path(service, path):
    """Where a path inside the container lives on the host, through its bind mounts (None if none)."""
    best = None
    for src, dst in mounts(service):
        dst = dst.rstrip("/")
        if (path == dst or path.startswith(dst + "/")) and (best is None or len(dst) > len(best[1])):
            best = (src, dst)
    return None if best is None else best[0].rstrip("/") + path[len(best[1]):]


def check_am_templates(service):
    """The config Alertmanager reads is the shipped one, and its `templates:` globs, resolved as
    Alertmanager does (against the config file's directory, inside the container), reach the
    shipped templates through the mounts."""
    flag = next((a for a in service.get("command") or [] if a.startswith("--config.file=")), None)
    if flag is None:
        return fail("alertmanager: no --config.file")
    config = flag.split("=", 1)[1]
    host = host_path(service, config)
    if host is None or os.path.realpath(host) != os.path.join(ROOT, "deploy/alertmanager/alertmanager.yml"):
        return fail(f"alertmanager: its --config.file {config} is {host}, not the shipped alertmanager.yml")
    found = {}
    for t in yaml.safe_load(open(host)).get("templates") or []:
        inside = t if t.startswith("/") else os.path.join(os.path.dirname(config), t)
        found[t] = [os.path.relpath(f, ROOT) for f in glob.glob(host_path(service, inside) or "/nonexistent")]
        print(f"alertmanager: templates {t!r} -> {inside}: {found[t] or 'nothing (another layout)'}")
    # Each layout fills one of the globs (this one the relative one, through the mounts).
    if "deploy/alertmanager/templates/joincanary.tmpl" not in {f for fs in found.values() for f in fs}:
        fail(f"alertmanager: no `templates:` glob reaches the shipped templates in the container: {found}")


def main():
    config = yaml.safe_load(sys.stdin)
    services = config["services"]
    probers = {n: s for n, s in services.items() if (s.get("command") or [None])[0] == "run"}
    regions = {s["environment"].get("REGION") for s in probers.values()}
    if len(probers) != 3 or len(regions) != 3:
        fail(f"expected three probers with distinct regions, found {sorted(probers)} {regions}")
    for name, s in probers.items():
        dsts = {dst: src for src, dst in mounts(s)}
        if not dsts.get("/etc/joincanary/config/joincanary.toml", "").endswith("deploy/compose/joincanary.toml"):
            fail(f"{name}: deploy/compose/joincanary.toml is not its config")
        if not dsts.get("/etc/joincanary/probes", "").endswith("/probes"):
            fail(f"{name}: the shipped probes are not mounted")
        if "/var/lib/joincanary" not in dsts:
            fail(f"{name}: no state volume")
        if s["environment"].get("SIM_URL") != "http://sim:7480":
            fail(f"{name}: does not probe the sim by default")
        env = s["environment"]
        peers = {env.get("PEER_1"), env.get("PEER_2")}
        others = {f"http://{n}:9464" for n in probers if n != name}
        if peers != others:
            fail(f"{name}: peers {sorted(map(str, peers))}, expected the other probers {sorted(others)}")
        published = [p if isinstance(p, str) else f"{p.get('host_ip')}:{p.get('published')}:{p.get('target')}"
                     for p in s.get("ports") or []]
        status = {f"http://{p.rsplit(':', 1)[0]}/" for p in published}
        if env.get("STATUS_URL") not in status:
            fail(f"{name}: STATUS_URL {env.get('STATUS_URL')!r} is not its published status page {status}")
    if (services.get("sim", {}).get("command") or [None])[0] != "sim":
        fail("no sim service running `joincanary sim`")
    wanted = {
        "prometheus": ["deploy/prometheus/prometheus.yml", "deploy/prometheus/joincanary-rules.yaml",
                       "deploy/prometheus/global/joincanary-global-rules.yaml",
                       "deploy/prometheus/joincanary-alertmanager-rules.yaml"],
        "alertmanager": ["deploy/alertmanager/alertmanager.yml", "deploy/alertmanager/templates/joincanary.tmpl"],
    }
    for name, files in wanted.items():
        s = services.get(name)
        if s is None:
            fail(f"no {name} service")
            continue
        srcs = [src for src, _ in mounts(s)]
        for f in files:
            if not any(os.path.join(ROOT, f).startswith(src.rstrip("/") + "/") or os.path.join(ROOT, f) == src
                       for src in srcs):
                fail(f"{name}: {f} is not mounted")
    check_am_templates(services.get("alertmanager") or {})
    published = []
    for name, s in services.items():
        for src, _ in mounts(s):
            if src.startswith("/") and not os.path.exists(src):
                fail(f"{name}: mounts {src}, which does not exist")
        for p in s.get("ports") or []:
            p = p if isinstance(p, str) else f"{p.get('host_ip')}:{p.get('published')}:{p.get('target')}"
            published.append(p.rsplit(":", 1)[0])
            if not p.startswith("127.0.0.1:"):
                fail(f"{name}: port {p} is published beyond loopback")
    if len(published) != len(set(published)):
        fail(f"published ports collide: {published}")
    print(f"compose: {len(services)} services, {len(errors)} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
