"""Official TinyMIM and MAE checkpoints -> zoo state_dicts (TinyMIM's README; MAE's ``models_vit.py`` key names).

The official files (``TinyMIM-PT-B.pth``, ``TinyMIM-FT-Tstar.pth``, MAE's ``mae_pretrain_vit_{base,large}.pth``,
MAE-style fine-tuned files) are ``torch.save`` dicts with the weights under ``"model"``, named like timm 0.3.2's ViT:
``cls_token``, ``pos_embed``, ``patch_embed.proj.*``, ``blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*``,
``norm.*`` (pre-training) or ``fc_norm.*`` + ``head.*`` (fine-tuned), and for TinyMIM*-T also ``dist_token``,
``head_dist.*`` and ``conv1x1.{0,1}.*`` (LayerNorm(192), Linear(192, 1280)). zoo's networks are timm
``VisionTransformer``s with the same names, except the T* projection, called ``neck`` here. MAE checkpoints that
still hold the decoder (``decoder_*``, ``mask_token``) are stripped to the encoder, the part TinyMIM uses.

Head counts are not stored in the weights: pick the registry entry (or ``teacher_heads``) that says them.

Command line (reads a file only as plain tensors: ``torch.load(weights_only=True)``)::

    python -m zoo.models.tinymim.convert TinyMIM-PT-B.pth tinymim-base out/tinymim-base
    zoo push out/tinymim-base zoo-models/tinymim-base

MAE's encoders are public at stable URLs (``zoo.models.tinymim.MAE_TEACHERS``); :func:`read_official` accepts such a
URL and keeps the downloaded file in the zoo cache (``zoo/convert.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

from zoo import convert as _convert
from zoo.errors import UserError

__all__ = ["convert_state_dict", "to_official_state_dict", "read_official", "load_official", "main"]

# official prefix -> zoo prefix (everything else keeps its name)
_RENAMES = (("conv1x1.0.", "neck.0."), ("conv1x1.1.", "neck.1."))
_DROP = re.compile(r"^(decoder_|decoder\.|mask_token$)")
# every name an official TinyMIM / MAE encoder file holds (after renaming); anything else is refused
_KNOWN = re.compile(
    r"^(cls_token|dist_token|pos_embed|patch_embed\.proj\.(weight|bias)"
    r"|blocks\.\d+\.(norm1|attn\.qkv|attn\.proj|norm2|mlp\.fc1|mlp\.fc2)\.(weight|bias)"
    r"|(norm|fc_norm|head|head_dist|neck\.0|neck\.1)\.(weight|bias))$"
)


def _unwrap(official: dict) -> dict:
    for key in ("model", "state_dict", "model_ema"):
        if key in official and isinstance(official[key], dict):
            return official[key]
    return official


def convert_state_dict(official: dict) -> dict:
    """An official TinyMIM / MAE checkpoint (the ``torch.load``-ed dict, or its ``"model"`` entry) -> zoo keys.

    Strips ``module.`` (DDP) prefixes and MAE's decoder, renames T*'s ``conv1x1`` to ``neck``; a key outside the
    MAE / TinyMIM ViT layout is a :class:`~zoo.errors.UserError` (strict; shapes and missing keys are checked when
    the result is loaded). Tensors are shared, not copied. The files are ``utils.save_model``'s (MAE / TinyMIM
    ``util/misc.py``): ``{"model", "optimizer", "epoch", "scaler", "args": argparse.Namespace}``, read by
    :func:`read_official` through :func:`zoo.convert.read_release`.
    """
    state = _unwrap(official)
    if not isinstance(state, dict) or not state:
        raise UserError("not a TinyMIM/MAE checkpoint: expected a dict of tensors (under 'model' in official files)")
    out = {}
    for key, value in state.items():
        if key.startswith("module."):
            key = key[len("module.") :]
        if _DROP.match(key):
            continue
        for old, new in _RENAMES:
            if key.startswith(old):
                key = new + key[len(old) :]
        out[key] = value
    unknown = sorted(k for k in out if not _KNOWN.match(k))
    if unknown:
        raise UserError(
            f"not a TinyMIM/MAE ViT checkpoint: {len(unknown)} keys outside the MAE/TinyMIM layout, e.g. "
            f"{unknown[:5]}; convert the file's 'model' entry of an official TinyMIM or MAE release"
        )
    if "pos_embed" not in out or not any(k.startswith("blocks.") for k in out):
        raise UserError(
            "not a TinyMIM/MAE ViT checkpoint: no 'pos_embed' or 'blocks.*' keys "
            f"(first keys: {sorted(state)[:5]}). Expected MAE-style names under 'model'."
        )
    return out


def to_official_state_dict(state: dict) -> dict:
    """The inverse of :func:`convert_state_dict` (decoder excepted): zoo keys -> official names, under ``"model"``."""
    out = {}
    for key, value in state.items():
        for old, new in _RENAMES:
            if key.startswith(new):
                key = old + key[len(new) :]
        out[key] = value
    return {"model": out}


def read_official(path: str | Path) -> dict:
    """Read an official checkpoint safely (plain tensors only) and convert it to zoo keys. ``path`` may be the
    https URL of an official file (``zoo.models.tinymim.MAE_TEACHERS``): it is downloaded once into the zoo cache."""
    if str(path).startswith(("https://", "http://")):
        return _convert.read_url(str(path), convert_state_dict)
    return _convert.read_official(path, convert_state_dict, "the official TinyMIM/MAE releases")


def load_official(path: str | Path, name: str):
    """Build the registry entry ``name`` and load an official checkpoint into it strictly."""
    return _convert.load_official(path, name, read_official)


def main(argv: list[str] | None = None) -> int:
    return _convert.converter_main(argv, load_official, "TinyMIM/MAE", "tinymim-base, tinymim-tiny-star, ...")


if __name__ == "__main__":
    raise SystemExit(main())
