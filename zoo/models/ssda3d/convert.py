"""Official SSDA3D / OpenPCDet CenterPoint checkpoints -> zoo's :class:`zoo.models.ssda3d.model.SSDA3DDetector`.

File format: OpenPCDet's ``tools/train_utils/train_utils.py: checkpoint_state`` saved with ``torch.save``:
``{"epoch", "it", "model_state", "optimizer_state", "version"}`` (``yinjunbo/SSDA3D`` trains with that code); it is
read with :func:`zoo.convert.read_release` (``torch.load(weights_only=True)``, nothing in the file runs). A bare state
dict (``model_state`` alone) is accepted too.

Key layout (OpenPCDet ``Detector3DTemplate`` module names -> ours):

==========================================================  ==========================================
official                                                    zoo
==========================================================  ==========================================
``global_step`` (step counter buffer)                       dropped
``vfe.pfn_layers.{i}.{linear,norm}.*`` (DynamicPillarVFE)   ``vfe.pfn.{i}.{linear,norm}.*``
``backbone_3d.{stage}.{j}.conv{1,2}.bias`` (res blocks)     ``encoder.{stage}.{j}.bias{1,2}``
``backbone_3d.*`` (VoxelResBackBone8x)                      ``encoder.*``
``backbone_2d.*`` (BaseBEVBackbone)                         ``bev.*``
``dense_head.shared_conv.*``                                ``head.shared_conv.*``
``dense_head.heads_list.0.{name}.{j}.{k}.*``                ``head.heads.{name}.{3 j + k}.*``
``dense_head.heads_list.0.{name}.{j}.{weight,bias}``        ``head.heads.{name}.{3 j}.*`` (last conv)
==========================================================  ==========================================

Sparse-conv kernels: spconv 1.x stores ``(kD, kH, kW, in, out)``, spconv 2.x ``(out, kD, kH, kW, in)``; the layout is
told from the shapes (the one that matches ours), so checkpoints of either spconv generation load.
Only the single-head (one class group, ``CLASS_NAMES_EACH_HEAD: [['car']]``) CenterHead of SSDA3D's configs maps.

Command line::

    python -m zoo.models.ssda3d.convert checkpoint_epoch_20.pth ssda3d-voxel out/ssda3d-voxel
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from zoo import convert as _convert
from zoo.errors import UserError

__all__ = ["convert_key", "convert_state_dict", "read_checkpoint", "load_official", "main"]

_RULES = (
    (r"^vfe\.pfn_layers\.(\d+)\.(linear|norm)\.(.*)$", r"vfe.pfn.\1.\2.\3"),
    (r"^backbone_3d\.(conv\d)\.(\d+)\.conv([12])\.bias$", r"encoder.\1.\2.bias\3"),
    (r"^backbone_3d\.(.*)$", r"encoder.\1"),
    (r"^backbone_2d\.(.*)$", r"bev.\1"),
    (r"^dense_head\.shared_conv\.(.*)$", r"head.shared_conv.\1"),
    (r"^dense_head\.heads_list\.0\.(\w+)\.(\d+)\.(\d+)\.(.*)$", "HEAD_INNER"),
    (r"^dense_head\.heads_list\.0\.(\w+)\.(\d+)\.(weight|bias)$", "HEAD_LAST"),
)
_DROP = ("global_step",)


def convert_key(key: str) -> str | None:
    """One official key -> ours; None for a key that holds no parameter of ours (the step counter)."""
    if key in _DROP:
        return None
    for pattern, repl in _RULES:
        m = re.match(pattern, key)
        if not m:
            continue
        if repl == "HEAD_INNER":
            name, j, k, rest = m.groups()
            return f"head.heads.{name}.{3 * int(j) + int(k)}.{rest}"
        if repl == "HEAD_LAST":
            name, j, rest = m.groups()
            return f"head.heads.{name}.{3 * int(j)}.{rest}"
        return m.expand(repl)
    raise UserError(
        f"{key}: not a key of an OpenPCDet CenterPoint checkpoint with one head (vfe, backbone_3d, "
        "backbone_2d, dense_head.heads_list.0); is this an SSDA3D checkpoint?"
    )


def _kernel(key: str, value: torch.Tensor, ours: torch.Tensor | None) -> torch.Tensor:
    """A 5-D sparse-conv kernel in our spconv 2.x layout (out, kD, kH, kW, in), from either spconv layout."""
    if ours is None or value.dim() != 5 or tuple(value.shape) == tuple(ours.shape):
        return value
    v1 = value.permute(4, 0, 1, 2, 3)  # spconv 1.x (kD, kH, kW, in, out) -> (out, kD, kH, kW, in)
    if tuple(v1.shape) == tuple(ours.shape):
        return v1.contiguous()
    raise UserError(
        f"{key}: kernel shape {tuple(value.shape)} is neither spconv 2.x's {tuple(ours.shape)} nor "
        "spconv 1.x's layout of it; build the entry whose voxel_channels match the checkpoint"
    )


def convert_state_dict(official: dict, reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenPCDet ``model_state`` (or the whole checkpoint dict) -> ``SSDA3DDetector`` keys. ``reference``: our state
    dict (its shapes tell the spconv kernel layout)."""
    sd = official.get("model_state", official)
    if not isinstance(sd, dict) or not sd:
        raise UserError("the checkpoint holds no 'model_state' dict of tensors: not an OpenPCDet checkpoint")
    out = {}
    for key, value in sd.items():
        if not torch.is_tensor(value):
            raise UserError(f"{key}: holds a {type(value).__name__}, not a tensor: not an OpenPCDet model_state")
        new = convert_key(key)
        if new is not None:
            out[new] = _kernel(key, value, reference.get(new))
    return out


def read_checkpoint(path: str | Path) -> dict:
    """The OpenPCDet checkpoint at ``path`` ({"epoch", "it", "model_state", "optimizer_state", "version"}), read as
    plain tensors (:func:`zoo.convert.read_release`)."""
    raw = _convert.read_release(path, "the SSDA3D release (checkpoints of OpenPCDet's tools/train.py)")
    if "model_state" not in raw and not all(torch.is_tensor(v) for v in raw.values()):
        raise UserError(
            f"{path}: no 'model_state' entry (keys {sorted(raw)[:8]}); give an OpenPCDet checkpoint "
            "(checkpoint_epoch_N.pth)"
        )
    return raw


def load_official(module, official: dict, source: str = "the official SSDA3D checkpoint") -> None:
    """Convert and load strictly into ``module.model`` (an SSDA3DModule) or into an ``SSDA3DDetector``; missing,
    unexpected or mis-shaped keys -> one error naming them (``zoo.hub.load_weights_strict``)."""
    from zoo import hub

    model = getattr(module, "model", module)
    hub.load_weights_strict(model, convert_state_dict(official, model.state_dict()), source)


def _load(path: str, name: str):
    from zoo import hub

    module = hub.create(name)
    load_official(module, read_checkpoint(path))
    return module.eval()


def main(argv: list[str] | None = None) -> int:
    return _convert.converter_main(argv, _load, "SSDA3D (OpenPCDet)", "ssda3d-voxel, ssda3d-pillar")


if __name__ == "__main__":
    raise SystemExit(main())
