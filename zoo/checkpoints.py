"""Weights in and out of a network: Lightning checkpoints read safely, ``module.model``'s state taken from them,
safetensors files read, and a strict load with one error that lists every problem.

Nothing here unpickles arbitrary data: checkpoints are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path

from zoo.errors import UserError

__all__ = [
    "WeightsMismatchError",
    "read_checkpoint",
    "model_state_dict",
    "read_model_state",
    "read_safetensors",
    "load_weights_strict",
]


class WeightsMismatchError(RuntimeError):
    """The weights do not fit the model (missing, unexpected or differently shaped tensors)."""


def read_checkpoint(path: str | Path) -> dict:
    """A Lightning ``.ckpt`` read safely (``weights_only=True``)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError/RuntimeError with long messages
        raise ValueError(
            f"{path} could not be read as a weights-only Lightning checkpoint ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}). Only plain tensors and Python values are accepted."
        ) from e


def model_state_dict(ckpt: dict, path: str | Path = "the checkpoint") -> dict:
    """The ``module.model`` weights of a Lightning checkpoint read with :func:`read_checkpoint`: its ``state_dict``
    entries under ``model.``, prefix stripped."""
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise UserError(f"{path} has no 'state_dict': not a Lightning checkpoint")
    return {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}


def read_model_state(path: str | Path, what: str = "a zoo LightningModule", fix: str = "") -> dict:
    """The ``module.model`` weights of the Lightning checkpoint at ``path`` (:func:`read_checkpoint` then
    :func:`model_state_dict`); a checkpoint with no ``model.*`` weights is a one-line error saying it is not a
    checkpoint of ``what`` (``fix``: what to give instead, appended)."""
    ckpt = read_checkpoint(path)
    has_state = isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict)
    state = model_state_dict(ckpt, path) if has_state else {}
    if not state:
        raise UserError(f"{path} holds no 'model.*' weights: not a checkpoint of {what}" + (f"; {fix}" if fix else ""))
    return state


def read_safetensors(path: str | Path) -> dict:
    """A ``.safetensors`` file as a dict of tensors, with a one-line error when it does not read."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable safetensors file ({e}); re-download or re-export it.") from e


def load_weights_strict(model, state: dict, source: str) -> None:
    """``model.load_state_dict(state, strict=True)`` with one error that lists every problem."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(own[k].shape) != tuple(state[k].shape)
    )
    if missing or unexpected or shapes:

        def few(xs):
            return ", ".join(xs[:8]) + (f" ... (+{len(xs) - 8} more)" if len(xs) > 8 else "")

        lines = [f"weights from {source} do not fit {type(model).__name__}:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {few(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {few(unexpected)}")
        if shapes:
            lines.append(f"  shape mismatches ({len(shapes)}): {few(shapes)}")
        lines.append(
            "  Is this a checkpoint of another model or size? Check config.json's 'name'/'init_args', or convert "
            "official weights with zoo.models.<method>.convert.convert_state_dict."
        )
        raise WeightsMismatchError("\n".join(lines))
    model.load_state_dict(state, strict=True)
