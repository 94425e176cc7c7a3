#!/usr/bin/env python3
"""Draw the import graph of src/ (files as nodes, arrows from `use` lines and paths in code) and
report every import circle between files, every circle between top-level modules (`alert`,
`metrics`, ...: a file counted as its top module), and every Rust file over 800 lines, in src/
(test-only files too) and tests/ (the integration tests and their support).

    python3 tools/imports.py               # circles and long files; exit 1 if there is a circle
    python3 tools/imports.py --arrows      # every arrow too
    python3 tools/imports.py --report      # print the same, always exit 0 (CI until circles are gone)
    python3 tools/imports.py --max-lines N # also exit 1 when a file is over N lines (KEPT_WHOLE aside)
    python3 tools/imports.py --self-test   # check the reader on small synthetic trees

What counts (read as text, no compiler needed; Python 3 standard library only):
- Nodes are the files under src/ the build compiles outside tests: files declared by
  `#[cfg(test)] mod x;` and items under `#[cfg(test)]` (`mod tests { }`, helpers) are left out.
- An arrow A -> B means A names something whose path lands in B: `use crate::a::b::{c, d::e}`
  (groups, `self`, `as`, globs), `use super::…`, `use self::…`, a child's name (`pub use child::X`
  in a parent is an arrow parent -> child: a re-export), `joincanary::…` from main.rs, and the
  same paths written inline in code (`crate::a::f(…)`, `super::x::Y`, `alias::f` after
  `use crate::a::alias`). A path lands in the deepest module that is a file; the rest are items of
  that file (re-exports are not followed further: a module's face is part of the module, so
  naming `ws::Connection` depends on `ws`). `mod x;` is containment, not an arrow. A `use` that
  names only a module (`use crate::alert;`) is no arrow by itself: the paths through it are.
- Comments and string literals are skipped, so doc links and examples draw no arrows.
- A circle is a set of files each reachable from the others (a strongly connected component of
  more than one file). A child's arrows up to a module that contains it (`super::Shared` in
  `a/b.rs` -> `a/mod.rs`) are drawn but close no circle: the child lives inside that module
  (`--strict` counts them). `--reexports skip|follow` reads re-exports the other two ways.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import defaultdict

LONG_FILE = 800
# Files over LONG_FILE lines kept whole on purpose, under src/ or tests/: path -> why it is one
# idea that reads best whole (README, Layout). `--max-lines` (CI: .ci/checks.d/imports.sh) fails
# on any other. Empty today; a split along the file's own ideas is the first answer, an entry
# here the last.
KEPT_WHOLE: dict[str, str] = {}
CRATE_NAME = "joincanary"

# ---------------------------------------------------------------------------------------------
# Tokens


class Tok:
    __slots__ = ("text", "line")

    def __init__(self, text: str, line: int):
        self.text = text
        self.line = line

    def __repr__(self) -> str:  # for the self test's messages
        return f"{self.text}@{self.line}"


def _is_ident_start(c: str) -> bool:
    return c.isalpha() or c == "_"


def _is_ident(c: str) -> bool:
    return c.isalnum() or c == "_"


def tokenize(src: str) -> list[Tok]:
    """Identifiers, `::` and single punctuation characters; comments, strings, chars, lifetimes
    and numbers dropped."""
    toks: list[Tok] = []
    i, n, line = 0, len(src), 1

    def skip_quoted(j: int) -> int:
        # j is just past the opening quote of a "..." string; returns the index past the closing one
        nonlocal line
        while j < n:
            c = src[j]
            if c == "\\":
                if j + 1 < n and src[j + 1] == "\n":
                    line += 1
                j += 2
                continue
            if c == "\n":
                line += 1
            if c == '"':
                return j + 1
            j += 1
        return j

    def skip_raw(j: int) -> int:
        # j at the first '#' or '"' after the r of a raw string
        nonlocal line
        hashes = 0
        while j < n and src[j] == "#":
            hashes += 1
            j += 1
        j += 1  # the opening quote
        close = '"' + "#" * hashes
        end = src.find(close, j)
        end = n if end < 0 else end + len(close)
        line += src.count("\n", j, end)
        return end

    while i < n:
        c = src[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    if src[j] == "\n":
                        line += 1
                    j += 1
            i = j
        elif c == '"':
            i = skip_quoted(i + 1)
        elif c == "'":
            # a char literal ('a', '\n', '\u{1F600}', '\'') or a lifetime ('a, 'static)
            if i + 1 < n and src[i + 1] == "\\":
                j = i + 2
                while j < n and src[j] != "'":
                    j += 2 if src[j] == "\\" else 1
                i = j + 1
            elif i + 2 < n and src[i + 2] == "'":
                i += 3
            else:
                j = i + 1
                while j < n and _is_ident(src[j]):
                    j += 1
                i = j
        elif _is_ident_start(c):
            j = i
            while j < n and _is_ident(src[j]):
                j += 1
            word = src[i:j]
            nxt = src[j] if j < n else ""
            if word in ("r", "br", "cr") and nxt in ('"', "#") and (
                nxt == '"' or src[j:].lstrip("#").startswith('"')
            ):
                i = skip_raw(j)
            elif word in ("b", "c") and nxt == '"':
                i = skip_quoted(j + 1)
            elif word == "b" and nxt == "'":
                k = j + 1
                if k < n and src[k] == "\\":
                    k += 2
                while k < n and src[k] != "'":
                    k += 1
                i = k + 1
            elif word == "r" and nxt == "#" and j + 1 < n and _is_ident_start(src[j + 1]):
                k = j + 1  # a raw identifier r#type
                while k < n and _is_ident(src[k]):
                    k += 1
                toks.append(Tok(src[j + 1 : k], line))
                i = k
            else:
                toks.append(Tok(word, line))
                i = j
        elif c.isdigit():
            j = i
            while j < n and (_is_ident(src[j]) or (src[j] == "." and j + 1 < n and src[j + 1].isdigit())):
                j += 1
            i = j
        elif src.startswith("::", i):
            toks.append(Tok("::", line))
            i += 2
        else:
            toks.append(Tok(c, line))
            i += 1
    return toks


# ---------------------------------------------------------------------------------------------
# Files and modules

OPEN = {"(": ")", "[": "]", "{": "}"}
CLOSE = {")", "]", "}"}


def matching(toks: list[Tok], i: int) -> int:
    """Index of the bracket closing the one opened at toks[i]."""
    depth = 0
    for j in range(i, len(toks)):
        t = toks[j].text
        if t in OPEN:
            depth += 1
        elif t in CLOSE:
            depth -= 1
            if depth == 0:
                return j
    return len(toks) - 1


def is_cfg_test(attr: list[Tok]) -> bool:
    """`#[cfg(test)]` exactly (`cfg(any(test, …))` keeps the item: it is built outside tests)."""
    return [t.text for t in attr] == ["cfg", "(", "test", ")"]


def item_end(toks: list[Tok], i: int) -> int:
    """Index past the item (or field, arm, statement) starting at toks[i]."""
    j = i
    while j < len(toks) and toks[j].text == "#":  # further attributes
        k = j + 1
        if k < len(toks) and toks[k].text == "!":
            k += 1
        j = matching(toks, k) + 1
    is_use = j < len(toks) and toks[j].text in ("use",) or (
        j + 1 < len(toks) and toks[j].text == "pub" and toks[j + 1].text == "use"
    )
    while j < len(toks):
        t = toks[j].text
        if t == ";" or (t == "," and not is_use):
            return j + 1
        if t in CLOSE:  # the end of the enclosing block: the item ended before it
            return j
        if t == "{" and not is_use:
            return matching(toks, j) + 1
        if t in OPEN:
            j = matching(toks, j) + 1
            continue
        j += 1
    return j


class Source:
    """One file: its tokens with test-only items removed, and what it declares."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.lines = count_lines(text)
        toks = tokenize(text)
        self.test_children: set[str] = set()  # `#[cfg(test)] mod x;`
        self.test_lines = 0
        kept: list[Tok] = []
        i = 0
        while i < len(toks):
            t = toks[i]
            if t.text == "#" and i + 1 < len(toks) and toks[i + 1].text in ("[", "!"):
                k = i + 1 if toks[i + 1].text == "[" else i + 2
                close = matching(toks, k)
                if is_cfg_test(toks[k + 1 : close]):
                    end = item_end(toks, close + 1)
                    item = toks[close + 1 : end]
                    words = [x.text for x in item]
                    if "mod" in words and words[-1] == ";":
                        m = words.index("mod")
                        if m + 1 < len(words):
                            self.test_children.add(words[m + 1])
                    last = toks[end - 1].line if end > i else t.line
                    self.test_lines += last - t.line + 1
                    i = end
                    continue
                kept.extend(toks[i : close + 1])
                i = close + 1
                continue
            kept.append(t)
            i += 1
        self.toks = kept


def file_module(rel: str) -> tuple[str, ...]:
    """src/lib.rs -> (), src/a.rs and src/a/mod.rs -> ('a',), src/a/b.rs -> ('a', 'b')."""
    parts = rel.split("/")[1:]  # drop "src"
    stem = parts[-1][:-3]
    parts = parts[:-1] + ([] if stem in ("mod", "lib", "main") else [stem])
    return tuple(parts)


def rust_files(root: str, top: str):
    """(path from root, text) of every `.rs` file under root/top, in a stable order."""
    for d, dirs, files in os.walk(os.path.join(root, top)):
        dirs.sort()
        for f in sorted(files):
            if f.endswith(".rs"):
                full = os.path.join(d, f)
                with open(full, encoding="utf-8", errors="replace") as fh:
                    yield os.path.relpath(full, root).replace(os.sep, "/"), fh.read()


def count_lines(text: str) -> int:
    return text.count("\n") + (0 if text.endswith("\n") or not text else 1)


class Tree:
    """The modules of one crate checkout: lib (src/lib.rs) and bin (src/main.rs) roots."""

    def __init__(self, root: str):
        self.root = root
        texts = dict(rust_files(root, "src"))
        self.sources = {p: Source(p, t) for p, t in texts.items()}
        # modules: (crate, path) -> file. A file's crate is bin only for main.rs and what main.rs
        # declares that lib.rs does not.
        main = self.sources.get("src/main.rs")
        lib = self.sources.get("src/lib.rs")
        bin_mods = declared(main) - (declared(lib) if lib else set()) if main else set()
        self.modules: dict[tuple[str, tuple[str, ...]], str] = {}
        self.crate_of: dict[str, str] = {}
        for p in sorted(self.sources):
            m = file_module(p)
            if p == "src/main.rs" or (m and m[0] in bin_mods):
                crate = "bin"
            else:
                crate = "lib"
            self.crate_of[p] = crate
            self.modules[(crate, m)] = p
        # test-only files: declared by `#[cfg(test)] mod x;`, and everything under them
        test_mods = set()
        for p, s in self.sources.items():
            for child in s.test_children:
                test_mods.add((self.crate_of[p], file_module(p) + (child,)))
        self.test_files = {
            f for (c, m), f in self.modules.items()
            if any(c == tc and m[: len(tm)] == tm for tc, tm in test_mods)
        }
        for (c, m), f in list(self.modules.items()):
            if f in self.test_files:
                del self.modules[(c, m)]
        self.files = sorted(f for f in self.sources if f not in self.test_files)
        # inline `mod x { }` (outside tests) are modules too, living in their file
        self.scans = {f: scan(self.sources[f].toks) for f in self.files}
        for f, sc in self.scans.items():
            base = file_module(f)
            for inner in sc.inline_mods:
                self.modules.setdefault((self.crate_of[f], base + inner), f)


def declared(s: Source | None) -> set[str]:
    """Names of `mod x;` declared at the top of a file."""
    out = set()
    if s is None:
        return out
    t = [x.text for x in s.toks]
    for i in range(len(t) - 2):
        if t[i] == "mod" and t[i + 2] == ";":
            out.add(t[i + 1])
    return out


# ---------------------------------------------------------------------------------------------
# Paths in one file


DEFINERS = {"fn", "struct", "enum", "trait", "type", "const", "static", "union", "macro_rules"}


class Scan:
    def __init__(self):
        self.inline_mods: list[tuple[str, ...]] = []
        # (inner module path, segments, line, local name or None, is glob, is pub)
        self.uses: list[tuple[tuple[str, ...], list[str], int, str | None, bool, bool]] = []
        # (inner module path, segments, line)
        self.paths: list[tuple[tuple[str, ...], list[str], int]] = []
        self.defs: set[str] = set()  # names this file defines (fn, struct, … at any depth)
        self.code_idents: set[str] = set()  # identifiers outside `use` items


def parse_use_tree(toks: list[Tok], i: int, prefix: list[str], out: list) -> int:
    """Parses one use tree at toks[i]; appends (segments, alias_or_None, is_glob). Returns the index
    past it."""
    segs = list(prefix)
    while i < len(toks):
        t = toks[i].text
        if t == "::":
            i += 1
            continue
        if t == "{":
            close = matching(toks, i)
            j = i + 1
            while j < close:
                j = parse_use_tree(toks, j, segs, out)
                if j < close and toks[j].text == ",":
                    j += 1
            return close + 1
        if t == "*":
            out.append((segs, None, True))
            return i + 1
        if t == "$" and i + 1 < len(toks):
            segs.append("$" + toks[i + 1].text)
            i += 2
            continue
        if _is_ident_start(t[0]):
            if t == "self" and segs:  # `a::{self, b}`: the module a itself
                alias = None
                i += 1
                if i + 1 < len(toks) and toks[i].text == "as":
                    alias = toks[i + 1].text
                    i += 2
                out.append((segs, alias or segs[-1], False))
                return i
            segs.append(t)
            i += 1
            if i < len(toks) and toks[i].text == "as":
                out.append((segs, toks[i + 1].text if i + 1 < len(toks) else None, False))
                return i + 2
            if i < len(toks) and toks[i].text == "::":
                continue
            out.append((segs, segs[-1], False))
            return i
        return i + 1  # something unexpected: move on
    return i


def scan(toks: list[Tok]) -> Scan:
    sc = Scan()
    stack: list[tuple[str, int]] = []  # inline modules: (name, brace depth at their `{`)
    depth = 0
    i = 0
    n = len(toks)
    while i < n:
        t = toks[i].text
        inner = tuple(name for name, _ in stack)
        if t == "{":
            depth += 1
        elif t == "}":
            depth -= 1
            if stack and stack[-1][1] == depth + 1:
                stack.pop()
        elif t == "mod" and i + 2 < n and toks[i + 2].text == "{":
            stack.append((toks[i + 1].text, depth + 1))
            sc.inline_mods.append(inner + (toks[i + 1].text,))
            depth += 1
            i += 3
            continue
        elif t == "use" and i + 1 < n and toks[i + 1].text not in ("<", "!", ";", "("):
            line = toks[i].line
            # `pub use`, `pub(crate) use`, `pub(super) use`: a re-export
            is_pub = i > 0 and (
                toks[i - 1].text == "pub"
                or (toks[i - 1].text == ")" and any(x.text == "pub" for x in toks[max(0, i - 6) : i - 1]))
            )
            trees: list = []
            j = i + 1
            if toks[j].text == "::":  # `use ::std::…`: an outside crate
                j = item_end(toks, j)
                i = j
                continue
            j = parse_use_tree(toks, j, [], trees)
            for segs, alias, glob in trees:
                sc.uses.append((inner, segs, line, alias, glob, is_pub))
            while j < n and toks[j].text != ";":
                j += 1
            i = j + 1
            continue
        elif (t == "$" and i + 2 < n and toks[i + 1].text == "crate" and toks[i + 2].text == "::") or (
            _is_ident_start(t[0])
            and i + 2 < n
            and toks[i + 1].text == "::"
            and _is_ident_start(toks[i + 2].text[0])
            and (i == 0 or toks[i - 1].text not in ("::", ".", "$"))
        ):
            line = toks[i].line
            segs = []
            j = i
            if t == "$":
                segs.append("$crate")
                j = i + 2
            else:
                segs.append(t)
                j = i + 1
            while j + 1 < n and toks[j].text == "::" and _is_ident_start(toks[j + 1].text[0]):
                segs.append(toks[j + 1].text)
                j += 2
            sc.paths.append((inner, segs, line))
            sc.code_idents.update(segs)
            i = j
            continue
        elif t in DEFINERS and i + 1 < n:
            k = i + 2 if toks[i + 1].text == "!" else i + 1
            if k < n and _is_ident_start(toks[k].text[0]):
                sc.defs.add(toks[k].text)
        if _is_ident_start(t[0]):
            sc.code_idents.add(t)
        i += 1
    return sc


# ---------------------------------------------------------------------------------------------
# The graph


REEXPORTS = ("count", "skip", "follow")


def circles_of(nodes, successors) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative), each sorted,
    largest first; `successors(v)` gives the nodes v has arrows to."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(successors(root)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(successors(w))))
                    advanced = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    out.sort(key=lambda c: (-len(c), c))
    return out


class Graph:
    def __init__(self, tree: Tree, reexports: str = "count"):
        """reexports: how `pub use child::X` (X unused in the file's own code) is read.
        count: an arrow like any use (a module's face is part of the module: naming a name through
        it depends on the module). skip: drawn, but closes no circle. follow: drawn, closes no
        circle, and paths naming X land where X is defined."""
        self.tree = tree
        self.reexports = reexports
        # arrows[a][b] = names a takes from b, in order of first appearance
        self.arrows: dict[str, dict[str, list[str]]] = defaultdict(dict)
        # arrows that a's code uses; the others only re-export (`pub use child::X` with X unused in
        # a): drawn, and with --reexports skip|follow they close no circle
        self.in_code: set[tuple[str, str]] = set()
        # what each file brings in by `use`: local name -> (file, name there), None outside the crate
        self.imports: dict[str, dict[str, tuple[str, str] | None]] = {}
        self.globs: dict[str, list[str]] = {}
        self.aliases: dict[str, dict[str, tuple]] = {}
        resolved = {f: self._uses(f) for f in tree.files}
        for f in tree.files:
            self._arrows(f, resolved[f])

    def _add(self, a: str, b: str, name: str, in_code: bool):
        if a == b:
            return
        names = self.arrows[a].setdefault(b, [])
        if name not in names:
            names.append(name)
        if in_code:
            self.in_code.add((a, b))

    def _start(self, f: str, here: tuple[str, ...], segs: list[str], aliases: dict):
        """The module a path starts from and the segments left, or None for outside the crate."""
        crate = self.tree.crate_of[f]
        head = segs[0]
        if head == "crate":
            return (crate, ()), segs[1:]
        if head == "$crate" or head == CRATE_NAME:
            return ("lib", ()), segs[1:]
        if head == "self":
            return (crate, here), segs[1:]
        if head == "super":
            m, k = here, 0
            while k < len(segs) and segs[k] == "super":
                m, k = m[:-1], k + 1
            return (crate, m), segs[k:]
        if head in aliases:
            return aliases[head], segs[1:]
        if (crate, here + (head,)) in self.tree.modules:
            return (crate, here), segs
        return None

    def _walk(self, start, rest: list[str]):
        """Deepest module along the path; returns (module, first item name or None)."""
        crate, m = start
        k = 0
        while k < len(rest) and (crate, m + (rest[k],)) in self.tree.modules:
            m = m + (rest[k],)
            k += 1
        return (crate, m), (rest[k] if k < len(rest) else None)

    def _file_of(self, mod) -> str | None:
        crate, m = mod
        while True:
            f = self.tree.modules.get((crate, m))
            if f is not None:
                return f
            if not m:
                return None
            m = m[:-1]

    def _uses(self, f: str) -> list:
        """Resolves f's `use` items: [(file, item or None, glob, local name, is pub)]."""
        sc = self.tree.scans[f]
        base = file_module(f)
        aliases: dict[str, tuple] = {}  # names bound to modules (per file; nested scopes are rare)
        imports: dict[str, tuple[str, str] | None] = {}
        globs: list[str] = []
        out = []
        pending = list(sc.uses)
        # uses may build on each other (`use crate::a; use a::b::C;`): resolve until nothing moves
        while pending:
            left = []
            for u in pending:
                inner, segs, line, alias, glob, is_pub = u
                start = self._start(f, base + inner, segs, aliases)
                if start is None:
                    left.append(u)
                    continue
                mod, item = self._walk(*start)
                target = self._file_of(mod)
                if target is None:
                    continue
                out.append((target, item, glob, alias, is_pub))
                if glob and item is None:
                    globs.append(target)
                    # `use a::*` brings a's child modules into scope too
                    crate, m = mod
                    for c, cm in self.tree.modules:
                        if c == crate and len(cm) == len(m) + 1 and cm[: len(m)] == m:
                            aliases.setdefault(cm[-1], (c, cm))
                elif item is None and alias and alias != "_":
                    aliases.setdefault(alias, mod)
                elif item is not None and alias and alias != "_":
                    imports.setdefault(alias, (target, item))
            if len(left) == len(pending):
                for u in left:  # outside the crate (std, other crates)
                    if u[3] and not u[4]:
                        imports.setdefault(u[3], None)
                break
            pending = left
        self.aliases[f] = aliases
        self.imports[f] = imports
        self.globs[f] = globs
        return out

    def land(self, f: str, item: str, depth: int = 0) -> tuple[str, str] | None:
        """Where a name found in f is defined: re-exports and imports are followed (a child's
        `super::Name` may name what its parent only imported); None when it comes from outside."""
        if self.reexports != "follow" or depth > 16 or item in self.tree.scans[f].defs:
            return f, item
        imports = self.imports.get(f, {})
        if item in imports:
            nxt = imports[item]
            return None if nxt is None else self.land(nxt[0], nxt[1], depth + 1)
        for g in self.globs.get(f, []):
            if item in self.tree.scans[g].defs or item in self.imports.get(g, {}):
                return self.land(g, item, depth + 1)
        return f, item

    def _arrows(self, f: str, uses: list):
        sc = self.tree.scans[f]
        base = file_module(f)
        for target, item, glob, alias, is_pub in uses:
            used = not is_pub or (alias is not None and alias in sc.code_idents)
            if glob and item is None:
                self._add(f, target, "*", not is_pub)
            elif item is not None:
                landed = self.land(target, item)
                if landed is not None:
                    self._add(f, landed[0], landed[1], used)
        for inner, segs, line in sc.paths:
            start = self._start(f, base + inner, segs, self.aliases[f])
            if start is None:
                continue
            mod, item = self._walk(*start)
            target = self._file_of(mod)
            if target is not None and item is not None:
                landed = self.land(target, item)
                if landed is not None:
                    self._add(f, landed[0], landed[1], True)

    def edge_count(self) -> int:
        return sum(len(v) for v in self.arrows.values())

    def is_up(self, a: str, b: str) -> bool:
        """b is the file of a module that encloses a's (a child naming its parent's items)."""
        ca, cb = self.tree.crate_of[a], self.tree.crate_of[b]
        ma, mb = file_module(a), file_module(b)
        return ca == cb and len(mb) < len(ma) and ma[: len(mb)] == mb

    def counted(self, a: str, strict: bool) -> list[str]:
        """The arrows out of a that can close a circle."""
        return sorted(
            b for b in self.arrows.get(a, {})
            if (self.reexports == "count" or (a, b) in self.in_code)
            and (strict or not self.is_up(a, b))
        )

    def how(self, a: str, b: str, strict: bool) -> str:
        """What kind of arrow a -> b is, for the listing."""
        out = ""
        if (a, b) not in self.in_code:
            out += " (re-export)" if self.reexports == "count" else " (re-export only: closes no circle)"
        if self.is_up(a, b):
            out += " (up)" if strict else " (up: closes no circle)"
        return out

    def circles(self, strict: bool = False) -> list[list[str]]:
        """Circles of files: strongly connected components with more than one file."""
        return circles_of(self.tree.files, lambda v: self.counted(v, strict))


def module_circles(g: "Graph") -> list[tuple[list[str], list[str]]]:
    """Circles between top-level modules (`alert`, `metrics`, `flow`, ...): every file counted
    as its top module, every arrow between two of them (re-exports and arrows up included, since
    across top modules nothing is "up"). A circle of files is one of these too, but not the other
    way: `metrics/mod.rs -> alert/health.rs` and `alert/dispatch/mod.rs -> metrics/mod.rs` tie
    two modules without a circle of files. Returns each circle with the arrows that tie it."""
    def top(f: str) -> str | None:
        m = file_module(f)
        if not m:
            return None  # a crate root: it declares every module, it is above them all
        crate = g.tree.crate_of[f]
        return m[0] if crate == "lib" else f"{crate}::{m[0]}"
    edges: dict[str, dict[str, list[str]]] = {}
    for a, bs in g.arrows.items():
        ta = top(a)
        for b, names in bs.items():
            tb = top(b)
            if ta is None or tb is None or ta == tb:
                continue
            edges.setdefault(ta, {}).setdefault(tb, []).append(
                f"{a} -> {b}: {', '.join(sorted(names))}")
    nodes = sorted(set(edges) | {t for bs in edges.values() for t in bs})
    out = []
    for comp in circles_of(nodes, lambda v: sorted(edges.get(v, {}))):
        inside = set(comp)
        ties = [t for a in comp for b in sorted(edges.get(a, {})) if b in inside for t in edges[a][b]]
        out.append((comp, ties))
    return out


# ---------------------------------------------------------------------------------------------
# Long files


def file_lines(root: str) -> dict[str, int]:
    """Lines of every `.rs` file under src/ (test-only files too) and tests/, by path from root,
    counted as `Source` counts them."""
    return {p: count_lines(t) for top in ("src", "tests") for p, t in rust_files(root, top)}


def over_lines(sizes: dict[str, int], max_lines: int, kept: dict[str, str]) -> list[str]:
    """The files over `max_lines` that `kept` does not list with a reason."""
    return sorted(p for p, n in sizes.items() if n > max_lines and p not in kept)


# ---------------------------------------------------------------------------------------------
# Output


def report(args) -> int:
    root, show_arrows, max_lines = os.path.normpath(args.root), args.arrows, args.max_lines
    report_only, strict = args.report, args.strict
    if not os.path.isdir(os.path.join(root, "src")):
        print(f"{root}: no src/ folder to read (--root names the checkout)", file=sys.stderr)
        return 2
    tree = Tree(root)
    g = Graph(tree, args.reexports)
    circles = g.circles(strict)
    print(
        f"{len(tree.files)} files, {g.edge_count()} arrows (src/, tests left out; "
        f"{len(tree.test_files)} test-only files)"
    )
    if show_arrows:
        print("arrows (file -> file: the names the first takes from the second):")
        for a in sorted(g.arrows):
            for b in sorted(g.arrows[a]):
                print(f"  {a} -> {b}: {', '.join(sorted(g.arrows[a][b]))}{g.how(a, b, strict)}")
    print(f"import circles between files: {len(circles)}")
    for k, comp in enumerate(circles, 1):
        print(f"circle {k}: {len(comp)} files: {', '.join(comp)}")
        inside = set(comp)
        for a in comp:
            for b in g.counted(a, strict):
                if b in inside:
                    print(f"  {a} -> {b}: {', '.join(sorted(g.arrows[a][b]))}{g.how(a, b, strict)}")
    modules = module_circles(g)
    print(f"import circles between top-level modules: {len(modules)}")
    for k, (comp, ties) in enumerate(modules, 1):
        print(f"module circle {k}: {', '.join(comp)}")
        for t in ties:
            print(f"  {t}")
    sizes = file_lines(root)
    long = sorted(((n, p) for p, n in sizes.items() if n > LONG_FILE), reverse=True)
    print(f"Rust files over {LONG_FILE} lines (src/ and tests/): {len(long)}")
    for lines, p in long:
        s = tree.sources.get(p)
        inside = f" ({lines - s.test_lines} outside #[cfg(test)])" if p in tree.files else ""
        why = f": kept whole: {KEPT_WHOLE[p]}" if p in KEPT_WHOLE else ""
        print(f"  {p}: {lines} lines{inside}{why}")
    failed = []
    if circles:
        failed.append(f"{len(circles)} import circle(s)")
    if modules:
        failed.append(f"{len(modules)} import circle(s) between top-level modules")
    if max_lines is not None:
        over = over_lines(sizes, max_lines, KEPT_WHOLE)
        if over:
            failed.append(
                f"{len(over)} file(s) over {max_lines} lines: {', '.join(over)} (split along "
                "their ideas, or list one in tools/imports.py's KEPT_WHOLE with why)"
            )
    if failed and report_only:
        print(f"note: report only (--report), not failing on: {'; '.join(failed)}")
        return 0
    if failed:
        print(f"FAIL: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------------------------
# Self test


def _tree(files: dict[str, str], reexports: str = "count") -> Graph:
    with tempfile.TemporaryDirectory(prefix="imports-selftest-") as d:
        for rel, text in files.items():
            p = os.path.join(d, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w", encoding="utf-8") as fh:
                fh.write(text)
        return Graph(Tree(d), reexports)


def _arrows(g: Graph) -> dict[tuple[str, str], list[str]]:
    return {(a, b): sorted(names) for a, bs in g.arrows.items() for b, names in bs.items()}


def self_test() -> int:
    cases = []

    # siblings in a circle through `use super::`; their parent's re-export and a child's arrow up
    # to its parent are drawn, but a child inside its parent closes no circle (unless --strict)
    siblings = {
        "src/lib.rs": "//! root\npub mod a;\n",
        "src/a/mod.rs": "//! a\nmod b;\nmod c;\npub use b::Thing;\npub struct Shared;\n",
        "src/a/b.rs": "//! b\nuse super::c::Cee;\nuse super::Shared;\npub struct Thing(Cee, Shared);\n"
                      "pub fn h() {}\n",
        "src/a/c.rs": "//! c\npub struct Cee;\npub fn f() { super::b::h() }\n",
    }
    g = _tree(siblings)
    cases.append(("circle via super::, re-export and up arrow drawn", _arrows(g), {
        ("src/a/mod.rs", "src/a/b.rs"): ["Thing"],
        ("src/a/b.rs", "src/a/c.rs"): ["Cee"],
        ("src/a/b.rs", "src/a/mod.rs"): ["Shared"],
        ("src/a/c.rs", "src/a/b.rs"): ["h"],
    }))
    cases.append(("only the siblings' circle", g.circles(), [["src/a/b.rs", "src/a/c.rs"]]))
    cases.append(("--strict: the parent joins it", g.circles(strict=True),
                  [["src/a/b.rs", "src/a/c.rs", "src/a/mod.rs"]]))

    # a circle that runs through a module's face: x names a::Shared, a re-exports b's thing, b
    # calls x. Counted by default; skipped or followed, it is no circle.
    face = {
        "src/lib.rs": "pub mod a;\npub mod x;\npub mod y;\n",
        "src/a/mod.rs": "mod b;\npub use b::thing;\npub struct Shared;\n",
        "src/a/b.rs": "pub fn thing() -> u8 { crate::x::f() }\n",
        "src/x.rs": "use crate::a::Shared;\npub fn f() -> u8 { let _s = Shared; 1 }\n",
        "src/y.rs": "pub fn g() -> u8 { crate::a::thing() }\n",
    }
    g = _tree(face)
    cases.append(("re-export counted", g.circles(), [["src/a/b.rs", "src/a/mod.rs", "src/x.rs"]]))
    cases.append(("re-export skipped", _tree(face, "skip").circles(), []))
    g = _tree(face, "follow")
    cases.append(("re-export followed", (g.circles(), sorted(g.arrows["src/y.rs"])),
                  ([], ["src/a/b.rs"])))

    # nested groups, self, renames, globs, super::super, main.rs through the crate's name
    g = _tree({
        "src/lib.rs": "pub mod x;\npub mod y;\npub mod z;\n",
        "src/main.rs": "use joincanary::z::Run;\nfn main() { joincanary::y::go(); }\n",
        "src/x/mod.rs": "pub mod deep;\n",
        "src/x/deep/mod.rs": "pub mod leaf;\n",
        "src/x/deep/leaf.rs": "use super::super::super::z::{self as zz, Cfg};\n"
                              "pub fn f() { zz::helper(); }\n",
        "src/y.rs": "use crate::{x::{deep::{self, leaf::f as g}, *}, z::Cfg as C};\n"
                    "pub fn go() { deep::leaf::f(); }\n",
        "src/z.rs": "use crate::x::deep::leaf::*;\npub struct Cfg; pub struct Run; pub fn helper() {}\n",
    })
    cases.append(("groups, self, as, globs, super::super, crate name", _arrows(g), {
        ("src/main.rs", "src/z.rs"): ["Run"],
        ("src/main.rs", "src/y.rs"): ["go"],
        ("src/x/deep/leaf.rs", "src/z.rs"): ["Cfg", "helper"],
        ("src/y.rs", "src/x/deep/leaf.rs"): ["f"],
        ("src/y.rs", "src/x/mod.rs"): ["*"],
        ("src/y.rs", "src/z.rs"): ["Cfg"],
        ("src/z.rs", "src/x/deep/leaf.rs"): ["*"],
    }))

    # inline paths (in an inline module too); comments, strings, doc links, other crates' names
    # and tests left out; `mod x;` is no arrow
    g = _tree({
        "src/lib.rs": "pub mod p;\npub mod q;\npub mod r;\n",
        "src/p.rs": "//! See [`crate::q::Doc`].\nuse futures::future::BoxFuture;\n"
                    "pub fn f() -> u8 { let _ = \"crate::r::Nope\"; /* crate::r::Nope */ crate::q::answer() }\n"
                    "fn lt<'a>(s: &'a str) -> char { let _ = s; '\"' }\n"
                    "#[cfg(test)]\nmod tests {\n    use crate::r::Helper;\n}\n"
                    "#[cfg(test)]\nfn helper() { crate::r::Helper::new(); }\n",
        "src/q.rs": "pub mod inner {\n    pub fn g() { super::super::r::h(); }\n}\n"
                    "pub fn answer() -> u8 { self::inner::g(); 1 }\n",
        "src/r.rs": "#[cfg(test)]\nmod tests;\npub struct BoxFuture;\npub fn h() {}\n",
        "src/r/tests.rs": "use crate::p::f;\n",
    })
    cases.append(("inline paths; comments, strings, tests left out", _arrows(g), {
        ("src/p.rs", "src/q.rs"): ["answer"],
        ("src/q.rs", "src/r.rs"): ["h"],
    }))
    cases.append(("test-only file left out", sorted(g.tree.files),
                  ["src/lib.rs", "src/p.rs", "src/q.rs", "src/r.rs"]))

    # two top-level modules tied through files that form no circle of files
    g = _tree({
        "src/lib.rs": "pub mod a;\npub mod m;\n",
        "src/a/mod.rs": "pub mod d;\npub mod h;\npub struct N;\n",
        "src/a/d.rs": "use crate::m::Metrics;\nuse super::N;\n",
        "src/a/h.rs": "pub struct Health;\n",
        "src/m.rs": "use crate::a::h::Health;\npub struct Metrics(Health);\n",
    })
    cases.append(("no circle of files", g.circles(), []))
    cases.append(("a circle of top-level modules", [c for c, _ in module_circles(g)], [["a", "m"]]))

    # long files: src/ (a test-only file too) and tests/ are measured; a listed one is kept
    with tempfile.TemporaryDirectory(prefix="imports-selftest-") as d:
        for rel, n in {"src/lib.rs": 3, "src/a/tests.rs": 9, "tests/tests.rs": 2,
                       "tests/long.rs": 12, "tests/support/servers.rs": 10, "tests/x.py": 50}.items():
            os.makedirs(os.path.dirname(os.path.join(d, rel)), exist_ok=True)
            with open(os.path.join(d, rel), "w", encoding="utf-8") as fh:
                fh.write("//! x\n" * n)
        sizes = file_lines(d)
    cases.append(("long files in src/ and tests/, kept ones aside",
                  over_lines(sizes, 8, {"tests/long.rs": "one idea"}),
                  ["src/a/tests.rs", "tests/support/servers.rs"]))

    failed = 0
    for name, got, want in cases:
        if got == want:
            print(f"ok   {name}")
        else:
            failed += 1
            print(f"FAIL {name}\n  got:  {got}\n  want: {want}")
    print(f"self test: {len(cases) - failed} of {len(cases)} passed")
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."),
                    help="the checkout to read (default: this script's repository)")
    ap.add_argument("--arrows", action="store_true", help="print every arrow, not only circles")
    ap.add_argument("--max-lines", type=int, metavar="N",
                    help="also fail on files over N lines, but for those in KEPT_WHOLE")
    ap.add_argument("--report", action="store_true",
                    help="print everything but exit 0 (a circle is reported, not failed)")
    ap.add_argument("--strict", action="store_true",
                    help="let a child's arrows up to its enclosing mod.rs close circles too")
    ap.add_argument("--reexports", choices=REEXPORTS, default="count",
                    help="`pub use child::X` unused in its file: an arrow like any (count, the "
                    "default), drawn but closing no circle (skip), or followed to X's file (follow)")
    ap.add_argument("--self-test", action="store_true", help="check the reader on synthetic trees")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    return report(args)


if __name__ == "__main__":
    sys.exit(main())
