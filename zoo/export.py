"""Exporting a trained LightningModule as a Hub folder (:mod:`zoo.hub_folder`) with its model card (:mod:`zoo.card`).

The export describes the module it holds: its class path and init args, its network's weights, and the preprocessing
its network was built for (:func:`preprocess_of`: the module's ``data_config()`` over the registry entry's); a
registry entry's card (its paper numbers and ours) goes only on a module that is that entry (:func:`check_name`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zoo import registry
from zoo.card import make_card
from zoo.hub_folder import FIGURE_NAME, check_export_target, read_figure, write_folder
from zoo.trust import build_module
from zoo.version import __version__

__all__ = ["export", "check_name", "class_path", "preprocess_of"]

_IMAGE_SIZE_KEYS = ("img_size", "image_size")  # data_config() keys that give the input images' side


def class_path(module) -> str:
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


def _init_args(module) -> dict[str, Any]:
    hp = dict(getattr(module, "hparams", {}) or {})
    hp = {k: v for k, v in hp.items() if not k.startswith("_")}
    json.dumps(hp)  # init args must be JSON-able; fail here, not at load time
    return hp


def _find_entry(module, name: str | None) -> registry.Entry | None:
    if name:
        return registry.get(name)
    cp, hp = class_path(module), _init_args(module)
    for e in registry.all_entries():
        if e.module == cp and all(hp.get(k) == v for k, v in e.init_args.items()):
            return e
    return None


def preprocess_of(module, entry: registry.Entry | None) -> dict[str, Any]:
    """The preprocessing an export of ``module`` states: the entry's (``Entry.preprocess``), with what the module's
    own ``data_config()`` fixes put over it (an image model trained at 64 px says 64, not the entry's 224). An image
    side (``img_size`` / ``image_size``) replaces the last two numbers of the entry's ``input_size``; a module without
    ``data_config`` gets the entry's preprocessing as it is."""
    pre = dict(entry.preprocess) if entry is not None else {}
    hook = getattr(module, "data_config", None)
    facts = dict(hook() or {}) if callable(hook) else {}
    for key in _IMAGE_SIZE_KEYS:
        side = facts.get(key)
        if side is not None and isinstance(pre.get("input_size"), (list, tuple)):
            facts.pop(key)
            hw = list(side) if isinstance(side, (list, tuple)) else [side, side]
            pre["input_size"] = [*list(pre["input_size"])[:-2], *hw]
    pre.update(facts)
    return pre


def export(
    module,
    out_dir: str | Path,
    name: str | None = None,
    our_metrics=None,
    overwrite: bool = False,
    extra_config: dict | None = None,
    figure: str | Path | None = None,
) -> Path:
    """Write ``module`` (a LightningModule) as a Hub folder: config.json, model.safetensors, README.md, and with
    ``figure`` (a PNG of the run's predictions) figure.png, which the card shows and config.json records.

    ``out_dir`` must be absent, empty, or (with ``overwrite``) an earlier zoo export; anything else is refused.
    ``extra_config``: more keys for config.json (e.g. the official file a conversion came from)."""
    check_export_target(out_dir, overwrite)  # before any work
    picture = read_figure(figure) if figure is not None else None
    entry = _find_entry(module, name)
    cfg = {
        "library": "zoo",
        "zoo_version": __version__,
        "name": entry.name if entry else None,
        "module": class_path(module),
        "init_args": _init_args(module),
        "preprocess": preprocess_of(module, entry),
        **(extra_config or {}),
    }
    cfg.pop("figure", None)
    if picture is not None:
        cfg["figure"] = FIGURE_NAME
    state = {k: v.detach().contiguous().cpu() for k, v in module.model.state_dict().items()}
    card = make_card(entry, cfg, our_metrics=our_metrics) if entry else make_card(None, cfg)
    if picture is not None:
        card.text = card.text.rstrip("\n") + f"\n\n## Predictions of this run\n\n![predictions]({FIGURE_NAME})\n"
    return write_folder(out_dir, cfg, state, str(card), picture, overwrite)


def check_name(module, name: str) -> registry.Entry:
    """``zoo export --name NAME``: the card of NAME (its paper numbers, ours, its recipe) may only go on a model that
    is that entry: the same LightningModule class, the entry's init args, the same tensor names and shapes."""
    import torch

    entry = registry.get(name)
    cp, hp = class_path(module), _init_args(module)
    fix = "Omit --name for a card without the entry's numbers, or name the entry this model was trained as."
    if cp != entry.module:
        raise ValueError(
            f"--name {entry.name}: this checkpoint holds a {cp}, but {entry.name} is a {entry.module}. {fix}"
        )
    missing = object()
    diffs = [
        f"{k}: {hp.get(k, '<unset>')!r} (entry: {v!r})" for k, v in entry.init_args.items() if hp.get(k, missing) != v
    ]
    if diffs:
        raise ValueError(f"--name {entry.name}: init args differ from the entry's: {'; '.join(diffs)}. {fix}")
    with torch.device("meta"):
        ref = build_module(entry.module, dict(entry.init_args), source=f"registry entry {entry.name}")
    ours = {k: tuple(v.shape) for k, v in module.model.state_dict().items()}
    want = {k: tuple(v.shape) for k, v in ref.model.state_dict().items()}
    if ours != want:
        bad = sorted(set(ours) ^ set(want)) + sorted(k for k in set(ours) & set(want) if ours[k] != want[k])
        raise ValueError(
            f"--name {entry.name}: the weights do not have the entry's architecture "
            f"({len(bad)} tensors differ, e.g. {', '.join(bad[:3])}). {fix}"
        )
    return entry
