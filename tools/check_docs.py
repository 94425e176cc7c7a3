#!/usr/bin/env python3
"""Checks that what README.md, BENCHMARKS.md and docs/*.md name exists and is spelled as the
binary spells it, as a newcomer following them would find out:

- every relative link `[text](path#anchor)` leads to a file, and the anchor to a heading of it
  (GitHub's slugs);
- every repository path written in backticks (`probes/examples/redis-health.toml`,
  `deploy/grafana/*.json`, `tests/pages.rs`) exists (a glob matches at least one file);
- every `joincanary <command> --flag …` (also `cargo run -- <command> …`) names a command the
  binary has and flags that command's `--help` lists (aliases included), and every flag written
  alone in the joincanary spelling (`--web.*`, `--config*`, `--state.dir`, `--log.*`,
  `--probe.*`) is a flag of some command;
- every `bash X` / `python3 X` runs a file that exists, and every `cargo test NAME` matches a
  test that exists;
- every `JOINCANARY_*` environment variable is read somewhere (src/, or bench/ and tests/);
- every metric named in backticks (`probe_*`, `joincanary_*`) is one the code exports, and every
  metric the code exports is a row of README's Metrics table;
- README's table of reasons lists exactly the reasons `src/report.rs` gives a run, and its
  Endpoints table exactly the paths `src/server.rs` routes.

    python3 tools/check_docs.py [--binary target/debug/joincanary]   # exit 1 on a problem
    python3 tools/check_docs.py --self-test

Python 3 standard library only; reads the binary's `--help` (it never starts a service).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# Top-level directories whose paths the docs name as files of this repository.
REPO_DIRS = ("src", "tests", "probes", "config", "deploy", "docs", "bench", "tools", ".ci")
REPO_FILES = ("README.md", "BENCHMARKS.md", "Cargo.toml", "Cargo.lock", "Dockerfile")
# Paths the docs name that the code creates at run time, not files of the repository: the
# build's, and what `.ci/setup.d` installs (a test server's virtualenv or node_modules).
RUNTIME_PREFIXES = ("target/",)
RUNTIME_PARTS = re.compile(r"(^|/)(\.venv|node_modules)(/|$)")
# Flags of other programs the docs mention in joincanary-like spelling (Alertmanager's and
# Prometheus' own), so a bare flag of this shape is ours only when not listed here.
FOREIGN_FLAGS = {
    "--web.route-prefix",      # Alertmanager, Prometheus
    "--web.external-url",      # Alertmanager, Prometheus
    "--web.enable-remote-write-receiver",  # Prometheus
    "--config.file",           # also Prometheus/Alertmanager; ours too (alias of --config)
    "--cluster.peer",          # Alertmanager HA
    "--cluster.listen-address",
    "--storage.tsdb.path",
    "--storage.path",
}
OUR_FLAG = re.compile(r"^--(web|config|state|log|probe)[.\-][a-z0-9.\-]+$")

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
PATH = re.compile(r"^(?:\./)?((?:%s)/[A-Za-z0-9_.*/{},\-]*|%s)$" % (
    "|".join(re.escape(d) for d in REPO_DIRS), "|".join(re.escape(f) for f in REPO_FILES)))
ENV = re.compile(r"\bJOINCANARY_[A-Z0-9_]+\b")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9.\-]*)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: inline markup dropped, lower case, punctuation removed
    (but `-` and `_`), spaces to `-`."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    out: set[str] = set()
    seen: dict[str, int] = {}
    body = FENCE.sub("", text)
    for line in body.splitlines():
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        s = slug(m.group(2))
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    for m in re.finditer(r'<a\s+(?:name|id)="([^"]+)"', text):
        out.add(m.group(1))
    return out


def docs() -> list[str]:
    files = ["README.md", "BENCHMARKS.md"] + sorted(
        os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
    return [f for f in files if os.path.exists(os.path.join(ROOT, f))]


class Help:
    """Commands and flags as the binary's `--help` lists them."""

    def __init__(self, binary: str | None):
        self.commands: dict[str, set[str]] = {}
        if binary is None:
            return
        top = run_help([binary, "--help"])
        section = re.search(r"Commands:\n(.*?)\n\n", top, re.S)
        names = re.findall(r"^  ([a-z][a-z0-9-]*)\s", section.group(1), re.M) if section else []
        global_flags = flags_in(top)
        for name in names:
            if name == "help":
                continue
            self.commands[name] = flags_in(run_help([binary, name, "--help"])) | global_flags
        self.commands[""] = global_flags | {"--version", "--help", "-V", "-h"}

    def all_flags(self) -> set[str]:
        return set().union(*self.commands.values()) if self.commands else set()


def run_help(cmd: list[str]) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {out.returncode}: {out.stderr}")
    return out.stdout


def flags_in(help_text: str) -> set[str]:
    found = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9.\-]*)", help_text))
    for m in re.finditer(r"\[(?:aliases?|alias): ([^\]]+)\]", help_text):
        found |= {a.strip() for a in m.group(1).split(",")}
    return found


def code_texts(text: str) -> list[tuple[int, str]]:
    """(line, text) of every code span and every line of a fenced block."""
    out = []
    for m in FENCE.finditer(text):
        start = text.count("\n", 0, m.start(1)) + 1
        for i, line in enumerate(m.group(1).splitlines()):
            out.append((start + i, line))
    body = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    # Spans may break across a line in prose; join soft-wrapped lines for the search.
    for m in CODE_SPAN.finditer(body):
        out.append((body.count("\n", 0, m.start()) + 1, m.group(1)))
    return out


def commands_in(code: str) -> list[tuple[str, list[str]]]:
    """`joincanary <cmd> args…` and `cargo run [--release] -- <cmd> args…` in a line of code."""
    out = []
    code = re.sub(r"\s+#.*$", "", code)
    # At the start of the code or after a shell separator, past `VAR=value` assignments and a
    # path to the binary: `joincanary` in the middle of a sentence in code is not a command.
    for m in re.finditer(r"(?:^|[;&|(]\s*|\$\s+)(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:[\w./-]*/)?joincanary\s+([a-z][a-z0-9-]*)((?:\s+[^\s;&|)]+)*)", code.strip()):
        out.append((m.group(1), m.group(2).split()))
    for m in re.finditer(r"cargo run(?:\s+--release)?(?:\s+--no-default-features)?\s+--\s+([a-z][a-z0-9-]*)((?:\s+[^\s;&|)]+)*)", code):
        out.append((m.group(1), m.group(2).split()))
    return out


def test_names() -> set[str]:
    """Test functions, and the modules a filter may name (`on_call::`)."""
    names = {os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(ROOT, "tests", "*.rs"))}
    for path in glob.glob(os.path.join(ROOT, "tests", "**", "*.rs"), recursive=True) + glob.glob(
            os.path.join(ROOT, "src", "**", "*.rs"), recursive=True):
        names |= set(re.findall(r"\bfn\s+([a-z_][a-z0-9_]*)", open(path, encoding="utf-8").read()))
    return names


def check(help_: Help, files: list[str] | None = None) -> list[str]:
    problems: list[str] = []
    tests = test_names()
    # Variables the service reads (src/), and the ones the benchmarks and tests read.
    src_text = "\n".join(open(p, encoding="utf-8").read() for d in ("src", "bench", "tests", "deploy")
                         for p in glob.glob(os.path.join(ROOT, d, "**", "*.*"), recursive=True)
                         if os.path.isfile(p) and p.endswith((".rs", ".py", ".sh")))
    ours = help_.all_flags()
    for rel in files or docs():
        path = os.path.join(ROOT, rel)
        text = open(path, encoding="utf-8").read()
        here = os.path.dirname(path)

        def bad(line: int, msg: str) -> None:
            problems.append(f"{rel}:{line}: {msg}")

        prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
        for m in LINK.finditer(prose):
            target = m.group(1)
            line = prose.count("\n", 0, m.start()) + 1
            if re.match(r"^[a-z]+:", target):
                continue
            file_part, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(here, file_part)) if file_part else path
            if not os.path.exists(dest):
                bad(line, f"link to {target}: no file {os.path.relpath(dest, ROOT)}")
                continue
            if anchor and dest.endswith(".md") and anchor not in anchors(open(dest, encoding="utf-8").read()):
                bad(line, f"link to {target}: no heading with anchor #{anchor} in {os.path.relpath(dest, ROOT)}")

        for line, code in code_texts(text):
            for token in re.split(r"[\s,;()=\"']+", code):
                token = token.rstrip(".:")
                m = PATH.match(token)
                if not m or token.startswith(RUNTIME_PREFIXES) or RUNTIME_PARTS.search(token):
                    continue
                p = m.group(1).rstrip("/")
                if "{" in p or "…" in p:
                    continue
                if not glob.glob(os.path.join(ROOT, p)):
                    bad(line, f"`{token}`: no such file in the repository")
            if help_.commands:
                for cmd, args in commands_in(code):
                    if cmd not in help_.commands:
                        bad(line, f"`joincanary {cmd}`: no such command (commands: {', '.join(sorted(c for c in help_.commands if c))})")
                        continue
                    for a in args:
                        flag = a.split("=", 1)[0]
                        if FLAG.fullmatch(flag) and flag not in help_.commands[cmd]:
                            bad(line, f"`joincanary {cmd} {flag}`: `{cmd} --help` lists no such flag")
                for flag in FLAG.findall(code):
                    if OUR_FLAG.match(flag) and flag not in ours and flag not in FOREIGN_FLAGS:
                        bad(line, f"`{flag}`: no joincanary command has this flag")
            for m in re.finditer(r"\b(?:bash|sh|python3)\s+((?:\./)?[\w./-]+\.(?:sh|py))", code):
                if not os.path.exists(os.path.join(ROOT, m.group(1))):
                    bad(line, f"`{m.group(0)}`: no such script")
            for m in re.finditer(r"\bcargo test(?:\s+--(?:test|lib)(?:\s+tests)?)?\s+([a-z_][a-z0-9_:]*)", code):
                name = m.group(1).rstrip(":").split("::")[-1]
                if name and not any(name in t for t in tests):
                    bad(line, f"`{m.group(0)}`: no test function matches `{name}`")
        for m in ENV.finditer(text):
            if m.group(0) not in src_text:
                bad(text.count("\n", 0, m.start()) + 1, f"{m.group(0)}: read nowhere in src/, bench/, tests/ or deploy/")
    return problems


METRIC = re.compile(r"`((?:probe|joincanary)_[a-z_]+)`")
SRC_METRIC = re.compile(r'"((?:probe|joincanary)_[a-z_]+)"')
REASON_ROW = re.compile(r"^\| `([a-z_]+)` \|", re.M)


def exported_metrics() -> set[str]:
    """Metric names as the code registers them (string literals in src/)."""
    out: set[str] = set()
    for p in glob.glob(os.path.join(ROOT, "src", "**", "*.rs"), recursive=True):
        out |= set(SRC_METRIC.findall(open(p, encoding="utf-8").read()))
    return out


def reasons_in_code() -> set[str]:
    """The `FailureReason` labels: the arms of its `as_str`."""
    text = open(os.path.join(ROOT, "src", "report.rs"), encoding="utf-8").read()
    body = text[text.index("pub enum FailureReason"):]
    body = body[body.index("fn as_str"):]
    body = body[:body.index("\n    }\n")]
    return set(re.findall(r'=> "([a-z_]+)"', body))


def routes_in_code() -> set[str]:
    """The paths the listener serves: the `.route("…"` lines of `src/server.rs`."""
    return set(re.findall(r'\.route\("([^"]+)"', open(os.path.join(ROOT, "src", "server.rs"), encoding="utf-8").read()))


def check_endpoints(routes: set[str], readme: str) -> list[str]:
    """README's Endpoints table (`| path | |` rows) against the routes, both ways."""
    table = readme.split("Endpoints (one listener):", 1)[-1].lstrip("\n").split("\n\n", 1)[0]
    documented = {p for line in table.splitlines() if line.startswith("| `/")
                  for p in re.findall(r"`(/[^`]*)`", line.split("|")[1])}
    return ([f"README.md: endpoint `{p}` is served (src/server.rs) but not in the Endpoints table" for p in sorted(routes - documented)]
            + [f"README.md: endpoint `{p}` in the Endpoints table is not served by src/server.rs" for p in sorted(documented - routes)])


def check_tables(metrics: set[str], reasons: set[str], readme: str, files: dict[str, str]) -> list[str]:
    """Metric names in every page against the code; README's Metrics and reason tables against
    the code, both ways."""
    problems = []
    tests = test_names()
    for rel, text in files.items():
        for m in METRIC.finditer(text):
            name = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
            if name not in metrics and m.group(1) not in tests:
                problems.append(f"{rel}:{text.count(chr(10), 0, m.start()) + 1}: `{m.group(1)}`: no metric of that name in src/")
    section = readme.split("### Metrics", 1)[-1].split("\n## ", 1)[0]
    rows = {n for line in section.splitlines() if line.startswith("| `")
            for n in re.findall(r"`([a-z_]+)`", line.split("|")[1])}
    for name in sorted(metrics - rows):
        problems.append(f"README.md: metric `{name}` is exported but has no row in the Metrics table")
    table = readme.split("| reason | meaning |", 1)[-1].split("\n\n", 1)[0]
    documented = set(REASON_ROW.findall(table))
    for r in sorted(reasons - documented):
        problems.append(f"README.md: reason `{r}` (src/report.rs) has no row in the reasons table")
    for r in sorted(documented - reasons):
        problems.append(f"README.md: reason `{r}` in the reasons table is not one src/report.rs gives")
    return problems


def self_test() -> None:
    assert slug("Heartbeats: the dead man's switch") == "heartbeats-the-dead-mans-switch"
    assert slug("Hostile replies and memory — `bench/hostile-memory.sh`") == "hostile-replies-and-memory--benchhostile-memorysh"
    assert slug("Service config (`config/joincanary.toml`)") == "service-config-configjoincanarytoml"
    assert anchors("# A\n## A\n```\n# not\n```\n") == {"a", "a-1"}
    assert commands_in("joincanary once --probe x --format json") == [("once", ["--probe", "x", "--format", "json"])]
    assert commands_in("cargo run --release -- demo     # a comment --nope") == [("demo", [])]
    assert commands_in("JOINCANARY_BIN=target/release/joincanary python3 bench/media.py") == []
    assert commands_in("[TEST] joincanary test page from <region>") == []
    assert commands_in("X=1 target/debug/joincanary check --config c.toml && joincanary once")[1][0] == "once"
    assert flags_in("--config <P>  x [alias: --config.file]") == {"--config", "--config.file"}
    # A page with one of each mistake is reported line by line; its good half is not.
    h = Help(None)
    h.commands = {"once": {"--probe", "--format", "--config"}, "": {"--help"}}
    os.makedirs(os.path.join(ROOT, "target"), exist_ok=True)
    fake = os.path.join(ROOT, "target", "check-docs-self-test.md")
    with open(fake, "w", encoding="utf-8") as f:
        f.write("# Top\n[ok](#top) [bad](#nowhere) [gone](../docs/nope.md) [ok](../README.md#known-limits)\n"
                "`joincanary once --probe x --formt json` `joincanary nope` `--web.listen-adress`\n"
                "`probes/examples/none.toml` `probes/sim-join.toml` `bash bench/none.sh`\n"
                "`tests/servers/aiortc/.venv` `tests/servers/node_modules/x`\n"
                "`cargo test no_such_test_anywhere` `JOINCANARY_NOT_A_VARIABLE`\n")
    try:
        got = check(h, [os.path.relpath(fake, ROOT)])
    finally:
        os.remove(fake)
    want = ["#nowhere", "docs/nope.md", "--formt", "joincanary nope", "--web.listen-adress",
            "none.toml", "bench/none.sh", "bash bench/none.sh", "no_such_test_anywhere", "JOINCANARY_NOT_A_VARIABLE"]
    assert len(got) == len(want), got
    for w, g in zip(want, got):
        assert w in g, (w, g)
    readme = ("| reason | meaning |\n|---|---|\n| `dns` | x |\n| `gone` | y |\n\n"
              "### Metrics\n\n| metric | type |\n|---|---|\n| `probe_success` | g |\n"
              "| `probe_a`, `probe_b` | g |\n\n## Next\n")
    got = check_tables({"probe_success", "probe_a", "probe_b", "probe_new"}, {"dns", "connect"}, readme,
                       {"x.md": "`probe_success_count` `probe_sucess` `probe_success_and_the_open_incident_survive_a_restart`"})
    want = ["`probe_sucess`", "`probe_new` is exported", "reason `connect`", "reason `gone`"]
    assert len(got) == len(want), got
    for w, g in zip(want, got):
        assert w in g, (w, g)
    assert {"dns", "no_match", "media"} <= reasons_in_code(), reasons_in_code()
    table = "Endpoints (one listener):\n\n| path | |\n|---|---|\n| `/metrics` | x |\n| `/healthz`, `/gone` | y |\n\nNext"
    got = check_endpoints({"/metrics", "/healthz", "/new"}, table)
    assert len(got) == 2 and "`/new` is served" in got[0] and "`/gone` in the Endpoints" in got[1], got
    assert {"/metrics", "/api/v1/status", "/"} <= routes_in_code(), routes_in_code()
    assert "probe_success" in exported_metrics()
    print("self-test: ok")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/debug/joincanary"))
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    if args.self_test:
        self_test()
        return 0
    if not os.path.exists(args.binary):
        print(f"{args.binary} missing: cargo build --bin joincanary", file=sys.stderr)
        return 2
    problems = check(Help(args.binary))
    problems += check_tables(exported_metrics(), reasons_in_code(),
                             open(os.path.join(ROOT, "README.md"), encoding="utf-8").read(),
                             {rel: open(os.path.join(ROOT, rel), encoding="utf-8").read() for rel in docs()})
    problems += check_endpoints(routes_in_code(), open(os.path.join(ROOT, "README.md"), encoding="utf-8").read())
    for p in problems:
        print(p)
    print(f"docs: {len(docs())} files checked, {len(problems)} problems", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
