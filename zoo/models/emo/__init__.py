"""EMO registry entries (Zhang et al., ICCV 2023, arXiv 2301.01146; official code zhangzjn/EMO).

``emo-{1m,2m,5m,6m}``: the ImageNet-1k classifiers of the official repository (``EMOModule``; ``forward`` gives
logits). The authors released all four checkpoints in their GitHub repository (``resources/EMO_*/net.pth``, no
licence file); each entry carries that file's URL at a pinned commit and its git blob id, so ``zoo.load("emo-1m")``
downloads it once, converts it (``zoo.models.emo.convert``) and caches the result (weights status ``official``).
This file imports nothing heavy.
"""

from zoo.registry import Entry, Metric, Paper
from zoo.results import Arm, Claim

PAPER = Paper(
    title="Rethinking Mobile Block for Efficient Attention-based Models",
    arxiv="2301.01146",
    code="https://github.com/zhangzjn/EMO",
    venue="ICCV 2023",
    citation="""@inproceedings{zhang2023rethinking,
  title     = {Rethinking Mobile Block for Efficient Attention-based Models},
  author    = {Zhang, Jiangning and Li, Xiangtai and Li, Jian and Liu, Liang and Xue, Zhucun and Zhang, Boshen and
               Jiang, Zhengkai and Huang, Tianxin and Wang, Yabiao and Wang, Chengjie},
  booktitle = {IEEE/CVF International Conference on Computer Vision (ICCV)},
  pages     = {1389--1400},
  year      = {2023}
}""",
)
PREPROCESS = {
    "input_size": [3, 224, 224],
    "interpolation": "bicubic",
    "crop_pct": 0.875,  # resize the short side to 256, centre crop 224
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}
# size (zoo.models.emo.sizes) -> (exact parameters, multiply-adds at 224², top-1, top-5): official README / logs
FIGURES = {
    "1m": (1_361_168, 261_000_000, 71.5, 90.368),
    "2m": (2_377_472, 439_000_000, 75.1, 92.184),
    "5m": (5_108_848, 903_000_000, 78.4, 93.970),
    "6m": (6_168_496, 961_000_000, 79.0, 94.162),
}
# The official net.pth files (torch.save of the trained state_dict) at a pinned commit of zhangzjn/EMO, with their
# git blob ids (the download is checked against them).
_EMO_COMMIT = "27d9b40fea9c2a12a2fe7acc51032184852a99d8"
OFFICIAL = {
    "1m": "76c4282de548fa76eca6011720b29d8f80ffa784",
    "2m": "9ec7138d292ca9b2d07923aec05762f547db8cf2",
    "5m": "3ea7450fa9c290c3c46f372c1f5cebe1198d1ce1",
    "6m": "10a248725247cf18b51e449dbd1a220354457c99",
}
_PROTOCOL = (
    "ImageNet-1k val, resize 256 (bicubic) -> centre crop 224; EMA weights at the best evaluated epoch "
    "(official README / resources/EMO_*/log_train.txt)"
)
RECIPE = (
    "ImageNet-1k, 300 epochs, batch 2048 (8 GPUs x 256), AdamW (0.9, 0.999), weight decay 0.05 (none on 1-D "
    "parameters and biases), lr 1.5e-3 x batch / 512 = 6e-3, per-iteration cosine to 1e-6 after a 20-epoch linear "
    "warm-up from 1e-6, label smoothing 0.1, gradient clipping 5.0, EMA 0.9998 (evaluated and exported), AMP; timm "
    "augmentation: RandomResizedCrop 224, flip, RandAugment rand-m9-mstd0.5-inc1, colour jitter 0.4, random "
    "interpolation, no random erasing, no Mixup/CutMix; drop path 0.04036 (1M) / 0.05. configs/emo.yaml."
)
LIMITS = (
    "The upstream repository has no licence file: the converted weights are redistributed with attribution, for "
    "research use; check with the authors before commercial use. Speed claims in the paper were measured on an "
    "iPhone 14 (Core ML); on GPUs with TensorRT EMO is much slower than convolution-only models of equal FLOPs "
    "(zhangzjn/EMO#7). Windows are strided (dilated) as in the released code, not contiguous as the paper's text "
    "suggests; attention mixes the normalised input before the value projection (attn_pre=True, as released)."
)

ENTRIES = [
    Entry(
        name=f"emo-{size}",
        module="zoo.models.emo.module.EMOModule",
        init_args={"size": f"emo_{size}", "num_classes": 1000},
        paper=PAPER,
        license="other",
        description=(
            f"EMO-{size.upper()}: an efficient mobile network of inverted residual mobile blocks (iRMB: "
            "depth-wise convolution + windowed attention in one residual block), ImageNet-1k classifier. "
            "forward(images) gives logits; forward_features / features_only for dense heads."
        ),
        official_url=f"https://github.com/zhangzjn/EMO/raw/{_EMO_COMMIT}/resources/EMO_{size.upper()}/net.pth",
        official_hash=f"git-blob-sha1:{OFFICIAL[size]}",
        preprocess=PREPROCESS,
        pipeline_tag="image-classification",
        datasets=("imagenet-1k",),
        tags=("image-classification", "efficient", "mobile", "attention", "timm-compatible"),
        params=params,
        flops=flops,
        paper_metrics=(
            Metric(
                "image-classification", "imagenet-1k", "ImageNet-1k", "accuracy", top1, "validation", "top-1", _PROTOCOL
            ),
            Metric(
                "image-classification", "imagenet-1k", "ImageNet-1k", "top-5", top5, "validation", "top-5", _PROTOCOL
            ),
        ),
        config="configs/emo.yaml" if size == "1m" else f"configs/emo-{size}.yaml",
        recipe=RECIPE,
        limitations=LIMITS,
        tiny_overrides={"num_classes": 10, "img_size": 32},
    )
    for size, (params, flops, top1, top5) in FIGURES.items()
]

CLAIM = Claim(
    claim="The inverted residual mobile block with attention (iRMB: windowed multi-head self-attention and a "
    "depth-wise convolution in one residual block) is more accurate than the attention-free inverted residual block "
    "at a similar cost.",
    paper="The paper's iRMB-vs-IRB ablation numbers are not in zoo's specs. Main table (official README, checked "
    "against the training logs): EMO-1M 71.5 % ImageNet-1k top-1 at 1,361,168 parameters and 261 M multiply-adds "
    "(224 px); MobileNetV2's row of that table is not in zoo's specs either.",
    metric="test/acc1",
    arms=(
        Arm("iRMB (attention in stages 3-4)", "emo"),
        Arm(
            "inverted residual blocks (attention off)",
            "emo",
            "no_attn",
            ("--model.init_args.net.attn=[false,false,false,false]",),
        ),
    ),
    design="configs/demo/emo.yaml: EMO-1M's layout (depths 2/2/8/3, widths 32/48/80/168) with a 10-class head, "
    "trained 5 epochs at 64 px on scikit-learn's digits (real 8x8 scans upscaled; train/val/test 1,077/360/360) with "
    "the paper's AdamW, warm-up + cosine, label smoothing 0.1 and gradient clipping, no RandAugment; scored by top-1 "
    "on the 360 held-out test digits with the final weights. The baseline is the same network with attention off in "
    "every stage (net.attn all false), so each block is the inverted residual block of MobileNetV2 (1x1 expansion, "
    "depth-wise conv, 1x1 projection) and the q/k 1x1 convs of the nine attention blocks are gone: 1,193,858 "
    "parameters with attention vs 989,570 without (204,288 q/k weights), 32.6 M vs 18.4 M multiply-adds at 64 px "
    "(there stages 3-4 have 4x4 and 2x2 maps, each zero-padded to one 7x7 window). The baseline is therefore cheaper, "
    "not cost-matched. The paper trains 300 epochs on ImageNet-1k at 224 px. What the rows show: the attention-free "
    "network is more accurate and also fits the training digits faster (lower train/loss in the fit rows) within the "
    "5-epoch budget. At 64 px the attention is degenerate: as released, the zero padding of a window is not masked, "
    "so 33 of the 49 tokens of the stage-3 window and 45 of 49 in stage 4 are padding with zero values, which take a "
    "share of every attention weight and add nothing to the output. A faithful miniature needs stage-3/4 maps that "
    "fill the 7x7 windows (224 px input, (224/64)^2 ≈ 12x the pixels) and more than 1,077 training images of 10 "
    "classes; window sizes matched to the small maps would be a different network than the paper's, not tried.",
    scale=100.0,
    unit="%",
    decimals=2,
    extra=("test/loss",),
)
