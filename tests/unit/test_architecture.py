"""The layering of ../shared/DESIGN.md, checked by walking the imports, package by package.

Every folder under sipguard/ is a package with a rank; a package imports only packages
of a lower rank (imports point down), so a new module is covered by its folder and a new
package must be given a rank here before the suite passes. The pure packages (the SIP
core, the policy, the B2BUA front door) do no I/O and never read the clock.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sipguard"

# Lower ranks first; a package may import only packages of a lower rank.
RANKS = {
    # Rank 0: depend on nothing of ours.
    "sip": 0, "schema": 0, "logs": 0, "control": 0, "store": 0,
    # Rank 1: the policy (read through schema), the transports (framing from sip), PINs.
    "policy": 1, "transports": 1, "pin": 1,
    # Rank 2: the B2BUA front door (sip + policy), screening (policy + store).
    "b2bua": 2, "screening": 2,
    # Rank 3: call records (built from b2bua calls, replayed through screening), the edge.
    "records": 3, "edge": 3,
    # Rank 4 and up: alerts (read the records), the configuration of all of these, the
    # admin web, the service that runs them, the command line.
    "alerts": 4, "config": 5, "web": 6, "service": 7, "cli": 8,
}  # fmt: skip
PURE_PACKAGES = ("sip", "policy", "b2bua")
# What no pure module imports: I/O, concurrency, clocks, logging, databases, networks.
FORBIDDEN = {"asyncio", "socket", "time", "redis", "pjsua2", "asyncio_dgram", "uvloop",
             "structlog", "random", "threading", "select", "selectors", "signal",
             "subprocess", "multiprocessing", "concurrent", "sqlite3", "aiosqlite", "asyncpg",
             "http", "aiohttp", "urllib.request", "ssl", "logging"}
# The SIP core and the B2BUA touch no file either (the policy package loads and edits
# its own file, so it may).
NO_FILES = {"os", "pathlib", "tempfile", "shutil", "io", "yaml", "ruamel"}
# datetime is allowed for arithmetic on times passed in, never to read the clock.
CLOCK_CALLS = (".now(", ".today(", ".utcnow(", "time.time(", "monotonic(")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _package_of(module: str) -> str | None:
    """The top-level package of a sipguard module (None for sipguard and __main__)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in {p.name for p in PACKAGE.iterdir()
                                                       if p.is_dir()} else None


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, except what sits under ``if TYPE_CHECKING:`` (annotations only)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and (
                node.test.id == "TYPE_CHECKING"):
            yield from (child for branch in node.orelse for child in _runtime_nodes(branch))
            continue
        yield node
        yield from _runtime_nodes(node)


def _imports(path: Path, runtime_only: bool = False) -> set[str]:
    """The modules a file imports; ``from a import b`` names ``a.b`` when that is a module
    of ours (a submodule), else ``a``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = _runtime_nodes(tree) if runtime_only else ast.walk(tree)
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & MODULES.keys()
            names.update(submodules or {node.module})
            if len(submodules) < len(node.names) and submodules:
                names.add(node.module)
    return names


def _roots(names: set[str]) -> set[str]:
    """The names and each of their parents (``urllib.request`` gives ``urllib`` too)."""
    found: set[str] = set()
    for name in names:
        parts = name.split(".")
        found.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
    return found


def test_every_package_has_a_rank():
    """A new folder under sipguard/ must be placed in the layers before the suite passes."""
    folders = {path.name for path in PACKAGE.iterdir()
               if path.is_dir() and path.name != "__pycache__"}
    assert folders - RANKS.keys() == set(), "give each new package a rank in RANKS"
    assert RANKS.keys() - folders == set(), "a package in RANKS no longer exists"


def test_no_modules_beside_the_packages():
    """The top of sipguard/ holds only __init__ and __main__: every module has a package."""
    flat = {path.name for path in PACKAGE.glob("*.py")}
    assert flat == {"__init__.py", "__main__.py"}


@pytest.mark.parametrize("package", sorted(RANKS))
def test_each_package_says_what_it_owns_and_exports_its_names(package: str):
    """Each package's __init__ has a docstring saying what it owns and what it may import,
    and an explicit __all__."""
    init = PACKAGE / package / "__init__.py"
    tree = ast.parse(init.read_text(encoding="utf-8"))
    docstring = ast.get_docstring(tree) or ""
    assert len(docstring) > 80, f"{package}: say what the package owns and may import"
    assert "import" in docstring.lower(), f"{package}: say what it may import"
    assigned = {target.id for node in tree.body if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)}
    assert "__all__" in assigned, f"{package}: export its public names in __all__"


@pytest.mark.parametrize("module", sorted(MODULES), ids=str)
def test_imports_point_down(module: str):
    """A module imports its own package and packages of a lower rank, never one beside or
    above it."""
    package = _package_of(module)
    if package is None:
        return  # sipguard/__init__ and __main__ (the entry point) sit above everything
    upward = {}
    for name in _imports(MODULES[module]):
        other = _package_of(name) if name.startswith("sipguard.") else None
        if other is not None and other != package and RANKS[other] >= RANKS[package]:
            upward[name] = other
    assert upward == {}, f"{package} (rank {RANKS[package]}) imports {upward}"


@pytest.mark.parametrize("module", sorted(MODULES), ids=str)
def test_other_packages_are_imported_through_their_init(module: str):
    """Outside code imports ``sipguard.sip``, not ``sipguard.sip.endpoint``: a package's
    public names are the ones its __init__ exports (an import inside a function, kept
    lazy on purpose, such as the Redis store or PostgreSQL, may name the module)."""
    package = _package_of(module)
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    reaching_in = []
    for node in _runtime_nodes_at_module_level(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] == "sipguard" and len(parts) > 2 and parts[1] != package:
                reaching_in.append(node.module)
    assert reaching_in == [], f"import these through their package: {reaching_in}"


def _runtime_nodes_at_module_level(tree: ast.Module) -> Iterator[ast.stmt]:
    """The module's own statements, and those under ``if TYPE_CHECKING:``."""
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and (
                node.test.id == "TYPE_CHECKING"):
            yield from node.body
        else:
            yield node


def _pure_modules() -> list[str]:
    return sorted(name for name in MODULES if _package_of(name) in PURE_PACKAGES)


@pytest.mark.parametrize("module", _pure_modules(), ids=str)
def test_pure_layers_do_no_io(module: str):
    """sip/, policy/ and b2bua/ import no I/O, concurrency, clock, logging or network
    module; sip/ and b2bua/ touch no file either."""
    roots = _roots(_imports(MODULES[module]))
    forbidden = FORBIDDEN if _package_of(module) == "policy" else FORBIDDEN | NO_FILES
    assert roots & forbidden == set()


@pytest.mark.parametrize("module", _pure_modules(), ids=str)
def test_pure_layers_never_read_the_clock(module: str):
    """Time comes in as a parameter: no now(), today() or time.time() in the pure layers."""
    text = MODULES[module].read_text(encoding="utf-8")
    assert [call for call in CLOCK_CALLS if call in text] == []


def test_no_import_cycles():
    """No module imports itself through others (what only type checking reads aside)."""
    graph = {name: {other for other in _imports(path, runtime_only=True) if other in MODULES}
             for name, path in MODULES.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done

    def walk(name: str, path: list[str]) -> None:
        state[name] = 1
        path.append(name)
        for other in sorted(graph[name]):
            if state.get(other) == 1:
                cycles.append([*path[path.index(other):], other])
            elif other not in state:
                walk(other, path)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [])
    assert cycles == []


def test_modules_stay_focused():
    """No module passes 700 lines (split before it does)."""
    sizes = {_module_name(path): len(path.read_text(encoding="utf-8").splitlines())
             for path in PACKAGE.rglob("*.py")}
    assert {name: size for name, size in sizes.items() if size > 700} == {}
