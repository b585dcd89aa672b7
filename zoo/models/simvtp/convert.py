"""SimVTP / VideoMAE checkpoints -> zoo's SimVTP networks.

Key layouts (all read as plain tensors, ``torch.load(weights_only=True)`` / safetensors; nothing is unpickled):

- **official SimVTP pre-training** (``PretrainVisionTransformer`` of the release, weights on Google Drive, usually
  under ``"model"``): ``encoder.{patch_embed.proj, blocks.i.*, norm}``, ``decoder.{blocks.i.*, norm, head}``,
  ``encoder_to_decoder``, ``mask_token``, ``text_embeddings.*`` (BERT), ``text_cls``, ``vtm_head``. zoo keeps these
  names (:class:`~zoo.models.simvtp.model.SimVTPPretrainModel`); only BERT's ``position_ids`` buffer is dropped.
- **official VideoMAE pre-training** (MCG-NJU/VideoMAE ``checkpoint.pth``): the same ``encoder.*`` / ``decoder.*`` /
  ``encoder_to_decoder`` / ``mask_token`` keys without the text parts (SimVTP's released initialisation).
- **official SimVTP fine-tuned** (``DualVideoTextEncoder``): ``video_encoder.*`` and ``text_encoder.*``, each with
  ``patch_embed``, ``blocks``, ``fc_norm`` and ``text_embeddings``; the video copy's text embeddings and the text
  copy's tubelet embedding are never used and are dropped.
- **transformers VideoMAE** (``VideoMAEModel`` / ``VideoMAEForPreTraining``): ``[videomae.]embeddings.
  patch_embeddings.projection``, ``encoder.layer.i.{attention.attention.{query,key,value}, attention.output.dense,
  intermediate.dense, output.dense, layernorm_before, layernorm_after}``, ``layernorm``, and for pre-training
  ``decoder.decoder_layers.i.*``, ``decoder.{norm, head}``, ``encoder_to_decoder``, ``mask_token``
  (:func:`convert_videomae_hf`). Its separate q/k/v become one ``qkv`` weight with ``q_bias`` / ``v_bias``.

``python -m zoo.models.simvtp.convert CHECKPOINT NAME OUT_DIR`` converts an official file into a zoo Hub folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn

from zoo.errors import UserError

_WHERE = "official SimVTP weights: Google Drive links in github.com/mayuelala/SimVTP README"
_NAMES = "simvtp-base (pre-trained) | simvtp-base.msrvtt-ft (fine-tuned on MSR-VTT)"


def _unwrap(official: dict) -> dict:
    for key in ("model", "module", "state_dict"):
        if key in official and isinstance(official[key], dict):
            official = official[key]
            break
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in official.items() if torch.is_tensor(v)}


def _is_hf(state: dict) -> bool:
    return any(".attention.attention.query." in k or "patch_embeddings.projection" in k for k in state)


def _hf_layers(state: dict, src: str, dst: str) -> dict:
    """transformers ``VideoMAELayer`` keys under ``src.{i}.`` -> VideoMAE ``Block`` keys under ``dst.{i}.``."""
    out = {}
    ids = sorted({int(m.group(1)) for k in state for m in [re.match(re.escape(src) + r"\.(\d+)\.", k)] if m})
    simple = {
        "attention.output.dense": "attn.proj",
        "intermediate.dense": "mlp.fc1",
        "output.dense": "mlp.fc2",
        "layernorm_before": "norm1",
        "layernorm_after": "norm2",
    }
    for i in ids:
        s, d = f"{src}.{i}.", f"{dst}.{i}."
        a = s + "attention.attention."
        out[d + "attn.qkv.weight"] = torch.cat(
            [state[a + "query.weight"], state[a + "key.weight"], state[a + "value.weight"]]
        )
        if a + "query.bias" in state:
            out[d + "attn.q_bias"] = state[a + "query.bias"]
            out[d + "attn.v_bias"] = state[a + "value.bias"]
        for hf, ours in simple.items():
            for p in ("weight", "bias"):
                if s + f"{hf}.{p}" in state:
                    out[d + f"{ours}.{p}"] = state[s + f"{hf}.{p}"]
    return out


def convert_videomae_hf(state: dict) -> dict:
    """A transformers ``VideoMAEModel`` / ``VideoMAEForPreTraining`` state_dict -> SimVTP pre-training keys
    (``encoder.*``; with the pre-training decoder also ``decoder.*``, ``encoder_to_decoder``, ``mask_token``).
    Classification heads (``classifier``) are not part of SimVTP and are left out.

    A VideoMAE without the final ``layernorm`` (transformers' ``use_mean_pooling=True``, the default and the
    Kinetics fine-tuned checkpoints) is refused: its token outputs are not normalised, and SimVTP's encoder ends in
    a LayerNorm (``encoder.norm``, which the decoder and every SimVTP pass read) that no weights could make the
    identity, so a conversion would leave it at its initial values."""
    state = {k[len("videomae.") :] if k.startswith("videomae.") else k: v for k, v in state.items()}
    if any(k.startswith("encoder.layer.") for k in state) and "layernorm.weight" not in state:
        raise UserError(
            "this transformers VideoMAE has no final LayerNorm (config use_mean_pooling=True): SimVTP's "
            "encoder.norm would stay at its initial values; use a VideoMAE pre-training checkpoint "
            "(use_mean_pooling=False, e.g. MCG-NJU/videomae-base) or the official VideoMAE / SimVTP .pth"
        )
    out = {}
    for p in ("weight", "bias"):
        k = f"embeddings.patch_embeddings.projection.{p}"
        if k in state:
            out[f"encoder.patch_embed.proj.{p}"] = state[k]
        if f"layernorm.{p}" in state:
            out[f"encoder.norm.{p}"] = state[f"layernorm.{p}"]
        if f"decoder.norm.{p}" in state:
            out[f"decoder.norm.{p}"] = state[f"decoder.norm.{p}"]
            out[f"decoder.head.{p}"] = state[f"decoder.head.{p}"]
    out.update(_hf_layers(state, "encoder.layer", "encoder.blocks"))
    out.update(_hf_layers(state, "decoder.decoder_layers", "decoder.blocks"))
    for k in ("encoder_to_decoder.weight", "mask_token"):
        if k in state:
            out[k] = state[k]
    return out


def convert_state_dict(official: dict) -> dict:
    """An official checkpoint (SimVTP pre-training or fine-tuned, VideoMAE pre-training, or a transformers VideoMAE
    state_dict) -> zoo ``module.model`` keys: :class:`SimVTPPretrainModel` keys, or :class:`SimVTPDualEncoder` keys
    for a fine-tuned (``video_encoder.*`` / ``text_encoder.*``) file."""
    state = _unwrap(official)
    if _is_hf(state):
        return convert_videomae_hf(state)
    drop = ("position_ids", "token_type_ids")
    if any(k.startswith("video_encoder.") for k in state):
        return {
            k: v
            for k, v in state.items()
            if not k.endswith(drop)
            and not k.startswith(
                (
                    "video_encoder.text_embeddings.",
                    "text_encoder.patch_embed.",
                    "video_encoder.head",
                    "text_encoder.head",
                )
            )
            and not k.startswith(("video_encoder.norm.", "text_encoder.norm."))
        }
    return {k: v for k, v in state.items() if not k.endswith(drop) and not k.startswith("encoder.head.")}


def dual_from_pretraining(state: dict) -> dict:
    """Pre-training keys (zoo = official layout) -> the dual encoder's: both copies get ``encoder.blocks``, the video
    copy ``encoder.patch_embed``, the text copy ``text_embeddings`` (as ``run_simvtp_finetuning.py`` loads it:
    ``encoder.`` stripped, the final ``norm`` unused because the fine-tuning model pools into a new ``fc_norm``)."""
    out = {}
    for k, v in state.items():
        if k.startswith("encoder.blocks."):
            out["video_encoder." + k[len("encoder.") :]] = v
            out["text_encoder." + k[len("encoder.") :]] = v.clone()
        elif k.startswith("encoder.patch_embed."):
            out["video_encoder." + k[len("encoder.") :]] = v
        elif k.startswith("text_embeddings.") and not k.endswith(("position_ids", "token_type_ids")):
            out["text_encoder." + k] = v
    return out


# ----------------------------------------------------------------------------------------------- reading
def read_official(path: str | Path) -> dict:
    """An official ``.pth`` (plain tensors only) -> zoo keys (:func:`convert_state_dict`)."""
    from zoo.convert import read_official as _read

    return _read(path, convert_state_dict, _WHERE)


def _missing_file(source: str) -> bool:
    """``source`` names a file path (not a registry name or a prefixed source) that does not exist."""
    path = Path(str(source)).expanduser()
    return (
        not str(source).startswith(("hf:", "hf-hub:", "local-dir:"))
        and not path.exists()
        and ("/" in str(source) or path.suffix in (".pth", ".pt", ".bin", ".safetensors", ".ckpt"))
    )


def _read_any(source: str) -> dict:
    """zoo-keyed pre-training or dual weights from a ``.pth``/``.pt``/``.bin`` (official), ``.safetensors``, a
    Lightning ``.ckpt`` of a SimVTP module, a transformers VideoMAE folder / Hub name (``hf:`` prefix or a folder with
    a ``config.json`` of model_type videomae), or a zoo source (registry name, ``local-dir:``, ``hf-hub:``)."""
    path = Path(str(source)).expanduser()
    if _missing_file(source):
        raise UserError(
            f"{source}: no such checkpoint file (give an official VideoMAE / SimVTP .pth, a zoo .ckpt or "
            "safetensors file, an hf:NAME transformers VideoMAE or a zoo source)"
        )
    if path.is_file() and path.suffix in (".pth", ".pt", ".bin"):
        return read_official(path)
    if path.is_file() and path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return convert_state_dict(load_file(str(path)))
    if path.is_file() and path.suffix == ".ckpt":
        from zoo.hub import model_state_dict, read_checkpoint

        model = model_state_dict(read_checkpoint(path), path)
        if not model:
            raise UserError(f"{path} holds no 'model.*' weights: not a checkpoint of a zoo SimVTP module")
        return model
    hf_name = str(source)[3:] if str(source).startswith("hf:") else None
    if hf_name or (
        path.is_dir()
        and (path / "config.json").is_file()
        and json.loads((path / "config.json").read_text()).get("model_type") == "videomae"
    ):
        from transformers import VideoMAEForPreTraining, VideoMAEModel

        name = hf_name or str(path)
        try:
            net = VideoMAEForPreTraining.from_pretrained(name)
        except Exception:  # a VideoMAEModel-only folder (no decoder weights)
            net = VideoMAEModel.from_pretrained(name)
        return convert_videomae_hf(net.state_dict())
    import zoo

    return zoo.load(str(source), allowed_init_args=("init_from", "text_init", "pretrained")).model.state_dict()


def _load_matching(model: nn.Module, state: dict) -> tuple[list[str], list[str]]:
    """Load the keys whose shapes match (the release drops shape mismatches); -> (loaded, skipped) key lists."""
    own = model.state_dict()
    keep = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    model.load_state_dict(keep, strict=False)
    return sorted(keep), sorted(k for k in state if k not in keep)


def load_pretraining_init(model: nn.Module, init_from: str | None, text_init: str | None) -> str:
    """Initialise a :class:`SimVTPPretrainModel` as released: the video encoder (+ decoder) from a VideoMAE or
    SimVTP checkpoint (``init_from``), the text embeddings from a BERT model (``text_init``: a transformers folder or
    Hub name, e.g. ``bert-base-uncased``). Raises when nothing of the encoder fits. -> a one-line report."""
    parts = []
    if init_from:
        loaded, skipped = _load_matching(model, _read_any(init_from))
        if not any(k.startswith("encoder.blocks.") for k in loaded):
            raise UserError(
                f"init_from={init_from!r}: no encoder block weights fit this SimVTP model (skipped "
                f"{skipped[:4]}): is it a ViT of the same width and depth?"
            )
        parts.append(f"{len(loaded)} tensors from {init_from} ({len(skipped)} skipped)")
    if text_init:
        from transformers import AutoModel

        from zoo.text.encoders import resolve_encoder

        bert = AutoModel.from_pretrained(resolve_encoder(text_init))
        emb = {
            k: v for k, v in bert.embeddings.state_dict().items() if not k.endswith(("position_ids", "token_type_ids"))
        }
        model.text_embeddings.load_state_dict(emb, strict=True)
        parts.append(f"text embeddings from {text_init}")
    return "; ".join(parts)


def load_dual_from_pretraining(model: nn.Module, source: str) -> None:
    """Initialise a :class:`SimVTPDualEncoder` from pre-training weights (or from dual-encoder weights: a fine-tuned
    model to continue). A missing file, or a block or embedding weight that is missing or shaped differently, is a
    one-line :class:`~zoo.errors.UserError` naming it (shapes as checkpoint vs model)."""
    if _missing_file(source):
        raise UserError(
            f"pretrained={source!r}: the SimVTP pre-training checkpoint is missing; run the pre-training "
            "first (`zoo fit --config configs/simvtp.yaml` writes runs/simvtp-base/checkpoints/last.ckpt) "
            "or give an official SimVTP pre-training .pth"
        )
    state = _read_any(source)
    if not any(k.startswith("video_encoder.") for k in state):
        state = dual_from_pretraining(state)
    own = model.state_dict()
    needed = [k for k in own if ".blocks." in k or ".patch_embed." in k or ".text_embeddings." in k]
    missing = [k for k in needed if k not in state]
    shaped = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in needed
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    bad = shaped + [f"{k} missing" for k in missing]
    if bad:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise UserError(
            f"pretrained={source!r} does not fit the dual encoder: {'; '.join(bad[:3])}{more} (shapes: "
            "checkpoint vs model); give the width, depth, frames, image and vocabulary size of its "
            "pre-training run"
        )
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def load(checkpoint: str, name: str):
    from zoo.convert import load_official

    return load_official(checkpoint, name, read_official)


def main(argv: list[str] | None = None) -> int:
    from zoo.convert import converter_main

    return converter_main(argv, load, "SimVTP", _NAMES)


if __name__ == "__main__":
    raise SystemExit(main())
