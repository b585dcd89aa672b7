"""SSDA3D's sizes, stated once (plain data: the registry reads them without importing torch; the module builds
:class:`zoo.models.ssda3d.model.SSDA3DDetector` from them through :func:`zoo.sizes.net_args`).

- ``voxel``: the paper's CenterPoint, ``yinjunbo/SSDA3D:tools/cfgs/nuscenes_models/ssda3d_centerpoint.yaml`` (mean VFE
  on 0.075 x 0.075 x 0.2 m voxels over [-54, 54]^2 x [-5, 4.8] m, ``VoxelResBackBone8x`` 16-32-64-128, BEV backbone
  ``LAYER_NUMS [5, 5]``, ``LAYER_STRIDES [1, 2]``, ``NUM_FILTERS [128, 256]``, ``UPSAMPLE_STRIDES [1, 2]``,
  ``NUM_UPSAMPLE_FILTERS [256, 256]``);
- ``pillar`` (the default, spconv-free): the dynamic-pillar CenterPoint of OpenPCDet's
  ``tools/cfgs/nuscenes_models/cbgs_dyn_pp_centerpoint.yaml`` (0.2 m pillars over [-51.2, 51.2]^2 x [-5, 4.8] m, PFN
  ``NUM_FILTERS [64, 64]``, BEV backbone [3, 5, 5] / [2, 2, 2] / [64, 128, 256], upsample [0.5, 1, 2] -> 3 x 128).

Every other argument of the detector (head width 64, BatchNorm momentum 0.01, the release's voxeliser caps, the
CenterHead's decoding thresholds) is the constructor's default, the release's value for both sizes.
"""

SIZES = {
    "voxel": dict(
        backbone="voxel",
        voxel_size=[0.075, 0.075, 0.2],
        point_cloud_range=[-54.0, -54.0, -5.0, 54.0, 54.0, 4.8],
        voxel_channels=[16, 32, 64, 128],
        layer_nums=[5, 5],
        layer_strides=[1, 2],
        num_filters=[128, 256],
        upsample_strides=[1, 2],
        num_upsample_filters=[256, 256],
    ),
    "pillar": dict(
        backbone="pillar",
        voxel_size=[0.2, 0.2, 9.8],
        point_cloud_range=[-51.2, -51.2, -5.0, 51.2, 51.2, 4.8],
        pillar_filters=[64, 64],
        layer_nums=[3, 5, 5],
        layer_strides=[2, 2, 2],
        num_filters=[64, 128, 256],
        upsample_strides=[0.5, 1, 2],
        num_upsample_filters=[128, 128, 128],
    ),
}
DEFAULT = "pillar"
