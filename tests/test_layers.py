"""zoo's layers: no import circles among the core modules; data modules and models apart (neither imports the other).

The imports are read from the source (``ast``), every ``import`` statement counted, those inside functions too: a
lazy import still ties the two modules together, so an import that goes both ways is a circle whether or not it is
deferred. Only ``zoo.*`` modules outside ``zoo/models/`` are nodes (``data_modules/`` and ``callbacks/`` install as
``zoo.data_modules`` and ``zoo.callbacks``); importing a submodule is not counted as importing its package's
``__init__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# source folder -> the package it installs as (setup.py's package_dir)
PACKAGES = {"zoo": "zoo", "data_modules": "zoo.data_modules", "callbacks": "zoo.callbacks"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    parts[0] = PACKAGES[parts[0]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    out = {}
    for folder in PACKAGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            out[_module_name(path)] = path
    return out


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """The ``zoo.*`` modules ``path`` imports anywhere in its body: ``import a.b``, ``from a.b import c`` (``a.b.c``
    when that is a module, else ``a.b``), relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*up, base] if base else up)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # `import zoo.ops.relation` -> zoo.ops.relation; an attribute -> its module
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _is_core(name: str) -> bool:
    """A ``zoo.*`` module outside ``zoo/models/`` (the package ``zoo.models`` itself included in the exclusion)."""
    return name == "zoo" or name.startswith("zoo.") and not (name == "zoo.models" or name.startswith("zoo.models."))


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules it imports, over every ``zoo.*`` module (models included)."""
    sources = _sources()
    modules = set(sources)
    return {name: _imports(path, name, modules) for name, path in sources.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (``[a, b, ..., a]``) of ``graph``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
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


def test_cycle_finder_finds_a_lazy_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    src = ROOT / "zoo" / "cli.py"
    assert _imports(src, "zoo.cli", {"zoo.cli", "zoo.errors", "zoo"}) >= {"zoo.errors"}, "function-level imports count"


def test_core_has_no_import_circle():
    """Among ``zoo.*`` modules outside ``zoo/models/``: no module imports, directly or through others, itself."""
    graph = import_graph()
    core = {m: {t for t in ts if _is_core(t)} for m, ts in graph.items() if _is_core(m)}
    cycle = find_cycle(core)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def _crossing(source: str, target: str) -> list[str]:
    """``source`` modules (the package and its submodules) that import a ``target`` module, function-level imports
    included."""
    graph = import_graph()

    def inside(m: str, package: str) -> bool:
        return m == package or m.startswith(package + ".")

    return sorted(f"{m} imports {t}" for m, ts in graph.items() if inside(m, source) for t in ts if inside(t, target))


def test_data_modules_do_not_import_models():
    """``data_modules/`` never imports ``zoo.models``: data follows the model through ``data_config()``, not imports."""
    bad = _crossing("zoo.data_modules", "zoo.models")
    assert not bad, "; ".join(bad)


def test_models_do_not_import_data_modules():
    """``zoo.models`` never imports ``data_modules/``: what both need (tokenizers, feature files, the pseudo-label
    format) lives in a neutral ``zoo.*`` module that both import."""
    bad = _crossing("zoo.models", "zoo.data_modules")
    assert not bad, "; ".join(bad)
