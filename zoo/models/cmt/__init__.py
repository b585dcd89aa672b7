"""CMT (Yan et al., ICCV 2023, arXiv 2301.01283): Cross Modal Transformer for camera + LiDAR 3D detection on
nuScenes. Registry entries (nothing heavy imported).

One entry per released configuration (``junjie18/CMT:projects/configs``) plus the 0.2 m pillar data point of the
early README (its config was never released; our LiDAR branch there is mmdet3d's CenterPoint-pillar0200 one, an
assumption stated on its card). Each entry names its size (:mod:`zoo.models.cmt.sizes`); CMT, CMT-L and CMT-C are
one network with a ``modalities`` argument.
"""

from zoo.models.cmt.sizes import SIZES
from zoo.registry import Entry, Metric, Paper
from zoo.results import Arm, Claim, Protocol, ResultSpec, Variant

PAPER = Paper(
    title="Cross Modal Transformer: Towards Fast and Robust 3D Object Detection",
    arxiv="2301.01283",
    code="https://github.com/junjie18/CMT",
    venue="ICCV 2023",
    citation="""@inproceedings{yan2023cmt,
  title={Cross Modal Transformer: Towards Fast and Robust 3D Object Detection},
  author={Yan, Junjie and Liu, Yingfei and Sun, Jianjian and Jia, Fan and Li, Shuailin and Wang, Tiancai and Zhang, Xiangyu},
  booktitle={Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  pages={18268--18278},
  year={2023}
}""",  # noqa: E501
)

MODULE = "zoo.models.cmt.module.CMTModule"
TASK = "3d-object-detection"

# Tiny versions for the registry-wide tests (forward + backward on the CPU): spconv 2.3.8's CPU wheel runs the sparse
# encoder's forward but its backward calls CUDA, so every tiny model takes the pillar path; the image backbone is a
# 1.4 M-parameter VoVNet (same family) or a slim ResNet.
_TINY = {
    "point_cloud_range": [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0],
    "lidar_encoder": "pillar",
    "voxel_size": [6.4, 6.4, 8.0],
    "pillar_filters": [8],
    "bev_layer_nums": [1, 1],
    "bev_layer_strides": [1, 2],
    "bev_num_filters": [8, 16],
    "bev_upsample_strides": [1, 2],
    "bev_upsample_filters": [8, 8],
    "image_size": [64, 128],
    "num_views": 2,
    "hidden_dim": 32,
    "num_query": 16,
    "depth_num": 8,
    "num_layers": 2,
    "num_heads": 4,
    "ffn_dim": 64,
    "head_conv": 16,
}
_TINY_VOV = {"net": {**_TINY, "img_backbone": "ese_vovnet19b_slim_dw"}}
_TINY_R50 = {
    "net": {**_TINY, "img_backbone": "resnet18"},
    "img_backbone_kwargs": {"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64], "stem_width": 8},
}

# name -> (init args, params (exact, meta device), description, tiny overrides, paper table rows); the network of each
# size is stated in sizes.py, the init args add the entry's own optimiser settings
# paper rows: (split, mAP, NDS, protocol)
_README = "junjie18/CMT README.md (released configs, nuScenes)"
_ROBUST = "figs/cmt_robust.png of junjie18/CMT (val NDS of the fusion model with one sensor's input zeroed)"
SPECS = {
    "cmt-voxel0075-vov": (
        {"size": "voxel0075-vov"},
        86_607_380,
        (
            "CMT (camera + LiDAR): VoVNet-99-eSE + CPFPN on 6 views of 1600x640 (24,000 image tokens at stride 16), "
            "0.075 m voxels -> sparse encoder -> SECOND/SECONDFPN (180x180 = 32,400 BEV tokens), 900 position-guided "
            "queries, 6-layer decoder."
        ),
        _TINY_VOV,
        [("validation", 70.3, 72.9, _README), ("test", 72.0, 74.1, _README + "; trained on train+val")],
    ),
    "cmt-voxel0100-r50": (
        {"size": "voxel0100-r50", "lr": 1.4e-4, "peak_ratio": 6.0},
        40_919_572,
        (
            "CMT (camera + LiDAR): ResNet-50 + CPFPN on 6 views of 800x320 (6,000 image tokens), 0.1 m voxels (1024 x "
            "1024 x 41 grid) -> sparse encoder -> SECOND/SECONDFPN (128x128 BEV tokens). The release sets the range to "
            "±54 m but the sparse grid to 1024 cells (= ±51.2 m at 0.1 m); we use ±51.2 m for both the grid and the "
            "head."
        ),
        _TINY_R50,
        [("validation", 67.9, 70.8, _README)],
    ),
    "cmt-lidar-voxel0075": (
        {"size": "lidar-voxel0075", "peak_ratio": 6.0},
        16_769_492,
        (
            "CMT-L (LiDAR only): 0.075 m voxels -> sparse encoder -> SECOND/SECONDFPN (180x180 BEV tokens), BEV query "
            "PE only; its prediction heads use kernel 3 over the query axis (as released)."
        ),
        {"net": {**_TINY, "final_kernel": 3}},
        [("validation", 62.14, 68.6, _README), ("test", 65.3, 70.1, _README + "; trained on train+val")],
    ),
    "cmt-camera-vov": (
        {"size": "camera-vov"},
        78_156_100,
        (
            "CMT-C (cameras only): VoVNet-99-eSE + CPFPN on 6 views of 1600x640, camera-ray position encoding; the "
            "query PE is the image PE plus the BEV sine PE of the anchors (as released: CmtImageHead inherits "
            "CmtHead's query_embed; camera_bev_query_pe=False gives the image-only query PE)."
        ),
        _TINY_VOV,
        [("validation", 40.6, 46.0, _README), ("test", 42.9, 48.1, _README + "; trained on train+val")],
    ),
    "cmt-pillar0200-r50": (
        {"size": "pillar0200-r50", "lr": 1.4e-4, "peak_ratio": 6.0},
        37_742_980,
        (
            "CMT with 0.2 m pillars (camera + LiDAR): ResNet-50 on 6 views of 704x256, dynamic pillar net (64 ch, "
            "512x512) -> SECOND [3,5,5] / SECONDFPN (384 ch, stride 4 -> 128x128 BEV tokens). The CPU-trainable "
            "LiDAR path."
        ),
        _TINY_R50,
        [
            (
                "validation",
                53.8,
                58.5,
                "junjie18/CMT early README val table (8x2080Ti, 20 epochs); config never released",
            )
        ],
    ),
}

ROBUSTNESS = {  # cmt-voxel0075-vov, val NDS (figs/cmt_robust.png)
    "full": 72.9,
    "camera lost": 68.1,
    "LiDAR lost": 44.7,
    "CMT-C (dedicated)": 46.0,
    "CMT-L (dedicated)": 68.6,
}

RESULTS = ResultSpec(
    task=TASK,
    split="validation",
    metrics={"map": ("map", "mAP"), "nds": ("nds", "NDS"), "center_err": ("center-error", "matched centre error (m)")},
    protocols={
        "val": Protocol(
            "nuScenes val (devkit AP/TP/NDS on our frames: no ego pose, class ranges from the LiDAR "
            "origin), the final weights",
            {"map": "test/mAP", "nds": "test/NDS", "center_err": "test/center_err"},
            stage="test",
        ),
    },
    variants={
        "default": Variant("the entry's config (both modalities as the entry builds them)"),
        "camera-lost": Variant(
            "the paper's robustness protocol: images zeroed at test time", ("--model.init_args.drop_modality=camera",)
        ),
        "lidar-lost": Variant(
            "the paper's robustness protocol: points zeroed at test time", ("--model.init_args.drop_modality=lidar",)
        ),
    },
    dataset_names={"nuscenes": "nuScenes"},
    scale=100.0,
    decimals=2,
)


def _paper_metrics(name: str, rows) -> tuple:
    out = []
    for split, m_ap, nds, proto in rows:
        out.append(
            Metric(
                task=TASK,
                dataset="nuscenes",
                dataset_name="nuScenes",
                metric="map",
                value=m_ap,
                split=split,
                name="mAP",
                protocol=proto,
            )
        )
        out.append(
            Metric(
                task=TASK,
                dataset="nuscenes",
                dataset_name="nuScenes",
                metric="nds",
                value=nds,
                split=split,
                name="NDS",
                protocol=proto,
            )
        )
    if name == "cmt-voxel0075-vov":
        for k in ("camera lost", "LiDAR lost"):
            out.append(
                Metric(
                    task=TASK,
                    dataset="nuscenes",
                    dataset_name="nuScenes",
                    metric="nds",
                    value=ROBUSTNESS[k],
                    split="validation",
                    name=f"NDS ({k})",
                    protocol=_ROBUST,
                )
            )
    return tuple(out)


_TABLE = (
    "Reported (junjie18/CMT README, nuScenes; FPS on one A100): CMT-C vov 1600x640 val 40.6 mAP / 46.0 NDS, "
    "test 42.9 / 48.1, 8.4 FPS; CMT-L voxel0075 val 62.14 / 68.6, test 65.3 / 70.1, 18.1 FPS; CMT voxel0100 r50 "
    "800x320 val 67.9 / 70.8, 14.2 FPS; CMT voxel0075 vov 1600x640 val 70.3 / 72.9, test 72.0 / 74.1, 6.4 FPS. "
    "Robustness (val NDS, figs/cmt_robust.png): full 72.9, camera lost 68.1, LiDAR lost 44.7 (dedicated CMT-C "
    "46.0, CMT-L 68.6)."
)
_RECIPE = (
    "Masked-modal training (P(images off) 0.25, P(LiDAR off) 0.25) for the fusion models; CBGS; multi-modal "
    "GT-sampling (data gt_sampling: database built in memory, off in the full-split configs); global rot U(±0.785), "
    "scale U(0.9, 1.1), translation N(0, 0.5) and BEV flips that also update lidar2img; image resize U(0.94, 1.25), "
    "bottom crop, flip, GridMask; AdamW lr 1e-4 (1.4e-4 for R50), wd 0.01, image backbone lr x 0.01, neck x 0.1, "
    "one-cycle to 8x (6x R50 / LiDAR) at 40 %, grad clip 35, 20 epochs, 8 GPUs x 2 frames. Hungarian matching with "
    "focal (2.0) + L1 (0.25) costs, focal + L1 losses on all 6 layers, DN-DETR denoising (10 groups). " + _TABLE
)
_LIMITS = (
    "Random initialisation here: the released image-backbone inits (fcos3d VoVNet, nuImages R50) and CMT checkpoints "
    "are not downloaded; convert.py maps the official key layout. The sparse encoder needs spconv with CUDA for "
    "training (its CPU wheel runs the forward only); the dynamic mean VFE keeps every point (the released hard "
    "voxeliser keeps <= 10 per voxel). Multi-modal GT-sampling builds its database in memory (small splits; the "
    "release's precomputed dbinfos file is not read). nuScenes metrics come from the devkit's algorithm on our "
    "frames (no ego pose: class ranges from the LiDAR origin). The released head's box code has an index quirk (its "
    "'height' slot regresses log w, dim[1] regresses z), kept by default for weight compatibility (box_code_quirk); "
    "the BEV sine PE uses the released narrow-band dim_t (narrow_band_pe). Release behaviours kept as defaults, each "
    "with a switch for the other: the learned (and the denoising) anchors are clamped into [0, 1] "
    "(inverse_sigmoid(ref).sigmoid() in CmtHead.query_embed) before the BEV and camera-ray query encodings, which "
    "matters because trained anchors leave [0, 1] (clamp_query_anchors=False feeds the raw anchors, zoo's earlier "
    "behaviour); the cross-attention has attention dropout 0.0 and output dropout 0.1, because the release passes "
    "its 0.1 positionally into FlashMHA's bias parameter (cross_attn_dropout=0.1 gives the configured 0.1 on the "
    "attention weights too; training only); CMT-C adds the BEV PE to its queries (camera_bev_query_pe); the released "
    "VoVNet-99-eSE (DD3D's vovnet.py) applies eSE in every OSA block, timm's ese_vovnet99b only in each stage's last "
    "(ese_every_block=False gives timm's; the parameter counts are the release's); the image backbone's BatchNorm "
    "layers stay in eval mode during training, as the released configs' norm_eval=True (img_norm_eval=False trains "
    "them). convert.py maps the full official key set of each released config (checked key by key and shape by shape "
    "against the official module definitions) and reads sparse conv weights in either spconv layout (1.x: k, k, k, "
    "in, out; 2.x: out, k, k, k, in), told apart by their shapes. Target boxes with a size <= 0 or non-finite values "
    "are dropped with a counted warning (their log-size code would be NaN)."
)

ENTRIES = [
    Entry(
        name=name,
        module=MODULE,
        init_args=args,
        paper=PAPER,
        license="apache-2.0",
        description=desc,
        hub_repo=None,
        weights_note=(
            "official checkpoints (junjie18/CMT release) -> zoo.models.cmt.convert.convert_state_dict; not fetched here"
        ),
        preprocess={
            "input": "6 camera views (BGR, mean (103.53, 116.28, 123.675), std (57.375, 57.12, 58.395)), "
            "10 LiDAR sweeps (x, y, z, intensity, dt), lidar2img per view",
            "image_size": SIZES[args["size"]].get("image_size"),
            "point_cloud_range": SIZES[args["size"]]["point_cloud_range"],
            "data_module": "zoo.data_modules.NuScenesMultiViewDataModule",
        },
        pipeline_tag=None,
        datasets=("nuscenes",),
        tags=("3d-object-detection", "multi-modal", "lidar", "multi-view-camera", "detr", "autonomous-driving"),
        params=params,
        paper_metrics=_paper_metrics(name, rows),
        results=RESULTS,
        config=f"configs/{name}.yaml",
        recipe=_RECIPE,
        limitations=_LIMITS,
        tiny_overrides=tiny,
    )
    for name, (args, params, desc, tiny, rows) in SPECS.items()
]

# The paper's central claim in miniature (zoo list --claims; the card's "Claim in miniature").
CLAIM = Claim(
    claim="Training with masked-modal learning (one sensor zeroed at random) keeps the fusion detector useful when a "
    "sensor is lost at test time.",
    paper="nuScenes val NDS (robustness figure, README): full 72.9; without LiDAR 44.7 (dedicated camera-only CMT "
    "46.0); without cameras 68.1 (dedicated LiDAR-only CMT 68.6). The figure gives no number without the modal mask.",
    metric="test/NDS",
    arms=(
        Arm(
            "modal mask, LiDAR lost",
            "cmt",
            "modal-mask-lidar-lost",
            ("--model.init_args.modal_mask=true", "--model.init_args.drop_modality=lidar"),
        ),
        Arm("no modal mask, LiDAR lost", "cmt", "lidar-lost", ("--model.init_args.drop_modality=lidar",)),
    ),
    design="configs/demo/cmt.yaml: a CPU-size CMT fitted 20 epochs to the one shared nuScenes keyframe and evaluated "
    "on the same frame (an overfitting check), trained with or without ModalMask3D (P 0.25 / 0.25) and evaluated "
    "with the LiDAR points zeroed (drop_modality) in both arms.",
    extra=("test/mAP",),
    decimals=4,
)
