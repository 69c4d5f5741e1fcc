#!/usr/bin/env python3
"""The module graph of src/, drawn from its imports.

Prints, for the crate under src/:
  - every source file with its module path, line count and floor;
  - the graph between top-level modules (`config`, `layer`, `verify`, ...), each edge with the
    number of import sites that make it;
  - the cycles between top-level modules, and the file-level cycles that cross a module;
  - the upward references: the fewest import sites whose removal leaves the top-level graph
    without a cycle (exact for a cycle of up to 14 modules, greedy above), each with its file,
    line and path. The floors are counted on what remains: a module that imports no other
    module is on floor 0, any other one floor above the highest module it imports.

An import is any path the compiler resolves inside the crate: `use crate::...`, `use
super::...`, `use self::...`, a `use` of a child module, an inline `crate::x::y`, `super::y`
or `child::y` in code, and a call of a `#[macro_export]` macro (`crate::outln!`), which is
counted towards the file that defines it. `mod x;` declarations are not imports. Comments,
doc comments and string literals are ignored, and so are `#[cfg(test)] mod ... { }` blocks
(unit tests; `--with-tests` counts them). `src/main.rs` is the binary: its `portcullis::`
paths count as imports of the library. Edges into the crate root (`lib.rs`) are left out.
A `pub use` of a whole module (`pub use verify::profile;`) is an alias: an import through the
alias counts towards the module it names.

    python3 tools/imports.py            # the report
    python3 tools/imports.py --dot      # the top-level graph for graphviz
    python3 tools/imports.py --files    # the file-level graph, one edge per line
    python3 tools/imports.py --sizes    # only the files and their line counts, largest first
    python3 tools/imports.py --check    # exit 1 when a cycle between top-level modules exists

The report never fails on its own (exit 0). `--check` prints only the verdict: exit 0 when no
two top-level modules import each other, directly or around a longer loop; exit 1 with the
cycles and their upward import sites otherwise. A `mod.rs` and its children importing each
other (`use super::...` one way, `mod x;` items the other) is one module, not a cycle.
"""

import argparse
import os
import re
import signal
import sys
from collections import defaultdict

CRATE = "portcullis"
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


# ---------------------------------------------------------------------------------------------
# Reading a file: comments, strings and test modules out, line numbers kept.


def strip_code(text):
    """Comments and string/char literals blanked (newlines kept, so line numbers hold)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
            continue
        if text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:j]))
            i = j
            continue
        m = re.match(r'b?r(#*)"', text[i:i + 260]) if c in "br" else None
        if m and (i == 0 or not re.match(r"[A-Za-z0-9_]", text[i - 1])):
            end = '"' + m.group(1)
            j = text.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append('""' + "\n" * text[i:j].count("\n"))
            i = j
            continue
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
            out.append('""' + "\n" * text[i:j].count("\n"))
            i = j
            continue
        if c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:i + 12])
            if m:
                out.append("' '")
                i += m.end()
                continue
        out.append(c)
        i += 1
    return "".join(out)


def drop_test_modules(code):
    """`#[cfg(test)] mod x { ... }` blocks blanked (newlines kept)."""
    pat = re.compile(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+" + IDENT + r"\s*\{")
    while True:
        m = pat.search(code)
        if not m:
            return code
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        blank = "".join(ch if ch == "\n" else " " for ch in code[m.start():j])
        code = code[:m.start()] + blank + code[j:]


# ---------------------------------------------------------------------------------------------
# `use` trees.


def expand_use_tree(tree):
    """`crate::{a::{b, c as d}, e}` -> [['crate','a','b'], ['crate','a','c'], ['crate','e']]."""
    tokens = re.findall(IDENT + r"|::|\{|\}|,|\*", tree)
    pos = 0

    def parse(prefix):
        nonlocal pos
        paths, cur = [], list(prefix)
        while pos < len(tokens):
            t = tokens[pos]
            if t == "{":
                pos += 1
                while pos < len(tokens) and tokens[pos] != "}":
                    paths.extend(parse(cur))
                    if pos < len(tokens) and tokens[pos] == ",":
                        pos += 1
                pos += 1
                return paths
            if t in ("}", ","):
                break
            pos += 1
            if t == "::":
                continue
            if t == "as":
                pos += 1  # the alias name
                continue
            if t == "*":
                continue
            cur.append(t)
        if len(cur) > len(prefix):
            paths.append(cur)
        return paths

    return parse([])


# ---------------------------------------------------------------------------------------------
# The crate.


class File:
    def __init__(self, rel, module, lines, code, raw):
        self.rel, self.module, self.lines, self.code, self.raw = rel, module, lines, code, raw


def module_of(rel):
    """src-relative path -> module path tuple; () is the crate root, ('<main>',) the binary."""
    parts = rel[:-3].split("/")
    if parts == ["lib"]:
        return ()
    if parts == ["main"]:
        return ("<main>",)
    if parts[-1] == "mod":
        parts = parts[:-1]
    return tuple(parts)


def load(src, with_tests):
    files = {}
    for dirpath, _, names in os.walk(src):
        for name in sorted(names):
            if not name.endswith(".rs"):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, src).replace(os.sep, "/")
            raw = open(path, encoding="utf-8").read()
            code = strip_code(raw)
            if not with_tests:
                code = drop_test_modules(code)
            mod = module_of(rel)
            files[mod] = File(rel, mod, raw.count("\n") + (0 if raw.endswith("\n") else 1), code, raw)
    return files


def resolve(files, aliases, segs):
    """The deepest module a path (from the crate root) names, following module aliases."""
    mod = ()
    for s in segs:
        nxt = mod + (s,)
        if nxt in aliases:
            nxt = aliases[nxt]
        if nxt in files:
            mod = nxt
        else:
            break
    return mod


def absolute(files, here, segs):
    """A path as written in module `here` -> segments from the crate root, or None (extern)."""
    if not segs:
        return None
    if here == ("<main>",):
        if segs[0] in (CRATE, "crate"):
            return segs[1:] if segs[0] == CRATE else None
        return None
    if segs[0] == "crate":
        return segs[1:]
    if segs[0] in ("self", "super"):
        base = list(here)
        i = 0
        while i < len(segs) and segs[i] in ("self", "super"):
            if segs[i] == "super":
                if not base:
                    return None
                base.pop()
            i += 1
        return base + segs[i:]
    if here + (segs[0],) in files:  # a child module
        return list(here) + segs
    if here == () and (segs[0],) in files:
        return segs
    return None


def imports(files):
    """(from_module, to_module, line, text) for every import site."""
    macros = {}
    for mod, f in files.items():
        for m in re.finditer(r"#\[macro_export\]\s*macro_rules!\s*(" + IDENT + ")", f.raw):
            macros[m.group(1)] = mod

    aliases = {}
    for mod, f in files.items():
        for m in re.finditer(r"\bpub(\([^)]*\))?\s+use\s+([^;]+);", f.code):
            for segs in expand_use_tree(m.group(2)):
                a = absolute(files, mod, segs)
                if a is not None and tuple(a) in files and "as" not in m.group(2):
                    aliases[mod + (segs[-1],)] = tuple(a)

    sites = []
    for mod, f in files.items():
        code = f.code
        line_at = lambda pos: code.count("\n", 0, pos) + 1  # noqa: E731
        use_spans = []
        for m in re.finditer(r"\buse\s+([^;]+);", code):
            use_spans.append((m.start(), m.end()))
            for segs in expand_use_tree(m.group(1)):
                a = absolute(files, mod, segs)
                if a is None:
                    continue
                to = resolve(files, aliases, a)
                sites.append((mod, to, line_at(m.start()), "::".join(segs)))
        inside_use = lambda pos: any(s <= pos < e for s, e in use_spans)  # noqa: E731
        for m in re.finditer(r"(?<![A-Za-z0-9_:])(" + IDENT + r"(?:::" + IDENT + r")+)(!?)", code):
            if inside_use(m.start()):
                continue
            segs = m.group(1).split("::")
            if m.group(2) == "!" and segs[0] in ("crate", CRATE, "$crate") and segs[-1] in macros:
                sites.append((mod, macros[segs[-1]], line_at(m.start()), m.group(1) + "!"))
                continue
            a = absolute(files, mod, segs)
            if a is None:
                continue
            to = resolve(files, aliases, a)
            sites.append((mod, to, line_at(m.start()), m.group(1)))
    # Edges to oneself and to the crate root say nothing about the layout.
    return [s for s in sites if s[1] != s[0] and s[1] != ()], aliases


def top(mod):
    return mod[0] if mod else "<lib>"


def name(mod):
    return "::".join(mod) if mod else "<lib>"


# ---------------------------------------------------------------------------------------------
# Graph algorithms.


def sccs(nodes, edges):
    """Tarjan's strongly connected components; edges: node -> set of nodes."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def order_component(comp, weight):
    """Nodes of one cycle, bottom first, placing as little import weight upwards as possible.
    weight[(u, v)]: import sites in u that name v (u depends on v: v should sit below u)."""
    n = len(comp)
    if n <= 14:
        full = (1 << n) - 1
        w = [[weight.get((comp[a], comp[b]), 0) for b in range(n)] for a in range(n)]
        best = [None] * (1 << n)
        best[0] = (0, ())
        for s in range(1 << n):
            if best[s] is None:
                continue
            cost, order = best[s]
            for v in range(n):
                if s >> v & 1:
                    continue
                # v goes on top of s: every s-member that depends on v now points up.
                add = sum(w[u][v] for u in range(n) if s >> u & 1)
                t = s | 1 << v
                cand = (cost + add, order + (v,))
                if best[t] is None or cand < best[t]:
                    best[t] = cand
        return [comp[i] for i in best[full][1]]
    # Greedy (Eades, Lin, Smyth) for larger cycles.
    rest, bottom, topl = set(comp), [], []
    while rest:
        changed = True
        while changed:
            changed = False
            for v in sorted(rest):
                if not any(weight.get((v, u), 0) for u in rest if u != v):  # depends on nothing left
                    bottom.append(v)
                    rest.discard(v)
                    changed = True
                elif not any(weight.get((u, v), 0) for u in rest if u != v):  # nothing depends on it
                    topl.insert(0, v)
                    rest.discard(v)
                    changed = True
        if rest:
            v = max(sorted(rest), key=lambda x: sum(weight.get((x, u), 0) for u in rest)
                    - sum(weight.get((u, x), 0) for u in rest))
            topl.insert(0, v)
            rest.discard(v)
    return bottom + topl


# ---------------------------------------------------------------------------------------------


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends the output quietly
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", default=os.path.join(here, "..", "src"))
    ap.add_argument("--with-tests", action="store_true", help="count #[cfg(test)] modules too")
    ap.add_argument("--dot", action="store_true", help="print the top-level graph for graphviz")
    ap.add_argument("--files", action="store_true", help="print the file-level edges")
    ap.add_argument("--sizes", action="store_true", help="print the files with their line counts")
    ap.add_argument("--check", action="store_true", help="exit 1 on a cycle between top-level modules")
    args = ap.parse_args()

    files = load(os.path.normpath(args.src), args.with_tests)
    if args.sizes:
        for f in sorted(files.values(), key=lambda f: (-f.lines, f.rel)):
            print(f"{f.lines:6}  src/{f.rel}")
        print(f"{sum(f.lines for f in files.values()):6}  total, {len(files)} files")
        return 0
    sites, aliases = imports(files)

    tnodes = sorted({top(m) for m in files})
    tweight = defaultdict(int)
    tsites = defaultdict(list)
    for a, b, line, text in sites:
        ta, tb = top(a), top(b)
        if ta != tb:
            tweight[(ta, tb)] += 1
            tsites[(ta, tb)].append((files[a].rel, line, text))
    tedges = defaultdict(set)
    for (a, b) in tweight:
        tedges[a].add(b)

    # Order: components bottom first (Tarjan emits a component after everything it reaches).
    comps = sccs(tnodes, tedges)
    order = []
    for comp in comps:
        order.extend(order_component(comp, tweight) if len(comp) > 1 else comp)
    rank = {v: i for i, v in enumerate(order)}
    upward = sorted((e for e in tweight if rank[e[0]] < rank[e[1]]), key=lambda e: (e[0], e[1]))
    floor = {}
    for v in order:
        deps = [floor[b] for b in tedges[v] if rank[b] < rank[v]]
        floor[v] = 1 + max(deps) if deps else 0
    cycles = [c for c in comps if len(c) > 1]

    if args.check:
        if not cycles:
            print(f"imports: no cycle between the {len(tnodes)} top-level modules")
            return 0
        print(f"imports: {len(cycles)} cycle(s) between top-level modules", file=sys.stderr)
        for c in cycles:
            print(f"  {' '.join(c)}", file=sys.stderr)
        for e in upward:
            for rel, line, text in tsites[e]:
                print(f"  upward {e[0]} -> {e[1]}: src/{rel}:{line}  {text}", file=sys.stderr)
        return 1

    if args.dot:
        print("digraph imports {\n  rankdir=BT;\n  node [shape=box, fontname=monospace];")
        for (a, b), w in sorted(tweight.items()):
            style = ', color=red, constraint=false' if (a, b) in upward else ""
            print(f'  "{a}" -> "{b}" [label="{w}"{style}];')
        print("}")
        return 0

    fedges = defaultdict(set)
    fcount = defaultdict(int)
    for a, b, _, _ in sites:
        fedges[a].add(b)
        fcount[(a, b)] += 1
    if args.files:
        for (a, b), w in sorted(fcount.items()):
            print(f"{files[a].rel} -> {files[b].rel}  ({w})")
        return 0

    # Files.
    total = sum(f.lines for f in files.values())
    print(f"== files ({len(files)}, {total} lines; floor of the top-level module)")
    for mod in sorted(files, key=lambda m: files[m].rel):
        f = files[mod]
        print(f"  {f.lines:6}  {f.rel:34} {name(mod):28} floor {floor[top(mod)]}")
    print()

    # Top-level graph, highest floor first.
    print(f"== top-level modules ({len(tnodes)}) on {1 + max(floor.values())} floors, "
          "each with what it imports (import sites)")
    for v in sorted(tnodes, key=lambda x: (-floor[x], x)):
        deps = ", ".join(f"{b} {tweight[(v, b)]}" + (" UP" if (v, b) in upward else "")
                         for b in sorted(tedges[v], key=lambda b: (-floor[b], b)))
        print(f"  floor {floor[v]:2}  {v:12} -> {deps or '-'}")
    print()

    print(f"== cycles between top-level modules: {len(cycles)}")
    for c in cycles:
        nfiles = sum(1 for m in files if top(m) in c)
        print(f"  {len(c)} modules, {nfiles} files: {' '.join(c)}")
    print()

    fcomps = [c for c in sccs(list(files), fedges) if len(c) > 1]
    cross = [c for c in fcomps if len({top(m) for m in c}) > 1]
    inner = [c for c in fcomps if len({top(m) for m in c}) == 1]
    print(f"== file-level cycles crossing a module: {len(cross)}")
    for c in cross:
        print(f"  {len(c)} files: {' '.join(files[m].rel for m in c)}")
    print(f"== file-level cycles inside one module (a mod.rs and its children): {len(inner)}")
    for c in inner:
        print(f"  {len(c)} files: {' '.join(files[m].rel for m in c)}")
    print()

    nup = sum(tweight[e] for e in upward)
    print(f"== upward references: {len(upward)} module edges, {nup} import sites "
          "(the fewest that, removed, leave no cycle)")
    for e in upward:
        print(f"  {e[0]} (floor {floor[e[0]]}) -> {e[1]} (floor {floor[e[1]]}):")
        for rel, line, text in tsites[e]:
            print(f"      src/{rel}:{line}  {text}")
    if aliases:
        print()
        print("== module aliases (pub use of a whole module: shims)")
        for a, b in sorted(aliases.items()):
            print(f"  {name(a)} = {name(b)}  (src/{files[a[:-1]].rel if a[:-1] in files else '?'})")

    return 0


if __name__ == "__main__":
    sys.exit(main())
