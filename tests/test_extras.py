"""Slim installs: the extras of pyproject.toml against zoo.extras and against what the code imports.

Static (AST over zoo/, data_modules/, callbacks/; nothing imported): for each method, the third-party packages that
its module (``zoo/models/<m>/module.py``) and the zoo classes its configs name (data modules, callbacks, ...) import
must come from the core requirements or from the method's extra (``zoo.extras.METHOD_EXTRA``): at module import time
strictly, and also through the imports done inside functions (what a fit needs), where the only exceptions are the
packages no extra can carry (``zoo.extras.NOT_IN_EXTRAS``) and the optional branches listed below. ``import zoo``
must import no optional package. A missing optional package is a one-line ``UserError`` naming the extra.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import json
import re
import subprocess
import sys
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest

from zoo import extras
from zoo.errors import UserError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
#: import name -> folder, for the packages that install inside zoo (setup.py)
PACKAGE_DIRS = {"zoo.data_modules": ROOT / "data_modules", "zoo.callbacks": ROOT / "callbacks", "zoo": ROOT / "zoo"}
#: Optional branches of shared code, reached only inside a function: module -> {package: why}. A core user who takes
#: such a branch gets the one-line extra error from zoo.extras.
OPTIONAL_BRANCHES = {
    "zoo.data_modules.images": {"datasets": "ImageNetDataModule reading a Hugging Face `save_to_disk` folder"},
}
METHODS = sorted(p.parent.name for p in (ROOT / "zoo" / "models").glob("*/module.py"))


# ----------------------------------------------------------------------------------------------- pyproject.toml
def _norm(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _dist_names(requirements: list[str]) -> set[str]:
    return {_norm(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", r)[1]) for r in requirements}


@cache
def _project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def _core() -> set[str]:
    return _dist_names(_project()["dependencies"])


def _extra(name: str) -> set[str]:
    return _dist_names(_project()["optional-dependencies"][name])


@cache
def _packages_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _dists_of(top: str) -> frozenset[str]:
    """The installed distributions that provide the import name ``top`` (normalised)."""
    return frozenset(_norm(d) for d in _packages_distributions().get(top, ()))


def _allowed(top: str, dists: set[str]) -> bool:
    return bool(_dists_of(top) & dists)


# ----------------------------------------------------------------------------------------------- import graph
def _file_of(module: str) -> Path | None:
    for prefix, folder in PACKAGE_DIRS.items():
        if module == prefix or module.startswith(prefix + "."):
            base = folder.joinpath(*module[len(prefix) :].lstrip(".").split(".")) if module != prefix else folder
            if base.with_suffix(".py").is_file():
                return base.with_suffix(".py")
            if (base / "__init__.py").is_file():
                return base / "__init__.py"
            return None
    return None


def _fallback(handlers: list[ast.ExceptHandler]) -> bool:
    """A ``try`` whose ImportError handler does not raise: the import is optional (e.g. Triton: the reference runs)."""
    for h in handlers:
        types = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
        catches = h.type is None or any(
            isinstance(t, ast.Name) and t.id in ("ImportError", "ModuleNotFoundError", "Exception") for t in types
        )
        if catches and not any(isinstance(n, ast.Raise) for n in ast.walk(h)):
            return True
    return False


@cache
def _imports(module: str) -> tuple[frozenset[str], frozenset[str]]:
    """(module-level, inside-function) absolute names imported by ``module``'s file (``from a import b`` gives both
    ``a`` and ``a.b``, since ``b`` may be a submodule); optional imports (:func:`_fallback`) and ``TYPE_CHECKING``
    blocks are left out."""
    path = _file_of(module)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    eager: set[str] = set()
    lazy: set[str] = set()

    def visit(node, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Try) and _fallback(child.handlers):
                continue
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    source = ".".join(base + ([child.module] if child.module else []))
                else:
                    source = child.module
                names = [source] + [f"{source}.{a.name}" for a in child.names]
            (lazy if in_function else eager).update(names)
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return frozenset(eager), frozenset(lazy)


def _third_party(starts: set[str], follow_functions: bool) -> dict[str, set[str]]:
    """Top-level third-party import name -> the zoo modules importing it, over the zoo modules that importing
    ``starts`` (and their parent packages) runs; ``follow_functions``: also the imports inside functions."""
    seen: set[str] = set()
    found: dict[str, set[str]] = defaultdict(set)
    todo = list(starts)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for module in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
            if module in seen or _file_of(module) is None:
                continue
            seen.add(module)
            eager, lazy = _imports(module)
            for imported in eager | lazy if follow_functions else eager:
                top = imported.split(".")[0]
                if top == "zoo":
                    todo.append(imported)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    found[top].add(module)
    return found


def _lazy_table(package_init: Path) -> dict[str, str]:
    """The ``_LAZY`` name -> submodule table of ``data_modules/__init__.py`` / ``callbacks/__init__.py``."""
    for node in ast.parse(package_init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_LAZY" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def _module_of_class_path(class_path: str) -> str:
    module, _, name = class_path.rpartition(".")
    for package in ("zoo.data_modules", "zoo.callbacks"):
        if module == package:
            sub = _lazy_table(_file_of(package)).get(name)
            return f"{package}.{sub}" if sub else module
    return module


@cache
def _starts(method: str) -> frozenset[str]:
    """The method's module and every zoo module a config of the method names (data modules, callbacks, ...)."""
    starts = {f"zoo.models.{method}.module"}
    for config in sorted((ROOT / "configs").rglob("*.yaml")):
        paths = re.findall(r"class_path:\s*([\w.]+)", config.read_text(encoding="utf-8"))
        if any(p.startswith(f"zoo.models.{method}.") for p in paths):
            starts |= {_module_of_class_path(p) for p in paths if p.startswith("zoo.")}
    return frozenset(starts)


def _allowed_dists(method: str) -> set[str]:
    extra = extras.METHOD_EXTRA[method]
    return _core() | (_extra(extra) if extra else set())


# ----------------------------------------------------------------------------------------------- the tables
def test_methods_have_an_extra_entry():
    assert sorted(extras.METHOD_EXTRA) == METHODS, "zoo.extras.METHOD_EXTRA must name every zoo/models/<method>"
    assert {e for e in extras.METHOD_EXTRA.values() if e} <= set(extras.EXTRAS)


def test_extras_match_pyproject():
    declared = _project()["optional-dependencies"]
    assert set(declared) == set(extras.EXTRAS) | {"all", "test"}
    for extra, names in extras.EXTRAS.items():
        dists = _extra(extra)
        for name in names:
            assert _dists_of(name), f"{name} (zoo.extras.EXTRAS[{extra!r}]) is not installed: run `make install`"
            assert _allowed(name, dists), f"pyproject.toml's extra {extra!r} lacks the distribution of {name}"
        provided = set().union(*(_dists_of(n) for n in names))
        assert dists <= provided, f"extra {extra!r} lists {sorted(dists - provided)}, absent from zoo.extras.EXTRAS"
        assert not dists & _core(), f"extra {extra!r} repeats core requirements {sorted(dists & _core())}"
    assert _extra("all") == set().union(*(_extra(e) for e in extras.EXTRAS)), "zoo[all] must be every extra's union"
    assert {"pytest", "ruff"} <= _extra("test")


def test_not_in_extras_packages_are_in_no_requirement():
    every = _core() | set().union(*(_extra(e) for e in _project()["optional-dependencies"]))
    for name in extras.NOT_IN_EXTRAS:
        assert _norm(extras.DISTRIBUTIONS.get(name, name)) not in every


# ----------------------------------------------------------------------------------------------- the imports
@pytest.mark.parametrize("method", METHODS)
def test_import_time_needs_only_core_and_the_methods_extra(method):
    """What importing the method's module and its configs' classes imports (a core install + the extra)."""
    allowed = _allowed_dists(method)
    bad = {
        top: sorted(where)
        for top, where in _third_party(set(_starts(method)), follow_functions=False).items()
        if not _allowed(top, allowed)
    }
    assert not bad, f"{method} (extra {extras.METHOD_EXTRA[method]!r}) imports outside core + its extra: {bad}"


@pytest.mark.parametrize("method", METHODS)
def test_runtime_needs_only_core_and_the_methods_extra(method):
    """Also the imports inside functions (what fit / test / figures need)."""
    allowed = _allowed_dists(method)
    bad = {}
    for top, where in _third_party(set(_starts(method)), follow_functions=True).items():
        if _allowed(top, allowed) or top in extras.NOT_IN_EXTRAS:
            continue
        where = {m for m in where if top not in OPTIONAL_BRANCHES.get(m, {})}
        if where:
            bad[top] = sorted(where)
    assert not bad, f"{method} (extra {extras.METHOD_EXTRA[method]!r}) needs packages outside core + its extra: {bad}"


def test_optional_branches_name_an_extra():
    for module, packages in OPTIONAL_BRANCHES.items():
        assert _file_of(module) is not None, module
        for package in packages:
            assert extras.extra_for(package) is not None


def test_core_methods_need_no_extra():
    assert {m for m, e in extras.METHOD_EXTRA.items() if e is None} == {"emo", "tinymim"}


def test_import_zoo_imports_no_optional_package():
    code = (
        "import json, sys, zoo\n"
        "assert zoo.list_models('emo*')\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    optional = set().union(*extras.EXTRAS.values()) | set(extras.NOT_IN_EXTRAS)
    assert not loaded & optional, f"`import zoo; zoo.list_models()` imported optional packages {loaded & optional}"


# ----------------------------------------------------------------------------------------------- the message
def _block(monkeypatch, *packages):
    """Simulate a core install without ``packages``: importing them raises ModuleNotFoundError."""
    for name in list(sys.modules):
        if name.split(".")[0] in packages:
            monkeypatch.delitem(sys.modules, name)
    for package in packages:
        monkeypatch.setitem(sys.modules, package, None)


def _forget(monkeypatch, prefix):
    for name in list(sys.modules):
        if name == prefix or name.startswith(prefix + "."):
            monkeypatch.delitem(sys.modules, name)


def _assert_one_line(msg: str, extra: str):
    assert "\n" not in msg and f"pip install 'zoo[{extra}]'" in msg, msg


def test_import_class_of_a_method_without_its_extra(monkeypatch):
    from zoo import registry

    _block(monkeypatch, "torch_geometric")
    _forget(monkeypatch, "zoo.models.reliant")
    with pytest.raises(UserError) as e:
        registry.import_class("zoo.models.reliant.module.ReliantModule")
    _assert_one_line(str(e.value), "graph")
    assert "torch_geometric" in str(e.value)


def test_create_without_the_extra(monkeypatch):
    import zoo

    _block(monkeypatch, "torch_geometric")
    _forget(monkeypatch, "zoo.models.ccgc")
    with pytest.raises(UserError) as e:
        zoo.create("ccgc-cora")
    _assert_one_line(str(e.value), "graph")


def test_import_class_of_a_module_that_imports_a_missing_package(monkeypatch, tmp_path):
    """A fresh module whose import needs a missing optional package (webdataset: zoo[text])."""
    from zoo import registry

    (tmp_path / "needs_webdataset.py").write_text("import webdataset\n\n\nclass Reader:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _block(monkeypatch, "webdataset")
    _forget(monkeypatch, "needs_webdataset")
    with pytest.raises(UserError) as e:
        registry.import_class("needs_webdataset.Reader")
    _assert_one_line(str(e.value), "text")
    assert str(e.value).startswith("needs_webdataset.Reader: webdataset is not installed")


def test_import_class_keeps_other_import_errors(monkeypatch):
    from zoo import registry

    with pytest.raises(ImportError, match="cannot import 'no_such_module_zoo'"):
        registry.import_class("no_such_module_zoo.Thing")


def test_cli_error_path(monkeypatch, capsys):
    """The `zoo` command's error path (zoo.cli.report_user_error): also when wrapped, e.g. by jsonargparse."""
    from zoo.cli import report_user_error

    _block(monkeypatch, "av")
    try:
        importlib.import_module("av")
    except ModuleNotFoundError as missing:
        try:
            raise RuntimeError("while instantiating the data module") from missing
        except RuntimeError as wrapped:
            assert report_user_error("fit", wrapped) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("zoo fit: error: av is not installed"), err
    _assert_one_line(err.strip(), "video")
    unknown = ModuleNotFoundError("No module named 'no_such_module_zoo'", name="no_such_module_zoo")
    assert extras.missing_in_chain(unknown) is None and report_user_error("fit", unknown) is None  # a bug: traceback
    with_user_error = UserError("NuScenesDetection: ...")
    with_user_error.__cause__ = ModuleNotFoundError("No module named 'av'", name="av")
    assert extras.missing_in_chain(with_user_error) is None  # the UserError's own line is shown


def test_installed_package_is_not_a_missing_extra():
    """A missing submodule of an installed package (a broken or too old install) keeps its own error."""
    err = ModuleNotFoundError("No module named 'numpy.no_such_submodule'", name="numpy.no_such_submodule")
    assert extras.missing_message(err) is None


def test_the_methods_extra_is_preferred(monkeypatch):
    _block(monkeypatch, "transformers")
    err = ModuleNotFoundError("No module named 'transformers'", name="transformers")
    _assert_one_line(extras.missing_message(err, "zoo.models.simvtp.model.SimVTP"), "video")
    _assert_one_line(extras.missing_message(err, "zoo.models.mmc_coref.module.MMCCorefModule"), "text")
    assert extras.extra_for("matplotlib") == "figures"


def test_nuscenes_devkit_message(monkeypatch):
    _block(monkeypatch, "nuscenes")
    err = ModuleNotFoundError("No module named 'nuscenes'", name="nuscenes")
    with pytest.raises(UserError) as e, extras.missing_extra_as_user_error("NuScenesDetection"):
        raise err
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("NuScenesDetection: nuscenes-devkit is not installed")
    assert "pip install --no-deps 'nuscenes-devkit==1.2.0'" in msg
