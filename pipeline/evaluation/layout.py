"""The shape of `pipeline/`, checked: `python -m pipeline.evaluation.layout` (also run by `make lint` and a unit test).

Fails on
- an import cycle between modules of `pipeline/` (module-level and function-level imports alike: a lazy import
  hides a cycle from the interpreter, not from the reader);
- a module over `MAX_LINES` lines;
- an import against the layering: every package has a rank, and a module may import only from its own package
  or from a lower rank. So dependencies point one way, data flow order:
  core (models, settings, errors, status, jsonl, urls) -> nlp -> stories -> stream -> ingest -> search -> alerts
  -> app (the worker topology) -> api -> devstack -> cli / evaluation.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

MAX_LINES = 500
PACKAGE = Path(__file__).resolve().parents[1]

# Rank of each top-level package or root module of `pipeline`; a module imports only from ranks <= its own
# (the same rank only within its own package).
RANKS: dict[str, int] = {
    "__init__": 0,
    "models": 0,
    "settings": 0,
    "errors": 0,
    "status": 0,
    "jsonl": 0,
    "urls": 0,
    "progress": 0,
    "nlp": 1,
    "stories": 2,
    "stream": 3,
    "ingest": 4,
    "search": 5,
    "alerts": 6,
    "app": 7,
    "api": 8,
    "devstack": 9,
    "cli": 10,
    "evaluation": 10,
    "__main__": 11,
}
CORE = {name for name, rank in RANKS.items() if rank == 0}


@dataclass
class Report:
    cycles: list[list[str]] = field(default_factory=list)
    too_long: list[tuple[str, int]] = field(default_factory=list)
    against_layers: list[tuple[str, str]] = field(default_factory=list)
    unranked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.cycles or self.too_long or self.against_layers or self.unranked)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The `pipeline` modules a module imports (a `from pkg import mod` counts as importing `pkg.mod`)."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # `pipeline.x.Thing` -> `pipeline.x`
                t = t.rpartition(".")[0]
            if t and t != name and t != "pipeline":
                found.add(t)
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def check(root: Path | None = None) -> Report:
    mods = modules(root or PACKAGE)
    known = set(mods)
    graph = {name: imports_of(path, name, known) for name, path in mods.items()}
    report = Report(cycles=cycles(graph))
    for name, path in mods.items():
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            report.too_long.append((name, lines))
        own = layer(name)
        if own not in RANKS:
            report.unranked.append(name)
            continue
        for dep in graph[name]:
            other = layer(dep)
            if other not in RANKS:
                continue  # reported as unranked on its own
            if RANKS[other] > RANKS[own] or (RANKS[other] == RANKS[own] and other != own and own not in CORE):
                report.against_layers.append((name, dep))
    return report


def main() -> int:
    report = check()
    for component in report.cycles:
        print(f"import cycle: {' <-> '.join(component)}")
    for name, lines in report.too_long:
        print(f"too long: {name} has {lines} lines (limit {MAX_LINES})")
    for name, dep in sorted(report.against_layers):
        print(f"against the layers: {name} imports {dep} ({layer(name)} may not depend on {layer(dep)})")
    for name in report.unranked:
        print(f"not in a known layer: {name} (add its package to RANKS in pipeline/evaluation/layout.py)")
    mods = modules(PACKAGE)
    print(f"layout: {len(mods)} modules, {'OK' if report.ok else 'FAILED'}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
