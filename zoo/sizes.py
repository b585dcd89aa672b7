"""The size protocol: each method states its published sizes once, in ``zoo/models/<method>/sizes.py``.

That file is plain data (no torch): ``SIZES`` maps a size name (``"b16"``, ``"emo_1m"``, ``"voxel0075-vov"``) to the
keyword arguments of the method's network constructor (``model.py``), and ``DEFAULT`` names the default size. The
registry entries (``__init__.py``) and configs name a size; the LightningModule takes ``size`` plus ``net`` (a dict of
overrides of the network's arguments, for ablations, small demos and the tests' ``tiny_overrides``) next to its
objective and optimiser arguments, and builds the network from :func:`net_args`. Nothing else restates a size.

Data follows the model: a module's :meth:`data_config` (see :func:`data_config`) names the preprocessing facts its
network fixes (image size, frames, context length, point-cloud range, ...); a data module leaves such an argument
``None`` and reads it from the attached module in ``setup`` (:func:`follow_model`), as timm's ``resolve_data_config``
and open_clip's model-driven transforms do. A value set in both places must agree; the error names both.

This module imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zoo.errors import UserError

__all__ = ["net_args", "model_data_config", "follow_model"]


def net_args(
    sizes: Mapping[str, Mapping[str, Any]],
    size: str,
    net: Mapping[str, Any] | None = None,
    where: str = "",
    allowed: set[str] | None = None,
) -> dict[str, Any]:
    """The network's constructor arguments: ``sizes[size]`` updated with the overrides ``net``.

    ``allowed`` (the constructor's argument names) refuses an override the network does not take, in one line.
    """
    where = f"{where}: " if where else ""
    if size not in sizes:
        raise UserError(
            f"{where}unknown size {size!r}; choose one of {', '.join(sorted(sizes))} (model.init_args.size)"
        )
    net = dict(net or {})
    if allowed is not None:
        bad = sorted(set(net) - set(allowed))
        if bad:
            raise UserError(
                f"{where}model.init_args.net has {', '.join(map(repr, bad))}, which the network does not "
                f"take; its arguments are {', '.join(sorted(allowed))}"
            )
    return {**sizes[size], **net}


def model_data_config(datamodule) -> dict[str, Any]:
    """``data_config()`` of the LightningModule attached with ``datamodule`` to one trainer (``{}`` when there is
    none, or the module states nothing): what the data module's ``None`` arguments follow."""
    trainer = getattr(datamodule, "trainer", None)
    module = getattr(trainer, "lightning_module", None) if trainer is not None else None
    hook = getattr(module, "data_config", None)
    return dict(hook() or {}) if callable(hook) else {}


def follow_model(datamodule, name: str, value: Any, model_value: Any) -> Any:
    """A data argument that follows the model: ``value`` when set (it must then equal the model's), else the model's.

    ``model_value`` is what the attached LightningModule's ``data_config()`` gives (``None`` when no module is
    attached or it does not fix this fact); with neither set, a one-line error says to set ``data.init_args.<name>``.
    """
    where = type(datamodule).__name__
    if value is None:
        if model_value is None:
            raise UserError(f"{where}: {name} is not set and no attached model fixes it; set data.init_args.{name}")
        return model_value
    if model_value is not None and _norm(value) != _norm(model_value):
        raise UserError(
            f"{where}: data.init_args.{name} is {value!r} but the model was built for {model_value!r}; "
            f"leave data.init_args.{name} unset to follow the model, or change one of them"
        )
    return value


def _norm(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v
