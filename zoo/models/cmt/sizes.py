"""CMT's published sizes: size name -> keyword arguments of :class:`zoo.models.cmt.model.CMT` (plain data, no torch).

One size per released configuration of ``junjie18/CMT`` (``projects/configs``; the README's model table):

- ``voxel0075-vov``: ``fusion/cmt_voxel0075_vov_1600x640_cbgs.py`` (VoVNet-99-eSE on 1600x640, 0.075 m voxels,
  ±54 m);
- ``voxel0100-r50``: ``fusion/cmt_voxel0100_r50_800x320_cbgs.py`` (ResNet-50 on 800x320, 0.1 m voxels; the release
  sets the range to ±54 m but its sparse grid to 1024 cells, i.e. ±51.2 m at 0.1 m: ±51.2 m here for both);
- ``lidar-voxel0075``: ``lidar/cmt_lidar_voxel0075_cbgs.py`` (CMT-L: 0.075 m voxels, its head convs of kernel 3);
- ``camera-vov``: ``camera/cmt_camera_vov_1600x640_cbgs.py`` (CMT-C: VoVNet-99-eSE on 1600x640);
- ``pillar0200-r50``: the 0.2 m pillar row of the early README (val 53.8 mAP / 58.5 NDS); its config was never
  released, so the LiDAR branch is mmdet3d's CenterPoint-pillar0200 one (``centerpoint_pillar02_second_secfpn``), the
  images 704x256 (an assumption stated on the entry's card).

Arguments a size leaves out take the network's defaults (six views, hidden 256, 900 queries, 64 depth bins, six
decoder layers of 8 heads and FFN 1024: ``cmt_head.py`` / ``cmt_transformer.py`` as configured in every release).
``image_size`` (height, width) and ``num_views`` are the input the configuration was trained on, and with
``point_cloud_range`` and ``voxel_size`` what :meth:`CMTModule.data_config` hands the data module.
"""

DEFAULT = "voxel0075-vov"

_RANGE54 = [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]
_RANGE51 = [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]
# mmdet3d SECOND [5, 5] + SECONDFPN after the sparse encoder, as in every released voxel config
_VOXEL = {
    "lidar_encoder": "voxel",
    "point_features": 5,
    "bev_layer_nums": [5, 5],
    "bev_layer_strides": [1, 2],
    "bev_num_filters": [128, 256],
    "bev_upsample_strides": [1, 2],
    "bev_upsample_filters": [256, 256],
}

SIZES = {
    "voxel0075-vov": {
        "modalities": "fusion",
        "point_cloud_range": _RANGE54,
        "voxel_size": [0.075, 0.075, 0.2],
        **_VOXEL,
        "img_backbone": "ese_vovnet99b",
        "image_size": [640, 1600],
    },
    "voxel0100-r50": {
        "modalities": "fusion",
        "point_cloud_range": _RANGE51,
        "voxel_size": [0.1, 0.1, 0.2],
        **_VOXEL,
        "img_backbone": "resnet50",
        "image_size": [320, 800],
    },
    "lidar-voxel0075": {
        "modalities": "lidar",
        "point_cloud_range": _RANGE54,
        "voxel_size": [0.075, 0.075, 0.2],
        **_VOXEL,
        "final_kernel": 3,
    },
    "camera-vov": {
        "modalities": "camera",
        "point_cloud_range": _RANGE54,
        "img_backbone": "ese_vovnet99b",
        "image_size": [640, 1600],
    },
    "pillar0200-r50": {
        "modalities": "fusion",
        "point_cloud_range": _RANGE51,
        "lidar_encoder": "pillar",
        "point_features": 5,
        "voxel_size": [0.2, 0.2, 8.0],
        "pillar_filters": [64],
        "bev_layer_nums": [3, 5, 5],
        "bev_layer_strides": [2, 2, 2],
        "bev_num_filters": [64, 128, 256],
        "bev_upsample_strides": [0.5, 1, 2],
        "bev_upsample_filters": [128, 128, 128],
        "img_backbone": "resnet50",
        "image_size": [256, 704],
    },
}
