"""The core's modules import each other one way only (no import circles).

Every ``import`` statement counts, at module level or inside a function: an
import moved into a function still ties the two modules in a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tlspolicy

PACKAGE = Path(tlspolicy.__file__).parent
CORE = ("_raw", "_serialise", "decision", "errors", "names", "options", "resolver", "scopes",
        "policies")


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _core_graph() -> dict[str, set[str]]:
    paths = [p for p in PACKAGE.rglob("*.py")
             if p.relative_to(PACKAGE).parts[0].removesuffix(".py") in CORE]
    names = {_module_name(p): p for p in paths}
    return {name: {m for m in _imports(path, name) if m in names and m != name}
            for name, path in names.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_core_modules_have_no_import_circle() -> None:
    graph = _core_graph()
    assert "tlspolicy.decision" in graph and "tlspolicy._serialise" in graph
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_serialisation_sits_below_the_decision() -> None:
    graph = _core_graph()
    assert "tlspolicy._serialise" in graph["tlspolicy.decision"]
    assert "tlspolicy.decision" not in graph["tlspolicy._serialise"]


# ------------------------------------------------------- the Postfix dialect, one engine

#: What the pure Postfix package may never import: I/O (event loop, sockets, files'
#: layers) and the layers above it.  It renders decisions; it fetches nothing.
_POSTFIX_FORBIDDEN = ("asyncio", "socket", "selectors", "ssl", "subprocess",
                      "tlspolicy.discovery", "tlspolicy.stores", "tlspolicy.servers",
                      "tlspolicy.adapters", "tlspolicy.reporting", "tlspolicy.cli",
                      "tlspolicy.formats", "tlspolicy.testing", "dns", "httpx", "redis")
#: The rule tables and judges of SEMANTICS 5, 7, 8 and 11 live in the core and in
#: ``tlspolicy.postfix``; the server layer may only call them.
_RULE_NAMES = ("apply_destination", "policy_in_force", "classify_tlsa", "raise_to_floors",
               "need_of", "map_values", "combine_nexthop")


def _package_files(package: str) -> dict[str, Path]:
    return {_module_name(p): p for p in (PACKAGE / package).rglob("*.py")}


def test_postfix_package_is_pure() -> None:
    for name, path in _package_files("postfix").items():
        bad = sorted(m for m in _imports(path, name)
                     if any(m == f or m.startswith(f + ".") for f in _POSTFIX_FORBIDDEN))
        assert not bad, f"{name} imports {bad}: tlspolicy.postfix must stay pure"


def test_servers_hold_no_policy_rule() -> None:
    for name, path in _package_files("servers").items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defined = {node.name for node in ast.walk(tree)
                   if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
        assert not defined & set(_RULE_NAMES), f"{name} defines {defined & set(_RULE_NAMES)}"
        used = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for alias in node.names}
        # The server renders through tlspolicy.postfix.answers and decides through the
        # resolver: no direct use of the destination-policy rules or the strictness table.
        assert not used & {"apply_destination", "classify_tlsa", "need_of", "policy_in_force",
                           "raise_to_floors"}, f"{name} imports {used & set(_RULE_NAMES)}"
