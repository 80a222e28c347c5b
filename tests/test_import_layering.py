"""The package graph of ARCHITECTURE.md: layers import only downward.

Every ``import`` statement counts, read statically from the AST of every module: at
module level, inside a function, or under ``TYPE_CHECKING``.  An import moved into a
function still ties the two modules together, so it is no way around the graph.

Besides the graph: the core's modules import each other one way only (no circles),
the core opens no file or socket and reads no clock, and ``tlspolicy.postfix`` is pure.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import tlspolicy

PACKAGE = Path(tlspolicy.__file__).parent

#: ARCHITECTURE.md's layers, bottom first: (layer, the units in it).  A unit is a
#: package under ``tlspolicy`` (``formats``), a top-level module (``decision``), the
#: public API (``tlspolicy/__init__.py``, spelled ``""``) or ``__main__``.  A module may
#: import its own unit and any unit of a lower layer; inside the two core layers every
#: unit of the layer counts as one (their modules are checked for circles instead).
#: ``postfix`` sits under ``formats``: ``formats/postfix.py`` reads a transport file and
#: parses it with the pure ``tlspolicy.postfix.transport``, never the other way round.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("values", ("_raw", "_serialise", "_version", "decision", "errors", "names", "options",
                "outcomes", "reuse")),
    ("core", ("diff", "expiry", "floors", "policies", "resolver", "scopes")),
    ("postfix", ("postfix",)),
    ("formats", ("formats",)),
    ("public API", ("",)),
    ("io", ("adapters", "discovery", "stores")),
    ("services", ("policytests", "reporting", "servers")),
    ("cli", ("cli",)),
    ("__main__", ("__main__",)),
)
CORE = LAYERS[0][1] + LAYERS[1][1]
_SHARED_LAYERS = ("values", "core")

#: Imports that still break the graph: (importing module, imported module).  This is
#: the remaining debt.  The test fails on an edge that is not listed here, and also
#: when a listed edge is gone, so the list only shrinks: delete the line with the fix.
ALLOWED_EDGES: frozenset[tuple[str, str]] = frozenset(
    {
        # A decision carries the TLSA records and the MTA-STS policy it applied, while the
        # policies build decisions.  Those are models with their parsers and matchers, no
        # small value to move below the decision.
        ("tlspolicy.decision", "tlspolicy.policies.dane"),
        ("tlspolicy.decision", "tlspolicy.policies.mtasts"),
        # Discovery builds and opens its own store instead of being handed one (by the
        # composition in servers/app.py that issue 22's second landing brings).
        ("tlspolicy.discovery.core", "tlspolicy.stores"),
        ("tlspolicy.discovery.importcache", "tlspolicy.stores"),
    }
)


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_by(node: ast.Import | ast.ImportFrom, package: str) -> set[str]:
    """The modules (and names in modules) one import statement of ``package`` reads."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if node.level:
        base = package.split(".")
        base = base[: len(base) - node.level + 1]
        module = ".".join([*base, *([node.module] if node.module else [])])
    else:
        module = node.module or ""
    return {module, *(f"{module}.{alias.name}" for alias in node.names)}


def _package_of(path: Path, name: str) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _imports(path: Path, name: str) -> set[str]:
    package = _package_of(path, name)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.update(_imported_by(node, package))
    return found


def _unit(module: str) -> str:
    """The unit of LAYERS that ``module`` belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _layer(unit: str) -> int:
    for index, (_, units) in enumerate(LAYERS):
        if unit in units:
            return index
    raise AssertionError(f"tlspolicy.{unit} is in no layer of LAYERS: place it there")


def _all_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(imported: str, modules: dict[str, Path]) -> str | None:
    """The module of ours that ``imported`` (a module or a name in one) is read from."""
    if imported != "tlspolicy" and not imported.startswith("tlspolicy."):
        return None
    while imported not in modules:
        imported = imported.rpartition(".")[0]
    return imported


def _allowed(importer: str, imported: str) -> bool:
    a, b = _unit(importer), _unit(imported)
    la, lb = _layer(a), _layer(b)
    return a == b or lb < la or (la == lb and LAYERS[la][0] in _SHARED_LAYERS)


def _graph_breaks() -> set[tuple[str, str]]:
    modules = _all_modules()
    found: set[tuple[str, str]] = set()
    for name, path in modules.items():
        for imported in _imports(path, name):
            target = _resolve(imported, modules)
            if target is not None and target != name and not _allowed(name, target):
                found.add((name, target))
    return found


def test_every_module_is_in_a_layer() -> None:
    for name in _all_modules():
        _layer(_unit(name))


def test_layers_import_only_downward() -> None:
    new = sorted(_graph_breaks() - ALLOWED_EDGES)
    assert not new, "imports against ARCHITECTURE.md's layers:\n" + "\n".join(
        f"  {a} -> {b}" for a, b in new
    )


def test_allowed_edges_only_shrink() -> None:
    gone = sorted(ALLOWED_EDGES - _graph_breaks())
    assert not gone, "fixed, delete from ALLOWED_EDGES:\n" + "\n".join(
        f"  {a} -> {b}" for a, b in gone
    )



def _type_checking_imports(path: Path) -> dict[str, str]:
    """What the ``if TYPE_CHECKING:`` blocks of a module import: name -> module."""
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom), ast.unparse(stmt)
                for alias in stmt.names:
                    found[alias.asname or alias.name] = "." * stmt.level + (stmt.module or "")
    return found


def test_lazy_public_names_are_imported_for_the_graph_too() -> None:
    # The public API imports a name's module on first use (tlspolicy._LAZY): no import
    # statement the graph could read.  Its TYPE_CHECKING imports name the same modules
    # and are read as every import is, so a lazy name still counts as an edge of the
    # public API, and still may reach only downward.
    assert _type_checking_imports(PACKAGE / "__init__.py") == tlspolicy._LAZY
    assert {*tlspolicy._LAZY, "__version__"} == set(tlspolicy.__all__)
    for name, module in tlspolicy._LAZY.items():
        owner = importlib.import_module(module, "tlspolicy")
        assert getattr(tlspolicy, name) is getattr(owner, name), name
    assert sorted(tlspolicy.__all__) == [n for n in dir(tlspolicy) if n in tlspolicy.__all__]
    # Nothing but those: a name the module does not have is no attribute, as before.
    assert not hasattr(tlspolicy, "no_such_name")


def test_importing_a_module_imports_no_loader() -> None:
    # What the lazy names are for: the server reading the compiled cache imports the
    # resolver and the cache, not the TOML and ecelerity.conf parsers behind load_config.
    code = ("import sys, tlspolicy.resolver, tlspolicy.scopes; "
            "print(' '.join(sorted(sys.modules)))")
    modules = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                             text=True).stdout.split()
    assert "tlspolicy.resolver" in modules
    assert not {"tlspolicy.formats.loader", "tlspolicy.formats.ecelerity",
                "tlspolicy.formats.toml"} & set(modules)


def _core_graph() -> dict[str, set[str]]:
    paths = [
        p
        for p in PACKAGE.rglob("*.py")
        if p.relative_to(PACKAGE).parts[0].removesuffix(".py") in CORE
    ]
    names = {_module_name(p): p for p in paths}
    return {
        name: {m for m in _imports(path, name) if m in names and m != name}
        for name, path in names.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
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


#: What the core may never import: files, sockets, processes, the clock, an event loop,
#: and the network clients of the extras.  Time comes in as an argument.
_CORE_IO_MODULES = (
    "asyncio",
    "http",
    "io",
    "os",
    "pathlib",
    "selectors",
    "shutil",
    "socket",
    "sqlite3",
    "ssl",
    "subprocess",
    "tempfile",
    "time",
    "urllib",
    "dns",
    "httpx",
    "redis",
)
#: Calls that open a file or read the clock, whatever module they come from.
_CORE_IO_CALLS = (
    "open",
    "now",
    "utcnow",
    "today",
    "read_text",
    "read_bytes",
    "write_text",
    "write_bytes",
)
#: Core modules that still do I/O (the debt; the list only shrinks, like ALLOWED_EDGES).
_CORE_IO_DEBT: tuple[str, ...] = ()


def _io_uses(path: Path, name: str) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = sorted(
        m
        for m in _imports(path, name)
        if any(m == f or m.startswith(f + ".") for f in _CORE_IO_MODULES)
    )
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else None
            )
            if called in _CORE_IO_CALLS:
                found.append(f"{called}() at line {node.lineno}")
    return found


def test_core_opens_no_file_or_socket_and_reads_no_clock() -> None:
    modules = {name: path for name, path in _all_modules().items() if _unit(name) in CORE}
    assert "tlspolicy.resolver" in modules and "tlspolicy.policies.dane" in modules
    for name, path in sorted(modules.items()):
        uses = _io_uses(path, name)
        if name in _CORE_IO_DEBT:
            assert uses, f"{name} does no I/O any more: delete it from _CORE_IO_DEBT"
        else:
            assert not uses, f"{name} does I/O: {uses}"


# ------------------------------------------------------- the Postfix dialect, one engine

#: What the pure Postfix package may never import: I/O (event loop, sockets, files'
#: layers) and the layers above it.  It renders decisions; it fetches nothing.
_POSTFIX_FORBIDDEN = (
    "asyncio",
    "socket",
    "selectors",
    "ssl",
    "subprocess",
    "tlspolicy.discovery",
    "tlspolicy.stores",
    "tlspolicy.servers",
    "tlspolicy.adapters",
    "tlspolicy.reporting",
    "tlspolicy.cli",
    "tlspolicy.formats",
    "tlspolicy.policytests",
    "dns",
    "httpx",
    "redis",
)
#: The rule tables and judges of SEMANTICS 5, 7, 8 and 11 live in the core and in
#: ``tlspolicy.postfix``; the server layer may only call them.
_RULE_NAMES = (
    "apply_destination",
    "policy_in_force",
    "classify_tlsa",
    "raise_to_floors",
    "need_of",
    "map_values",
    "combine_nexthop",
)


def _package_files(package: str) -> dict[str, Path]:
    return {_module_name(p): p for p in (PACKAGE / package).rglob("*.py")}


def test_postfix_package_is_pure() -> None:
    for name, path in _package_files("postfix").items():
        bad = sorted(
            m
            for m in _imports(path, name)
            if any(m == f or m.startswith(f + ".") for f in _POSTFIX_FORBIDDEN)
        )
        assert not bad, f"{name} imports {bad}: tlspolicy.postfix must stay pure"


def test_servers_hold_no_policy_rule() -> None:
    for name, path in _package_files("servers").items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defined = {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        }
        assert not defined & set(_RULE_NAMES), f"{name} defines {defined & set(_RULE_NAMES)}"
        used = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        # The server renders through tlspolicy.postfix.answers and decides through the
        # resolver: no direct use of the destination-policy rules or the strictness table.
        assert not used & {
            "apply_destination",
            "classify_tlsa",
            "need_of",
            "policy_in_force",
            "raise_to_floors",
        }, f"{name} imports {used & set(_RULE_NAMES)}"


#: What a function may import: an optional extra's package, or a module of ours that
#: needs one at import time.  Everything else is imported at module level, where the
#: module's dependencies can be read at a glance.
_EXTRAS = (
    "aiosmtplib",
    "cryptography",
    "dkim",
    "dns",
    "httpx",
    "prometheus_client",
    "psycopg",
    "redis",
    "service_identity",
    "uvloop",
    "tlspolicy.discovery",
    "tlspolicy.reporting",
    "tlspolicy.servers.metrics",
)


def _function_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom) and in_function:
                found.append(child)
            walk(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    walk(tree, False)
    return found


def test_functions_import_only_optional_extras_and_say_which() -> None:
    bad: list[str] = []
    for name, path in sorted(_all_modules().items()):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node in _function_imports(ast.parse(text)):
            where = f"{name}:{node.lineno}: {lines[node.lineno - 1].strip()}"
            extra = [
                m
                for m in _imported_by(node, _package_of(path, name))
                if any(m == e or m.startswith(e + ".") for e in _EXTRAS)
            ]
            if not extra:
                bad.append(f"{where} (import it at module level)")
            elif not any("extra" in line for line in lines[node.lineno - 2 : node.end_lineno]):
                bad.append(f"{where} (name the extra in a comment)")
    assert not bad, "imports inside functions:\n" + "\n".join(f"  {b}" for b in bad)


def test_no_module_is_over_700_lines() -> None:
    # A file that long is doing two jobs (the layout's rule): split it by job.
    long = {name: n for name, path in _all_modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > 700}
    assert not long, f"split these modules: {long}"
