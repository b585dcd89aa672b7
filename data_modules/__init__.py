"""LightningDataModules, one file per dataset family; installed as ``zoo.data_modules``.

Names resolve lazily so that ``class_path: zoo.data_modules.ImageNetDataModule`` works without importing
every dataset family.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "ImageNetDataModule": "images",
    "GraphClusteringDataModule": "graphs",
    "FairGraphDataModule": "fairness_graphs",
    "CTRDataModule": "ctr",
    "MMCDataModule": "coref",
    "CaptionFeaturesDataModule": "captioning",
    "VideoFramesDataModule": "captioning",
    "NuScenesMultiViewDataModule": "multiview",
    "NuScenesInstanceSegDataModule": "instance_seg",
    "VideoTextDataModule": "video",
    "ImageTextDataModule": "image_text",
    "KittiDataModule": "driving",
    "NuScenesDataModule": "driving",
    "WaymoDataModule": "driving",
    "SSDA3DDataModule": "domain_adaptation",
}
__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
