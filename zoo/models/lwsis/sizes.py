"""LWSIS's sizes, stated once (plain data: the registry reads them without importing torch; the module builds
:class:`zoo.models.lwsis.model.CondInst` from them through :func:`zoo.sizes.net_args`).

Both are the official ``Serenos/LWSIS:configs/BoxInst/Base-BoxInst-nuscenes.yaml`` CondInst (AdelaiDet BoxInst: FPN
256 channels on P3-P7, FCOS towers of 4 GN convs, mask branch 4 convs of 128 -> 16 channels, dynamic mask head of 3
layers of 8 channels = 233 parameters per instance) on a ResNet-50 or ResNet-101 (``MODEL.RESNETS.DEPTH``), the two
backbones of the README table. Every other constructor argument (GN groups 32, FrozenBN, ``FREEZE_AT`` 2, the ReLU box
regression, the MSRA stride-in-1x1 bottleneck, 5 levels) is the constructor's default, the release's value.
"""

_BOXINST = dict(fpn=256, tower=4, mask_ch=128, mask_convs=4, mask_out=16, dyn_ch=8, dyn_layers=3)

SIZES = {
    "r50": dict(depth=50, **_BOXINST),
    "r101": dict(depth=101, **_BOXINST),
}
DEFAULT = "r50"
