"""zoo: a PyTorch Lightning model zoo.

Public API (stable): ``list_models``, ``create``, ``load``, ``registry``, ``__version__``.
Importing ``zoo`` imports nothing heavy; models, Lightning and the Hub client are imported on use.
"""

from __future__ import annotations

from zoo import registry  # light: dataclasses only
from zoo.version import __version__

__all__ = ["__version__", "list_models", "create", "load", "registry"]


def list_models(pattern: str = "*", pretrained: bool | None = None, exclude: str | None = None) -> list[str]:
    """Registered model names matching ``pattern`` (fnmatch wildcards), e.g. ``zoo.list_models("emo*")``."""
    return registry.list_models(pattern, pretrained=pretrained, exclude=exclude)


def create(name: str, pretrained: bool = False, **init_overrides):
    """Build the LightningModule of a registered model (eval mode); ``pretrained=True`` loads its weights."""
    from zoo.loading import create as _create

    return _create(name, pretrained=pretrained, **init_overrides)


def load(source: str, **init_overrides):
    """Load a LightningModule with weights (eval mode) from a registry name, ``hf-hub:org/name[@rev]``,
    ``org/name``, ``local-dir:PATH`` or an existing folder."""
    from zoo.loading import load as _load

    return _load(source, **init_overrides)
