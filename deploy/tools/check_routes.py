#!/usr/bin/env python3
"""Checks deploy/alertmanager/alertmanager.yml's routing against routes.tests.

Each case runs `amtool config routes test --verify.receivers` (amtool decides, not this script), and
every route of the tree must be the one some case ends in, so a new route without a case fails.
Cases marked `quorum-only` run against the config with its documented quorum-only switch turned on
(the lines tagged `# quorum-only` uncommented, written to target/deploy/), and the switch's route
must be one of theirs: the switch stays a working, tested alternative.
"""
import glob
import os
import re
import subprocess
import sys

import yaml

from stack import absolute_templates

CONFIG = "deploy/alertmanager/alertmanager.yml"
CASES = "deploy/alertmanager/routes.tests"
QUORUM_CONFIG = "target/deploy/alertmanager-quorum-only.yml"
SWITCH = "# quorum-only"

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
    """The routes an alert ends in, as Alertmanager picks them: the first matching child, depth
    first, and after a matching child with `continue: true` the next matching ones too; the route
    itself when no child matches."""
    ends = []
    for i, child in enumerate(route.get("routes") or []):
        if matches(child.get("matchers") or [], labels):
            ends += deepest(child, labels, path + (i,))
            if not child.get("continue"):
                break
    return ends or [path]


def all_paths(route, path=()):
    yield path
    for i, child in enumerate(route.get("routes") or []):
        yield from all_paths(child, path + (i,))


def quorum_only(text):
    """The config with the quorum-only switch on: each `#...  # quorum-only` line uncommented."""
    out = []
    for line in text.splitlines(keepends=True):
        if line.rstrip().endswith(SWITCH) and line.lstrip().startswith("#"):
            indent = len(line) - len(line.lstrip())
            line = line[:indent] + line[indent + 1:]
        out.append(line)
    return "".join(out)


# The receiver templates the docs and the config's comments tell users to call.
TEMPLATES = ("joincanary.line", "joincanary.short", "joincanary.text")


def check_templates(config):
    """The shipped `templates:` globs load the shipped file, and it defines every template the docs
    use: a glob matching nothing loads nothing without an error (amtool check-config says "0
    templates"), and a receiver calling a template never defined fails each notification."""
    files = [f for g in absolute_templates(dict(config))["templates"] for f in sorted(glob.glob(g))]
    if not files:
        sys.exit(f"{CONFIG}: `templates:` {config.get('templates')} matches no file beside it")
    text = "".join(open(f).read() for f in files)
    for name in TEMPLATES:
        if f'{{{{ define "{name}" -}}}}' not in text and f'{{{{ define "{name}" }}}}' not in text:
            sys.exit(f"{CONFIG}: the templates {files} do not define {name}")
    print(f"alertmanager templates: {', '.join(os.path.relpath(f) for f in files)} define {', '.join(TEMPLATES)}")


def route_at(config, path):
    route = config["route"]
    for i in path:
        route = route["routes"][i]
    return route


def main():
    text = open(CONFIG).read()
    config = yaml.safe_load(text)
    if SWITCH not in text:
        sys.exit(f"{CONFIG}: the documented quorum-only switch (lines tagged `{SWITCH}`) is missing")
    os.makedirs(os.path.dirname(QUORUM_CONFIG), exist_ok=True)
    # Written elsewhere, the variant names the shipped templates by their absolute path.
    yaml.safe_dump(absolute_templates(yaml.safe_load(quorum_only(text))), open(QUORUM_CONFIG, "w"))
    quorum = yaml.safe_load(open(QUORUM_CONFIG))
    check_templates(config)
    covered = {CONFIG: set(), QUORUM_CONFIG: set()}
    failures = 0
    cases = 0
    for lineno, line in enumerate(open(CASES), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        variant, tree = CONFIG, config
        if line.startswith("quorum-only "):
            variant, tree = QUORUM_CONFIG, quorum
            line = line.removeprefix("quorum-only ").strip()
        expected, *labels = line.split()
        cases += 1
        run = subprocess.run(
            ["amtool", "config", "routes", "test", f"--config.file={variant}",
             f"--verify.receivers={expected}", *labels],
            capture_output=True, text=True)
        if run.returncode != 0:
            failures += 1
            print(f"{CASES}:{lineno}: expected {expected} ({variant}), amtool says {run.stdout.strip()}"
                  f" {run.stderr.strip()}")
        covered[variant].update(deepest(tree["route"], dict(l.split("=", 1) for l in labels), ()))
    for path in all_paths(config["route"]):
        route = route_at(config, path)
        # A route with a child matching everything never ends there itself: its children do.
        if any(not c.get("matchers") for c in route.get("routes") or []):
            continue
        if path and path not in covered[CONFIG]:
            failures += 1
            print(f"{CASES}: no case ends in the route {route.get('matchers')} -> {route['receiver']}")
    # The switch's own route: the quorum config's routes that the default config does not have.
    default_routes = [route_at(config, p) for p in all_paths(config["route"]) if p]
    switch = [p for p in all_paths(quorum["route"]) if p and route_at(quorum, p) not in default_routes]
    if not switch:
        failures += 1
        print(f"{CONFIG}: uncommenting the `{SWITCH}` lines adds no route")
    for path in switch:
        if path not in covered[QUORUM_CONFIG]:
            failures += 1
            print(f"{CASES}: no quorum-only case ends in the switch's route {route_at(quorum, path).get('matchers')}")
    print(f"alertmanager routes: {cases} cases, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
