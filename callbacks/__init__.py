"""Lightning callbacks of zoo; installed as ``zoo.callbacks``. Names resolve lazily."""

from __future__ import annotations

import importlib

_LAZY = {
    "EMA": "ema",
    "HubExport": "hub_export",
    "FusedKernels": "fused_kernels",
    "LatestBestCheckpoint": "checkpoint",
    "PredictionFigures": "figures",
}
__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
