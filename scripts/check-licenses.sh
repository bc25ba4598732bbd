#!/usr/bin/env bash
# Every crate in the build (all workspace dependencies, normal, build and dev) must be
# under a permissive licence: no GPL, LGPL or AGPL. Works offline from `cargo metadata`.
# Prints each licence expression with its crates; exits 1 naming any crate that fails.
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo metadata --format-version 1 --locked | python3 -c '
import json, re, sys

ALLOWED = {
    "MIT", "MIT-0", "Apache-2.0", "Apache-2.0 WITH LLVM-exception", "BSD-2-Clause",
    "BSD-3-Clause", "ISC", "Zlib", "Unicode-3.0", "Unicode-DFS-2016", "CC0-1.0",
    "Unlicense", "BSL-1.0", "0BSD", "CDLA-Permissive-2.0",
}

def ok(expr):
    """SPDX expression with OR/AND and parentheses; OR needs one side allowed, AND both."""
    expr = expr.replace("/", " OR ")
    tokens = re.findall(r"\(|\)|[^\s()]+(?:\s+WITH\s+[^\s()]+)?", expr)
    pos = 0
    def atom():
        nonlocal pos
        tok = tokens[pos]; pos += 1
        if tok == "(":
            value = disj()
            pos += 1  # ")"
            return value
        return tok in ALLOWED
    def conj():
        nonlocal pos
        value = atom()
        while pos < len(tokens) and tokens[pos] == "AND":
            pos += 1
            value = atom() and value
        return value
    def disj():
        nonlocal pos
        value = conj()
        while pos < len(tokens) and tokens[pos] == "OR":
            pos += 1
            value = conj() or value
        return value
    return disj()

meta = json.load(sys.stdin)
workspace = set(meta["workspace_members"])
by_licence, bad = {}, []
for pkg in meta["packages"]:
    if pkg["id"] in workspace:
        continue
    lic = pkg.get("license") or ""
    by_licence.setdefault(lic or "(none)", []).append(pkg["name"])
    if not lic or not ok(lic):
        bad.append("%s %s: %s" % (pkg["name"], pkg["version"], lic or "no licence field"))
for lic, names in sorted(by_licence.items(), key=lambda kv: -len(kv[1])):
    print(f"{len(names):4d}  {lic}")
if bad:
    print("\nNot allowed (GPL/LGPL/AGPL or unknown):", *bad, sep="\n  ")
    sys.exit(1)
print(f"licences: {sum(map(len, by_licence.values()))} crates, all permissive")
'
