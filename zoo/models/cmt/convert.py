"""Official CMT checkpoints (``junjie18/CMT``, mmdet3d ``CmtDetector``) -> ``CMTModule.model`` state_dict keys.

Key layout of the release (mmdet3d 1.0 / mmcv 1.x):

- ``img_backbone.*``: mmdet ``ResNet`` (``conv1``, ``bn1``, ``layer{1-4}.{j}.{conv,bn}{1-3}``, ``downsample.{0,1}``) ->
  ``img.backbone.*`` unchanged (timm's ResNet uses the same names). VoVNet-99-eSE of the release (DD3D's layout):
  ``stem.stem_{k}/{conv,norm}`` -> timm ``stem_{k-1}.{conv,bn}``; ``stage{s}.OSA{s}_{b}.layers.{i}.OSA{s}_{b}_{i}/..``
  -> ``stages_{s-2}.blocks.{b-1}.conv_mid.{i}..``; ``..concat.OSA{s}_{b}_concat/..`` -> ``..conv_concat..``;
  ``..ese.fc`` -> ``..attn.fc`` (timm ``ese_vovnet99b`` has the same widths: stem 64/64/128, stages 128-224 -> 256-1024,
  5 layers per block, blocks 1/3/9/3).
- ``img_neck.lateral_convs.{i}.conv.*`` -> ``img.neck.lateral_convs.{i}.*``; ``img_neck.fpn_convs.0.conv.*`` ->
  ``img.neck.fpn_conv.*``.
- ``pts_middle_encoder.*`` (``SparseEncoder``): ``conv_input.{0,1}``, ``encoder_layers.encoder_layer{i}.{j}.*`` ->
  ``pts.pts_middle_encoder.encoder_layers.{i-1}.{j}.*``, ``conv_out.{0,1}``. Sparse conv weights come in two layouts:
  mmcv's spconv 1.x (kD, kH, kW, C_in, C_out) and spconv 2.x (C_out, kD, kH, kW, C_in) (mmdet3d's
  ``ops/spconv/overwrite_spconv/write_spconv2.py`` converts between them on load by a version flag); the layout is
  detected from the shape, given the released layer's kernel and output channels, and 1.x weights are permuted.
- ``pts_voxel_encoder.pfn_layers.{i}.{linear,norm}`` -> ``pts.pts_voxel_encoder.pfn.{i}.*`` (pillar variant).
- ``pts_backbone.blocks.{i}.{k}`` (SECOND) -> ``pts.pts_backbone.blocks.{i}.{k+1}`` (ours starts with a ZeroPad2d);
  ``pts_neck.deblocks.{i}.{0,1}`` (SECONDFPN) -> ``pts.pts_backbone.deblocks.{i}.{0,1}``; the release's stride-1 level
  is a 1x1 Conv2d (``use_conv_for_no_stride``), ours a 1x1 ConvTranspose2d: the weight is transposed (same map).
- ``pts_bbox_head.shared_conv.{conv,bn}`` -> ``shared_conv.{0,1}``; ``reference_points``, ``bev_embedding``,
  ``rv_embedding`` at the top level; ``transformer.decoder.layers.{l}.attentions.{0,1}.attn.*`` ->
  ``decoder.layers.{l}.{self_attn,cross_attn}.*``; ``ffns.0.layers.0.0`` / ``ffns.0.layers.1`` -> ``ffn.0`` / ``ffn.2``;
  ``norms.{k}``; ``transformer.decoder.post_norm``; ``task_heads.0.<head>.{0,1,3}`` -> ``task_head.<head>.{0,1,3}``.

``python -m zoo.models.cmt.convert CHECKPOINT NAME OUT_DIR`` writes a zoo Hub folder
(:func:`zoo.convert.converter_main`).
"""

from __future__ import annotations

import re
from pathlib import Path

from zoo import convert as _convert
from zoo.errors import UserError
from zoo.models.cmt.model import SPARSE_ENCODER_CHANNELS

_WHERE = "junjie18/CMT README (the released .pth of each config; not fetched by zoo)"
_NAMES = "cmt-voxel0075-vov, cmt-voxel0100-r50, cmt-lidar-voxel0075 or cmt-camera-vov"

_RULES = [
    (r"^img_backbone\.stem\.stem_(\d+)/(conv|norm)\.(.*)$", "VOV_STEM"),
    (r"^img_backbone\.stage(\d+)\.OSA\d+_(\d+)\.layers\.(\d+)\.OSA[\d_]+/(conv|norm)\.(.*)$", "VOV_MID"),
    (r"^img_backbone\.stage(\d+)\.OSA\d+_(\d+)\.concat\.OSA[\d_]+concat/(conv|norm)\.(.*)$", "VOV_CONCAT"),
    (r"^img_backbone\.stage(\d+)\.OSA\d+_(\d+)\.ese\.fc\.(.*)$", "VOV_ESE"),
    (r"^img_backbone\.(stem|stage\d)", None),  # any other DD3D VoVNet key (depthwise variants): not mapped
    (r"^img_backbone\.(.*)$", r"img.backbone.\1"),
    (r"^img_neck\.lateral_convs\.(\d+)\.conv\.(weight|bias)$", r"img.neck.lateral_convs.\1.\2"),
    (r"^img_neck\.fpn_convs\.0\.conv\.(weight|bias)$", r"img.neck.fpn_conv.\1"),
    (r"^pts_middle_encoder\.encoder_layers\.encoder_layer(\d+)\.(.*)$", "ENC"),
    (r"^pts_middle_encoder\.(conv_input|conv_out)\.(.*)$", r"pts.pts_middle_encoder.\1.\2"),
    (r"^pts_voxel_encoder\.pfn_layers\.(\d+)\.(linear|norm)\.(.*)$", r"pts.pts_voxel_encoder.pfn.\1.\2.\3"),
    (r"^pts_backbone\.blocks\.(\d+)\.(\d+)\.(.*)$", "SECOND"),
    (r"^pts_neck\.deblocks\.(\d+)\.(\d+)\.(.*)$", r"pts.pts_backbone.deblocks.\1.\2.\3"),
    (r"^pts_bbox_head\.shared_conv\.conv\.(.*)$", r"shared_conv.0.\1"),
    (r"^pts_bbox_head\.shared_conv\.bn\.(.*)$", r"shared_conv.1.\1"),
    (r"^pts_bbox_head\.(reference_points|bev_embedding|rv_embedding)\.(.*)$", r"\1.\2"),
    (
        r"^pts_bbox_head\.transformer\.decoder\.layers\.(\d+)\.attentions\.0\.attn\.(.*)$",
        r"decoder.layers.\1.self_attn.\2",
    ),
    (
        r"^pts_bbox_head\.transformer\.decoder\.layers\.(\d+)\.attentions\.1\.attn\.(.*)$",
        r"decoder.layers.\1.cross_attn.\2",
    ),
    (
        r"^pts_bbox_head\.transformer\.decoder\.layers\.(\d+)\.ffns\.0\.layers\.0\.0\.(.*)$",
        r"decoder.layers.\1.ffn.0.\2",
    ),
    (r"^pts_bbox_head\.transformer\.decoder\.layers\.(\d+)\.ffns\.0\.layers\.1\.(.*)$", r"decoder.layers.\1.ffn.2.\2"),
    (r"^pts_bbox_head\.transformer\.decoder\.layers\.(\d+)\.norms\.(\d+)\.(.*)$", r"decoder.layers.\1.norms.\2.\3"),
    (r"^pts_bbox_head\.transformer\.decoder\.post_norm\.(.*)$", r"decoder.post_norm.\1"),
    (r"^pts_bbox_head\.task_heads\.0\.(\w+)\.(\d+)\.(.*)$", r"task_head.\1.\2.\3"),
]
_SKIP = ("num_batches_tracked",)


def convert_key(key: str) -> str | None:
    """One official key -> ours; None for a key that carries no parameter of ours (BN counters)."""
    for pattern, repl in _RULES:
        m = re.match(pattern, key)
        if not m:
            continue
        if repl is None:
            raise UserError(
                f"{key}: a VoVNet key of the DD3D layout outside V-99-eSE's (stem, OSA layers, concat, "
                "eSE); only the released VoVNet-99-eSE maps onto timm's ese_vovnet99b"
            )
        g = m.groups()
        if repl.startswith("VOV"):

            def nb(x):
                return "bn" if x == "norm" else x

            if repl == "VOV_STEM":
                return f"img.backbone.stem_{int(g[0]) - 1}.{nb(g[1])}.{g[2]}"
            blk = f"img.backbone.stages_{int(g[0]) - 2}.blocks.{int(g[1]) - 1}"
            if repl == "VOV_MID":
                return f"{blk}.conv_mid.{g[2]}.{nb(g[3])}.{g[4]}"
            if repl == "VOV_CONCAT":
                return f"{blk}.conv_concat.{nb(g[2])}.{g[3]}"
            return f"{blk}.attn.fc.{g[2]}"
        if repl == "ENC":
            return f"pts.pts_middle_encoder.encoder_layers.{int(m.group(1)) - 1}.{m.group(2)}"
        if repl == "SECOND":
            return f"pts.pts_backbone.blocks.{m.group(1)}.{int(m.group(2)) + 1}.{m.group(3)}"
        return m.expand(repl)
    raise UserError(
        f"{key}: not a key of the official CMT checkpoint layout (img_backbone, img_neck, "
        "pts_middle_encoder, pts_backbone, pts_neck, pts_bbox_head); is this a CMT checkpoint?"
    )


def _sparse_conv_geometry(key: str) -> tuple[tuple[int, ...], int] | None:
    """(kernel, output channels) of a released ``SparseEncoder`` conv weight, by its zoo key; None for other keys."""
    enc = "pts.pts_middle_encoder."
    if key == enc + "conv_input.0.weight":
        return (3, 3, 3), SPARSE_ENCODER_CHANNELS[0][0]
    if key == enc + "conv_out.0.weight":
        return (3, 1, 1), 128
    m = re.fullmatch(re.escape(enc) + r"encoder_layers\.(\d+)\.(\d+)\.(?:conv[12]|0)\.weight", key)
    if m:
        return (3, 3, 3), SPARSE_ENCODER_CHANNELS[int(m.group(1))][int(m.group(2))]
    return None


def sparse_conv_weight(key: str, value):
    """A released sparse conv weight in spconv 1.x (k, k, k, in, out) or 2.x (out, k, k, k, in) layout -> 2.x, the
    layout told by the shape (kernel and output channels of the layer ``key``); an unknown shape is a UserError."""
    geometry = _sparse_conv_geometry(key)
    if geometry is None or value.dim() != 5:
        return value
    kernel, out = geometry
    shape = tuple(value.shape)
    v2 = shape[0] == out and shape[1:4] == kernel
    v1 = shape[:3] == kernel and shape[4] == out
    if v1 == v2:
        raise UserError(
            f"{key}: sparse conv weight of shape {list(shape)} is {'both' if v1 else 'neither'} spconv 1.x "
            f"(k, k, k, in, out) and 2.x (out, k, k, k, in) for kernel {list(kernel)} and {out} output "
            "channels; is this a released CMT SparseEncoder checkpoint?"
        )
    return value if v2 else value.permute(4, 0, 1, 2, 3).contiguous()


def convert_state_dict(official: dict) -> dict:
    """Official CMT state_dict (``state_dict`` of the .pth, or the bare dict) -> ``module.model`` keys."""
    sd = official.get("state_dict", official)
    out = {}
    for key, value in sd.items():
        if key.endswith(_SKIP):
            continue
        new = convert_key(key)
        if new is None:
            continue
        value = sparse_conv_weight(new, value)
        if (
            re.fullmatch(r"pts\.pts_backbone\.deblocks\.\d+\.0\.weight", new)
            and value.dim() == 4
            and value.shape[-2:] == (1, 1)
        ):
            # SECONDFPN use_conv_for_no_stride: a stride-1 level is Conv2d 1x1 [out, in]; ours ConvTranspose2d [in, out]
            value = value.transpose(0, 1).contiguous()
        out[new] = value
    return out


def read_official(path: str | Path) -> dict:
    """An official CMT checkpoint (mmcv ``save_checkpoint``: meta, state_dict, optimizer; read as plain tensors by
    :func:`zoo.convert.read_release`) -> ``module.model`` keys. :func:`convert_state_dict` drops the release's
    BatchNorm counters (they change no output); every BatchNorm gets ``num_batches_tracked`` 0, as a fresh model has."""
    import torch

    sd = _convert.read_official(path, convert_state_dict, _WHERE)
    for k in [k for k in sd if k.endswith(".running_mean")]:
        sd.setdefault(k[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0))
    return sd


def load_official(path: str | Path, name: str):
    """The registry entry ``name`` with the official checkpoint at ``path`` loaded strictly."""
    return _convert.load_official(path, name, read_official)


def main(argv: list[str] | None = None) -> int:
    return _convert.converter_main(argv, load_official, "CMT (mmdet3d .pth)", _NAMES)


if __name__ == "__main__":
    raise SystemExit(main())
