"""The layering of ../shared/DESIGN.md, checked by walking the imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sipguard"
FORBIDDEN = {"asyncio", "socket", "time", "redis", "pjsua2", "yaml", "asyncio_dgram", "uvloop",
             "structlog", "random", "threading", "select"}
# datetime is allowed for arithmetic on times passed in, never to read the clock.
CLOCK_CALLS = (".now(", ".today(", ".utcnow(", "time.time(", "monotonic(")
PURE_MODULES = sorted(
    [*PACKAGE.joinpath("sip").glob("*.py"), *PACKAGE.joinpath("policy").glob("*.py"),
     PACKAGE / "controller.py", PACKAGE / "calls.py",
     PACKAGE / "legs.py", PACKAGE / "challenge.py", PACKAGE / "peerauth.py",
     PACKAGE / "registration.py"]
)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", PURE_MODULES, ids=lambda path: path.name)
def test_pure_layers_do_no_io(path: Path):
    """sip/, policy/ and the controller import no I/O, clock or YAML module."""
    roots = {name.split(".")[0] for name in _imports(path)}
    assert roots & FORBIDDEN == set()


@pytest.mark.parametrize("path", PURE_MODULES, ids=lambda path: path.name)
def test_pure_layers_never_read_the_clock(path: Path):
    """Time comes in as a parameter: no now(), today() or time.time() in the pure layers."""
    text = path.read_text(encoding="utf-8")
    assert [call for call in CLOCK_CALLS if call in text] == []


@pytest.mark.parametrize("path", sorted(PACKAGE.joinpath("sip").glob("*.py")), ids=lambda p: p.name)
def test_sip_core_imports_nothing_above_it(path: Path):
    """The SIP core imports only itself and the standard library."""
    ours = {name for name in _imports(path) if name.startswith("sipguard")}
    assert all(name.startswith("sipguard.sip") for name in ours), ours


@pytest.mark.parametrize("path", sorted(PACKAGE.joinpath("policy").glob("*.py")), ids=lambda p: p.name)
def test_policy_imports_nothing_above_it(path: Path):
    """The policy package imports neither the SIP core nor the controller."""
    ours = {name for name in _imports(path) if name.startswith("sipguard")}
    assert all(name.startswith("sipguard.policy") for name in ours), ours


def test_modules_stay_focused():
    """No module passes 700 lines (split before it does)."""
    sizes = {path.name: len(path.read_text(encoding="utf-8").splitlines())
             for path in PACKAGE.rglob("*.py")}
    assert {name: size for name, size in sizes.items() if size > 700} == {}
