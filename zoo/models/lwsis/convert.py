"""LWSIS / AdelaiDet CondInst checkpoints (detectron2 layout) -> zoo's :class:`~zoo.models.lwsis.model.CondInst`.

Release formats (``Serenos/LWSIS`` trains with detectron2's ``DefaultTrainer``; both are read as plain data, nothing in
them runs):

- a trained ``.pth`` (detectron2 ``Checkpointer.save``): ``torch.save({"model": state_dict, "optimizer": ...,
  "scheduler": ..., "iteration": int})``, read with :func:`zoo.convert.read_release` (``weights_only=True``);
- a model-zoo ``.pkl``: a raw pickle ``{"model": {name: numpy array}, "__author__": str, ...}``, read with
  :class:`zoo.safe_pickle.RestrictedUnpickler` admitting only numpy's array globals.

Key layout (the official module definitions: detectron2 ``ResNet`` + AdelaiDet ``build_fcos_resnet_fpn_backbone``,
``FCOSHead``, ``MaskBranch``, ``CondInst.controller``; ``Base-BoxInst-nuscenes.yaml``), -> zoo:

- ``backbone.bottom_up.stem.conv1[.norm]`` -> ``backbone.conv1`` / ``backbone.bn1``;
  ``backbone.bottom_up.res{s}.{i}.conv{k}[.norm]`` -> ``backbone.layer{s-1}.{i}.conv{k}`` / ``.bn{k}``;
  ``...shortcut[.norm]`` -> ``...downsample.0`` / ``.1`` (FrozenBN: weight, bias, running mean / var);
- ``backbone.fpn_lateral{3,4,5}`` / ``fpn_output{3,4,5}`` -> ``fpn.inner_blocks.{0,1,2}.0`` / ``fpn.layer_blocks.*.0``;
  ``backbone.top_block.p6`` / ``p7`` -> ``fpn.extra_blocks.p6`` / ``p7``;
- ``proposal_generator.fcos_head.{cls_tower,bbox_tower,cls_logits,bbox_pred,ctrness}`` -> ``head.*`` (same indices),
  ``...scales.{l}.scale`` (shape [1]) -> ``head.scales.{l}.scale`` (a scalar); ``controller`` -> ``head.controller``;
- ``mask_branch.*`` -> ``mask_branch.*``; ``mask_head.sizes_of_interest`` is checked against zoo's, ``mask_head._iter``
  (a training counter) is dropped.

Input normalisation: detectron2's MSRA models take BGR images minus ``PIXEL_MEAN`` with ``PIXEL_STD`` = 1 (the
release's config); zoo feeds RGB divided by its std (:data:`~zoo.models.lwsis.model.PIXEL_STD`). The stem's first
convolution (no bias) is rewritten exactly for that: its input channels reversed (BGR -> RGB) and multiplied by zoo's
std. Any other key (a share tower, a semantic-loss head) is refused by name.

``python -m zoo.models.lwsis.convert CHECKPOINT NAME OUT_DIR`` writes a zoo Hub folder.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from zoo.errors import UserError

_WHERE = "LWSIS / BoxInst checkpoints (detectron2 .pth or model-zoo .pkl; Serenos/LWSIS publishes none)"
_NAMES = "lwsis-boxinst-r50 | lwsis-boxinst-r101"
RELEASE_PIXEL_STD = (1.0, 1.0, 1.0)  # detectron2 MSRA default, BGR order

_RULES = (
    (r"backbone\.bottom_up\.stem\.conv1\.weight", "backbone.conv1.weight"),
    (r"backbone\.bottom_up\.stem\.conv1\.norm\.(\w+)", r"backbone.bn1.\1"),
    (
        r"backbone\.bottom_up\.res(\d)\.(\d+)\.conv(\d)\.weight",
        lambda m: f"backbone.layer{int(m[1]) - 1}.{m[2]}.conv{m[3]}.weight",
    ),
    (
        r"backbone\.bottom_up\.res(\d)\.(\d+)\.conv(\d)\.norm\.(\w+)",
        lambda m: f"backbone.layer{int(m[1]) - 1}.{m[2]}.bn{m[3]}.{m[4]}",
    ),
    (
        r"backbone\.bottom_up\.res(\d)\.(\d+)\.shortcut\.weight",
        lambda m: f"backbone.layer{int(m[1]) - 1}.{m[2]}.downsample.0.weight",
    ),
    (
        r"backbone\.bottom_up\.res(\d)\.(\d+)\.shortcut\.norm\.(\w+)",
        lambda m: f"backbone.layer{int(m[1]) - 1}.{m[2]}.downsample.1.{m[3]}",
    ),
    (r"backbone\.fpn_lateral([345])\.(weight|bias)", lambda m: f"fpn.inner_blocks.{int(m[1]) - 3}.0.{m[2]}"),
    (r"backbone\.fpn_output([345])\.(weight|bias)", lambda m: f"fpn.layer_blocks.{int(m[1]) - 3}.0.{m[2]}"),
    (r"backbone\.top_block\.(p6|p7)\.(weight|bias)", r"fpn.extra_blocks.\1.\2"),
    (
        r"proposal_generator\.fcos_head\.((?:cls|bbox)_tower\.\d+|cls_logits|bbox_pred|ctrness)\.(weight|bias)",
        r"head.\1.\2",
    ),
    (r"proposal_generator\.fcos_head\.scales\.(\d)\.scale", r"head.scales.\1.scale"),
    (r"controller\.(weight|bias)", r"head.controller.\1"),
    (r"mask_branch\.((?:refine|tower)\.[\w.]+)", r"mask_branch.\1"),
)
_DROPPED = ("mask_head._iter",)


def _unwrap(official: dict) -> dict:
    state = official.get("model", official) if isinstance(official, dict) else official
    if not isinstance(state, dict):
        raise UserError(f"not a detectron2 checkpoint: 'model' holds a {type(state).__name__}, not a state_dict")
    out = {}
    for k, v in state.items():
        k = k[len("module.") :] if k.startswith("module.") else k
        if not torch.is_tensor(v):
            try:
                v = torch.as_tensor(v)  # model-zoo .pkl: numpy arrays
            except (TypeError, ValueError, RuntimeError):
                raise UserError(f"checkpoint entry {k!r} is a {type(v).__name__}, not an array") from None
        out[k] = v
    return out


def convert_state_dict(official: dict, pixel_std=RELEASE_PIXEL_STD, bgr: bool = True) -> dict:
    """An official CondInst / BoxInst / LWSIS state_dict (or a checkpoint dict holding it under ``"model"``) -> zoo
    ``module.model`` keys. ``pixel_std`` / ``bgr``: the normalisation the checkpoint was trained with (release:
    std 1, BGR), folded into the stem convolution. Unknown keys raise :class:`~zoo.errors.UserError`."""
    from zoo.models.lwsis.model import PIXEL_STD, SIZES_OF_INTEREST

    out, unknown = {}, []
    for k, v in _unwrap(official).items():
        if k in _DROPPED:
            continue
        if k == "mask_head.sizes_of_interest":
            want = [*SIZES_OF_INTEREST, SIZES_OF_INTEREST[-1] * 2]
            if v.tolist() != want:
                raise UserError(
                    f"mask_head.sizes_of_interest is {v.tolist()}, zoo's CondInst uses {want} (FCOS "
                    "SIZES_OF_INTEREST [64, 128, 256, 512]): a checkpoint of another configuration"
                )
            continue
        for pattern, repl in _RULES:
            m = re.fullmatch(pattern, k)
            if m:
                out[m.expand(repl) if isinstance(repl, str) else repl(m)] = v
                break
        else:
            unknown.append(k)
    if unknown:
        raise UserError(
            f"{len(unknown)} checkpoint key(s) have no place in zoo's CondInst: {unknown[:4]} (a share "
            "tower, semantic-loss head or another architecture is not supported)"
        )
    for lvl in range(5):
        k = f"head.scales.{lvl}.scale"
        if k in out:
            out[k] = out[k].reshape(())
    w = out.get("backbone.conv1.weight")
    if w is not None:
        if bgr:
            w = w.flip(1)
        like = {"dtype": w.dtype, "device": w.device}
        scale = torch.tensor(PIXEL_STD, **like) / torch.tensor(pixel_std, **like)
        out["backbone.conv1.weight"] = w * scale[None, :, None, None]
    return out


def _read_model_zoo_pickle(path: Path) -> dict:
    """A detectron2 model-zoo ``.pkl`` through the restricted unpickler: numpy arrays and dtypes only."""
    from zoo.safe_pickle import RestrictedUnpickler, numpy_globals

    class Reader(RestrictedUnpickler):
        allowed = numpy_globals()
        refusal = "a detectron2 model-zoo .pkl holds only numpy arrays ({'model': {name: array}, '__author__'})"
        error = UserError

    raw = Reader.load_file(path)
    if not isinstance(raw, dict) or "model" not in raw:
        raise UserError(f"{path}: not a detectron2 model-zoo pickle (no 'model' entry)")
    return raw


def read_release_checkpoint(path: str | Path) -> dict:
    """The raw release dict of ``path``: ``.pkl`` through the numpy-only unpickler, anything else through
    :func:`zoo.convert.read_release`."""
    path = Path(path)
    if path.suffix == ".pkl":
        if not path.is_file():
            raise FileNotFoundError(f"official checkpoint {path} does not exist ({_WHERE})")
        return _read_model_zoo_pickle(path)
    from zoo.convert import read_release

    return read_release(path, _WHERE)


def read_official(path: str | Path) -> dict:
    """An official ``.pth`` / ``.pkl`` -> zoo keys (:func:`convert_state_dict` with the release's normalisation)."""
    return convert_state_dict(read_release_checkpoint(path))


def load(checkpoint: str, name: str):
    from zoo.convert import load_official

    return load_official(checkpoint, name, read_official)


def main(argv: list[str] | None = None) -> int:
    from zoo.convert import converter_main

    return converter_main(argv, load, "LWSIS", _NAMES)


if __name__ == "__main__":
    raise SystemExit(main())
