#!/usr/bin/env python3
"""Prints import cycles among the top-level modules of engine/src and exits 1 if there are any.

A top-level module is a file `engine/src/X.rs` or a folder `engine/src/X/`. Module X refers to
module Y when a file of X names `crate::Y` (in a `use` or in a path) or a `use crate::{Y, ...}`
group. Comments and string literals are skipped, so a doc comment naming a module is no edge.

Usage: scripts/import-cycles.py [SRC_DIR]   (default: engine/src beside this script's folder)
"""

import os
import re
import sys
from pathlib import Path

CRATE_PATH = re.compile(r"\bcrate\s*::\s*([A-Za-z_][A-Za-z0-9_]*)")
# `use crate::{a, b::c, ...}`: every first segment of the group is a referenced module.
CRATE_GROUP = re.compile(r"\bcrate\s*::\s*\{")


def strip_comments_and_strings(text):
    """The source with comments, string and char literals blanked (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    if text[i] == "\n":
                        out.append("\n")
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'r(#*)"', text[i:])
            end = text.find('"' + m.group(1), i + len(m.group(0)))
            end = n if end < 0 else end + 1 + len(m.group(1))
            out.append("\n" * text.count("\n", i, end))
            i = end
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\":
                    i += 1
                elif text[i] == "\n":
                    out.append("\n")
                i += 1
            i += 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4]) or (c == "'" and text.startswith("'\\", i)):
            # A char literal ('a', '\n', '\u{..}'), not a lifetime ('a).
            j = text.find("'", i + 2 if text[i + 1] == "\\" else i + 1)
            i = n if j < 0 else j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def group_heads(text, start):
    """First segments of every path in the `{...}` group opening at `start`."""
    depth, i, heads, token, at_head = 0, start, [], "", True
    while i < len(text):
        c = text[i]
        if c == "{":
            depth += 1
            at_head = depth == 1
            token = ""
        elif c == "}":
            depth -= 1
            if depth == 0:
                break
        elif depth == 1 and c == ",":
            at_head, token = True, ""
        elif depth == 1 and at_head:
            if c.isalnum() or c == "_":
                token += c
            elif token:
                heads.append(token)
                at_head, token = False, ""
        i += 1
    if at_head and token:
        heads.append(token)
    return heads


def references(src):
    """{module: {referenced module: [(file, line), ...]}} for the top-level modules of src."""
    modules = {p.stem for p in src.glob("*.rs")} | {p.name for p in src.iterdir() if p.is_dir()}
    modules -= {"lib", "main"}
    refs = {m: {} for m in modules}
    for path in sorted(src.rglob("*.rs")):
        rel = path.relative_to(src)
        owner = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if owner not in modules:
            continue
        text = strip_comments_and_strings(path.read_text(encoding="utf-8"))
        found = [(m.group(1), m.start()) for m in CRATE_PATH.finditer(text)]
        for m in CRATE_GROUP.finditer(text):
            found += [(h, m.end() - 1) for h in group_heads(text, m.end() - 1)]
        for target, at in found:
            if target in modules and target != owner:
                line = text.count("\n", 0, at) + 1
                refs[owner].setdefault(target, []).append((str(rel), line))
    return refs


def cycles(refs):
    """Every elementary cycle, each once, as a list of modules starting at its smallest."""
    found = set()

    def walk(start, node, path, on_path):
        for nxt in sorted(refs[node]):
            if nxt == start:
                found.add(tuple(path))
            elif nxt > start and nxt not in on_path:
                on_path.add(nxt)
                walk(start, nxt, path + [nxt], on_path)
                on_path.discard(nxt)

    for start in sorted(refs):
        walk(start, start, [start], {start})
    return sorted(found, key=lambda c: (len(c), c))


def main():
    default = Path(__file__).resolve().parent.parent / "engine" / "src"
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    refs = references(src)
    found = cycles(refs)
    if not found:
        print(f"no import cycles among the {len(refs)} top-level modules of {src}")
        return 0
    print(f"{len(found)} import cycle(s) among the top-level modules of {src}:")
    for cycle in found:
        print("  " + " -> ".join(cycle + (cycle[0],)))
        for a, b in zip(cycle, cycle[1:] + (cycle[0],)):
            where = refs[a][b]
            shown = ", ".join(f"{f}:{l}" for f, l in where[:3])
            more = f" (+{len(where) - 3} more)" if len(where) > 3 else ""
            print(f"    {a} -> {b}: {shown}{more}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
