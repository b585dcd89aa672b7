"""Restricted unpickling for the published datasets that ship as pickles (Planetoid ``ind.*`` files, mmdet3d / OpenPCDet
info files): only the globals a reader names may be referenced; any other global (a function that would run code) is
refused with an error that says what the file should hold."""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from pathlib import Path

_BUILTIN_TYPES = (
    "list",
    "dict",
    "tuple",
    "set",
    "frozenset",
    "bytearray",
    "bytes",
    "str",
    "int",
    "float",
    "complex",
    "bool",
    "slice",
)


def numpy_globals() -> dict[tuple[str, str], object]:
    """numpy arrays, scalars and dtypes under both module paths (pickles name numpy 1's ``numpy.core``)."""
    import numpy as np

    try:  # numpy >= 2 moved the private module
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    allowed: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = multiarray._reconstruct
        allowed[(mod, "scalar")] = multiarray.scalar
    return allowed


def builtin_globals(names: tuple[str, ...] = _BUILTIN_TYPES) -> dict[tuple[str, str], object]:
    """Builtin container / value types under Python 3's and Python 2's module names."""
    import builtins

    return {(mod, n): getattr(builtins, n) for n in names for mod in ("builtins", "__builtin__")}


class RestrictedUnpickler(pickle.Unpickler):
    """``find_class`` admits only ``allowed`` (``(module, name) -> object``); anything else raises ``error`` with
    ``"<source>: refusing to unpickle global <module>.<name>: <refusal>"``. ``encoding="latin1"``: Python-2 pickles
    (and protocol-2 files with numpy payloads) decode their byte strings losslessly."""

    allowed: dict[tuple[str, str], object] = {}
    refusal = "the file is not the expected dataset file (or was tampered with)"
    error: Callable[[str], Exception] = pickle.UnpicklingError

    def __init__(self, file, source: str = "<pickle>"):
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise self.error(f"{self._source}: refusing to unpickle global {module}.{name}: {self.refusal}") from None

    @classmethod
    def load_file(cls, path: str | Path):
        with open(path, "rb") as f:
            return cls(io.BufferedReader(f), source=str(path)).load()
