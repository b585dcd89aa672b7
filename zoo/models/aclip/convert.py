"""A-CLIP checkpoints in the release's layout -> zoo state_dicts (``microsoft/A-CLIP:models.py``, ``main.py``).

The authors released no weights, but their ``main.py`` writes ``checkpoint.pt`` / ``checkpoint_best.pt`` with
``utils.save_on_master({"epoch", "state_dict", "optimizer", "scaler", "best_acc", "args"})``: ``state_dict`` is the
DDP-wrapped ``ACLIP``'s (``module.`` prefix), ``args`` an ``argparse.Namespace``. :func:`read_official` reads such a
file with :func:`zoo.convert.read_release` (tensors, plain containers, ``argparse.Namespace`` and numpy values only)
and converts it strictly.

The release's names (``ACLIP`` / ``CLIP`` / ``MaskVisionTransformer`` on timm 0.5.4) -> zoo's :class:`ACLIP`:

================================  ==========================================
release                           zoo
================================  ==========================================
``visual.*``, ``visual_ema.*``    same (timm ViT names: ``cls_token``, ``pos_embed``, ``patch_embed.proj``,
                                  ``blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``)
``token_embedding.weight``        ``text.token_embedding.weight``
``positional_embedding``          ``text.positional_embedding``
``transformer.resblocks.*``       ``text.transformer.resblocks.*`` (``ln_1``, ``attn.in_proj_*``, ``attn.out_proj``,
                                  ``ln_2``, ``mlp.c_fc``, ``mlp.c_proj``: the same names in open_clip)
``ln_final.*``                    ``text.ln_final.*``
``text_projection``               ``text.text_projection``
``transformer_e.resblocks.*``     ``text_transformer_ema.resblocks.*``
``image_projection_e``            ``image_projection_ema``
``text_projection_e``             ``text_projection_ema``
``im_proj_byol.*``                ``byol_projector.*``
``im_pred_byol.*``                ``byol_predictor.*``
``im_proj_byol_e.*``              ``byol_projector_ema.*``
``image_mlp.*``, ``image_projection``, ``logit_scale``   same
================================  ==========================================

Any other key is refused (a file of another method or version); missing keys and shapes are checked when the
result is loaded (:func:`zoo.hub.load_weights_strict`). Command line::

    python -m zoo.models.aclip.convert output/checkpoint_best.pt aclip-vit-b16 out/aclip-vit-b16
"""

from __future__ import annotations

from pathlib import Path

from zoo import convert as _convert
from zoo.errors import UserError

__all__ = ["convert_state_dict", "to_official_state_dict", "read_official", "load_official", "main"]

# release prefix -> zoo prefix; the longest matching release prefix wins (``transformer_e.`` before ``transformer.``)
_RENAMES = (
    ("visual.", "visual."),
    ("visual_ema.", "visual_ema."),
    ("image_mlp.", "image_mlp."),
    ("token_embedding.", "text.token_embedding."),
    ("transformer.", "text.transformer."),
    ("ln_final.", "text.ln_final."),
    ("transformer_e.", "text_transformer_ema."),
    ("im_proj_byol.", "byol_projector."),
    ("im_pred_byol.", "byol_predictor."),
    ("im_proj_byol_e.", "byol_projector_ema."),
)
_EXACT = {
    "positional_embedding": "text.positional_embedding",
    "text_projection": "text.text_projection",
    "image_projection": "image_projection",
    "logit_scale": "logit_scale",
    "image_projection_e": "image_projection_ema",
    "text_projection_e": "text_projection_ema",
}


def _zoo_key(key: str) -> str | None:
    if key in _EXACT:
        return _EXACT[key]
    hits = [(old, new) for old, new in _RENAMES if key.startswith(old)]
    if not hits:
        return None
    old, new = max(hits, key=lambda p: len(p[0]))
    return new + key[len(old) :]


def convert_state_dict(official: dict) -> dict:
    """A release checkpoint (``main.py``'s saved dict, or its ``"state_dict"``) -> zoo :class:`ACLIP` keys.

    Strips DDP's ``module.`` prefix and renames per the module docstring; a key the release's ``ACLIP`` does not
    have is a :class:`~zoo.errors.UserError`. Tensors are shared, not copied."""
    state = official.get("state_dict", official) if isinstance(official, dict) else official
    if not isinstance(state, dict) or not state:
        raise UserError("not an A-CLIP checkpoint: expected main.py's saved dict with a 'state_dict' of tensors")
    out, unknown = {}, []
    for key, value in state.items():
        key = key[len("module.") :] if key.startswith("module.") else key
        new = _zoo_key(key)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        raise UserError(
            f"not an A-CLIP (microsoft/A-CLIP models.py ACLIP) checkpoint: {len(unknown)} keys the "
            f"release does not have, e.g. {sorted(unknown)[:5]}; convert only main.py's checkpoint.pt"
        )
    return out


def to_official_state_dict(state: dict) -> dict:
    """The inverse of :func:`convert_state_dict`: zoo keys -> the release's names (no ``module.`` prefix)."""
    inverse_exact = {v: k for k, v in _EXACT.items()}
    out = {}
    for key, value in state.items():
        if key in inverse_exact:
            out[inverse_exact[key]] = value
            continue
        hits = [(old, new) for old, new in _RENAMES if key.startswith(new)]
        if not hits:
            raise UserError(f"{key!r} is not a key of zoo's A-CLIP network")
        old, new = max(hits, key=lambda p: len(p[1]))
        out[old + key[len(new) :]] = value
    return out


def read_official(path: str | Path) -> dict:
    """Read a release checkpoint safely (:func:`zoo.convert.read_release`) and convert it to zoo keys."""
    return _convert.read_official(path, convert_state_dict, "a microsoft/A-CLIP main.py run (no weights released)")


def load_official(path: str | Path, name: str):
    """Build the registry entry ``name`` and load a release checkpoint into it strictly."""
    return _convert.load_official(path, name, read_official)


def main(argv: list[str] | None = None) -> int:
    return _convert.converter_main(argv, load_official, "A-CLIP", "aclip-vit-b16, aclip-vit-l16, aclip-vit-s16")


if __name__ == "__main__":
    raise SystemExit(main())
