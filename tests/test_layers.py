"""The import layers of docs/architecture.md, checked on the source (every import, lazy ones
included; only ``if TYPE_CHECKING:`` blocks are left out).

- No cycle between the parts of a package (``agent.config``, ``agent.federation``, ...).
- The coordinator reaches the agent only through its message schemas, its config schema and
  the ClientApp the Flower app ships; provisioning only through the config schema.
- What every process shares (orchard_common: process plumbing) imports none of them.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "coordinator", "models", "orchard_common", "provisioning")

# What may cross from one top-level package into another's modules.
ALLOWED_INTO_AGENT = {
    "coordinator": {
        "agent.health.schema",  # the MQTT health messages
        "agent.healthz",  # the GET /healthz document
        "agent.delivery.desired",  # the desired-model message the coordinator publishes
        "agent.remote.command",  # the signed configuration command it publishes
        "agent.software.manifest",  # the signed release manifest it serves
        "agent.federation.round_config",  # what a device reads of a run and a round
        "agent.clientapp",  # the Flower app's entry module re-exports the ClientApp
        "agent.clientapp.app",
    },
    "provisioning": {"agent.config", "agent.errors"},  # the config schema and its errors
    "models": set(),
    "orchard_common": set(),
}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[str]:
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.append(full if _is_module(full) else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _modules() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            parts = file.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = _imports(ast.parse(file.read_text(), str(file)))
    return out


MODULES = _modules()


def _part(module: str) -> str:
    """``agent.federation.gate`` -> ``agent.federation``; ``agent.config`` -> itself."""
    return ".".join(module.split(".")[:2])


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                strong(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            strong(node)
    return found


def test_the_scan_sees_the_imports_it_must() -> None:
    """The checks below are only as good as the scan: it finds known edges, lazy ones too."""
    assert "agent.federation.budget" in MODULES["agent.config"]
    assert "agent.config" in MODULES["agent.clientapp.app"]
    assert "coordinator.dashboard.app" in MODULES["coordinator.health_service"]  # lazy import


@pytest.mark.parametrize("package", PACKAGES)
def test_no_cycle_between_the_parts_of_a_package(package: str) -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for module, imported in MODULES.items():
        if module.split(".")[0] != package:
            continue
        for target in imported:
            if target.split(".")[0] == package and _part(target) != _part(module):
                edges[_part(module)].add(_part(target))
    cycles = _cycles(edges)
    detail = {
        " <-> ".join(c): sorted(f"{a} -> {b}" for a in c for b in edges[a] if b in c)
        for c in cycles
    }
    assert not cycles, detail


@pytest.mark.parametrize("package", sorted(ALLOWED_INTO_AGENT))
def test_only_schemas_cross_into_the_agent(package: str) -> None:
    allowed = ALLOWED_INTO_AGENT[package]
    leaks = sorted(
        f"{module} -> {target}"
        for module, imported in MODULES.items()
        if module.split(".")[0] == package
        for target in imported
        if target.split(".")[0] == "agent" and target not in allowed
    )
    assert not leaks, leaks


def test_agent_and_models_never_import_the_laptop_side() -> None:
    leaks = sorted(
        f"{module} -> {target}"
        for module, imported in MODULES.items()
        if module.split(".")[0] in ("agent", "models")
        for target in imported
        if target.split(".")[0] in ("coordinator", "provisioning")
    )
    assert not leaks, leaks


def test_orchard_common_imports_none_of_the_packages() -> None:
    leaks = sorted(
        f"{module} -> {target}"
        for module, imported in MODULES.items()
        if module.startswith("orchard_common")
        for target in imported
        if target.split(".")[0] in PACKAGES and not target.startswith("orchard_common")
    )
    assert not leaks, leaks
