#!/usr/bin/env python3
"""Checks deploy/alertmanager/alertmanager.yml's routing against routes.tests.

Each case runs `amtool config routes test --verify.receivers` (amtool decides, not this script), and
every route of the tree must be the one some case ends in, so a new route without a case fails.
"""
import re
import subprocess
import sys

import yaml

CONFIG = "deploy/alertmanager/alertmanager.yml"
CASES = "deploy/alertmanager/routes.tests"

MATCHER = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"(.*)"\s*$')


def matches(matchers, labels):
    for m in matchers:
        g = MATCHER.match(m)
        if not g:
            sys.exit(f"{CONFIG}: matcher {m!r} is not in the name=\"value\" form this check reads")
        name, op, value = g.groups()
        have = labels.get(name, "")
        ok = {
            "=": have == value,
            "!=": have != value,
            "=~": re.fullmatch(value, have) is not None,
            "!~": re.fullmatch(value, have) is None,
        }[op]
        if not ok:
            return False
    return True


def deepest(route, labels, path):
    """The route an alert ends in (first matching child, depth first; no `continue` used)."""
    for i, child in enumerate(route.get("routes") or []):
        if child.get("continue"):
            sys.exit(f"{CONFIG}: `continue` is not handled by this check")
        if matches(child.get("matchers") or [], labels):
            return deepest(child, labels, path + (i,))
    return path


def all_paths(route, path=()):
    yield path
    for i, child in enumerate(route.get("routes") or []):
        yield from all_paths(child, path + (i,))


def main():
    config = yaml.safe_load(open(CONFIG))
    covered = set()
    failures = 0
    cases = 0
    for lineno, line in enumerate(open(CASES), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        expected, *labels = line.split()
        cases += 1
        run = subprocess.run(
            ["amtool", "config", "routes", "test", f"--config.file={CONFIG}",
             f"--verify.receivers={expected}", *labels],
            capture_output=True, text=True)
        if run.returncode != 0:
            failures += 1
            print(f"{CASES}:{lineno}: expected {expected}, amtool says {run.stdout.strip()}"
                  f" {run.stderr.strip()}")
        covered.add(deepest(config["route"], dict(l.split("=", 1) for l in labels), ()))
    for path in all_paths(config["route"]):
        if path and path not in covered:
            route = config["route"]
            for i in path:
                route = route["routes"][i]
            failures += 1
            print(f"{CASES}: no case ends in the route {route.get('matchers')} -> {route['receiver']}")
    print(f"alertmanager routes: {cases} cases, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
