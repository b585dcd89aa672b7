"""TinyMIM registry entries (Ren et al., CVPR 2023, arXiv 2301.01296; official code OliverRensu/TinyMIM).

- ``tinymim-{tiny,small,base}``: the distilled (pre-trained) students, ``TinyMIMDistillModule``; ``forward`` gives
  token features. Their last block has the teacher's head count (T/S 12, B 16), the released layout.
- ``tinymim-{tiny,small,base}.in1k-ft``: the ImageNet-1k fine-tuned classifiers (``ViTFinetuneModule``, MAE's
  global-pool + fc_norm head, standard head counts T 3 / S 6 / B 12); ``forward`` gives logits.
- ``tinymim-tiny-star``: TinyMIM*-T, the 79.6 % classifier (12 heads, distillation token, 192->1280 features).

Weights: the authors released ``TinyMIM-PT-B.pth`` and ``TinyMIM-FT-Tstar.pth`` (Google Drive links, no stable URL
to download from, no licence file; the teacher is MAE, whose weights are CC-BY-NC 4.0). Those two entries are
``pending``: they name the Hub repos their conversions (``python -m zoo.models.tinymim.convert``) are meant for, and
the card says how to convert the file here; the others have no released weights. The MAE teachers the distillation
entries train from are public at stable URLs (``MAE_TEACHERS``): ``model.init_args.teacher`` accepts such a URL (the
file is downloaded once into the zoo cache and read as plain tensors).
This file imports nothing heavy.
"""

from zoo.models.tinymim.sizes import FINETUNE_SIZES, SIZES, TEACHER_OF  # plain data, no torch
from zoo.registry import Entry, Metric, Paper
from zoo.results import Arm, Claim

PAPER = Paper(
    title="TinyMIM: An Empirical Study of Distilling MIM Pre-trained Models",
    arxiv="2301.01296",
    code="https://github.com/OliverRensu/TinyMIM",
    venue="CVPR 2023",
    citation="""@inproceedings{ren2023tinymim,
  title     = {TinyMIM: An Empirical Study of Distilling MIM Pre-trained Models},
  author    = {Ren, Sucheng and Wei, Fangyun and Zhang, Zheng and Hu, Han},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2023}
}""",
)
LICENSE = "no-licence-upstream"  # official repo and weights carry no licence; MAE-derived (CC-BY-NC 4.0)
PREPROCESS = {
    "input_size": [3, 224, 224],
    "interpolation": "bicubic",
    "crop_pct": 0.875,  # resize 256 -> centre crop 224 (MAE fine-tune evaluation)
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}
_TEACHER_NAMES = {"mae_vit_base": "MAE ViT-B/16", "mae_vit_large": "MAE ViT-L/16"}
PARAMS_PT = {"tiny": 5_524_416, "small": 21_665_664, "base": 85_798_656}  # released PT layout, no head
PARAMS_FT = {"tiny": 5_717_416, "small": 22_050_664, "base": 86_567_656}  # standard ViT-T/S/B with 1000-way head
TOP1 = {"tiny": 75.8, "small": 83.0, "base": 85.0}
ADE = {"tiny": 44.0, "small": 48.4, "base": 52.2}
RELEASED_PT = {"base"}  # TinyMIM-PT-B.pth; T/S pre-trained weights were not released (OliverRensu/TinyMIM#11)

# The official MAE encoders (facebookresearch/mae README, "pre-trained checkpoints"), the teachers of the paper.
MAE_TEACHERS = {
    "MAE ViT-B/16": "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base.pth",
    "MAE ViT-L/16": "https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_large.pth",
}
_CONVERT_NOTE = (
    "download {file} from the links in the official README (github.com/OliverRensu/TinyMIM, Google "
    "Drive), convert it with `python -m zoo.models.tinymim.convert {file} {name} out/{name}` and load "
    "'local-dir:out/{name}'; `zoo push out/{name} {repo}` publishes it."
)
_FT_PROTOCOL = (
    "fine-tuned on ImageNet-1k from the distilled model (100 epochs for B, MAE recipe), single 224 "
    "centre crop; README table of the official repo"
)
_ADE_PROTOCOL = "UperNet, 512x512, 160k iterations, single-scale mIoU (official Segmentation/ code)"
_FIDELITY = (
    " Release files: TinyMIM's and MAE's util/misc.py save_model writes {{model, optimizer, epoch, scaler, args "
    "(argparse.Namespace)}}; the converter reads them with torch.load(weights_only=True) admitting only those plain "
    "globals (zoo.convert.read_release) and refuses any key outside the MAE/TinyMIM ViT layout. Parity with "
    "OliverRensu/TinyMIM@d084705 is a golden test (tests/fixtures/tinymim): {what}."
)
_FIDELITY_PT = _FIDELITY.format(
    what=(
        "student (models_tinymim.py TinyMIMViT.forward_encoder, relations at block 12) and teacher "
        "(models_teacher.py MaskedAutoencoderViT) Q-K / V-V relations and the KL losses of TinyMIMViT.forward; zoo "
        "takes the log of the student relation as a log-softmax (fp16-safe) where the release logs the softmax"
    )
)
_FIDELITY_FT = _FIDELITY.format(
    what=(
        "the classifier (models_vit.py VisionTransformer, global_pool=True: mean of patch tokens -> fc_norm -> head) "
        "on the release's timm 0.3.2"
    )
)
_FIDELITY_STAR = _FIDELITY.format(
    what=(
        "the backbone (CLS + dist token, 12 heads) and the conv1x1 neck against Segmentation/TinyMIMstar-T/backbone/"
        "mae.py with plain blocks (its ADE20K config adds relative position bias and LayerScale, which the "
        "ADE20K log lists as missing from TinyMIM-FT-Tstar.pth); the classification heads are not in the released code"
    )
)
_TINY = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}

_RECIPE_PT = (
    "Relation distillation (no masking): teacher and student see the same RandomResizedCrop(224, 0.2-1) + flip, the "
    "student's copy colour-jittered (0.4, 0.4, 0.4); loss KL(teacher||student) on the Q-K and V-V relations of the "
    "teacher's block {tb} and the student's last block, 1:1. 300 epochs (15 warm-up), batch 4096, AdamW "
    "(0.9, 0.95), lr 1.5e-4 x 4096/256, weight decay 0.05, per-iteration cosine to 0, drop path 0.1 (not on the last "
    "block), AMP. Teacher: {teacher}."
)
_RECIPE_FT = (
    "MAE fine-tuning: 100 epochs (5 warm-up), batch 1024, AdamW, lr 5e-4 x batch/256, layer decay 0.65, weight "
    "decay 0.05, drop path 0.2, RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25, Mixup 0.8 / CutMix 1.0, "
    "label smoothing 0.1, global average pooling + fc_norm. The recipe in the official README is for B; T and S used "
    "'a higher learning rate and larger batch size' (OliverRensu/TinyMIM#5), not published."
)

ENTRIES = []
for _size, _student in SIZES.items():
    _heads, _last, _ft_heads = _student["num_heads"], _student["last_heads"], FINETUNE_SIZES[_size]["num_heads"]
    _teacher, _tblock = _TEACHER_NAMES[TEACHER_OF[_size][0]], TEACHER_OF[_size][1]
    _pt_metrics = (
        Metric(
            "image-classification",
            "imagenet-1k",
            "ImageNet-1k",
            "accuracy",
            TOP1[_size],
            "validation",
            "top-1 after fine-tuning",
            _FT_PROTOCOL,
        ),
        Metric(
            "image-segmentation",
            "scene_parse_150",
            "ADE20K",
            "mean_iou",
            ADE[_size],
            "validation",
            "mIoU (UperNet)",
            _ADE_PROTOCOL,
        ),
    )
    ENTRIES.append(
        Entry(
            name=f"tinymim-{_size}",
            module="zoo.models.tinymim.module.TinyMIMDistillModule",
            init_args={"size": _size, "teacher_block": _tblock},
            paper=PAPER,
            license=LICENSE,
            description=(
                f"TinyMIM ViT-{_size[0].upper()}/16 distilled from {_teacher} (relations of teacher block "
                f"{_tblock}); {_heads} heads, {_last} in the last block. forward(images) gives token features."
            ),
            hub_repo="zoo-models/tinymim-base" if _size in RELEASED_PT else None,
            weights_note=(
                _CONVERT_NOTE.format(file="TinyMIM-PT-B.pth", name="tinymim-base", repo="zoo-models/tinymim-base")
                if _size in RELEASED_PT
                else ""
            ),
            preprocess=PREPROCESS,
            pipeline_tag="image-feature-extraction",
            datasets=("imagenet-1k",),
            tags=("vision-transformer", "knowledge-distillation", "masked-image-modeling"),
            params=PARAMS_PT[_size],
            paper_metrics=_pt_metrics,
            config="configs/tinymim.yaml" if _size == "base" else f"configs/tinymim-{_size}.yaml",
            recipe=_RECIPE_PT.format(tb=_tblock, teacher=f"{_teacher} ({MAE_TEACHERS[_teacher]})"),
            limitations=(
                "A pre-trained feature extractor: fine-tune it (configs/tinymim-finetune.yaml) before classifying. "
                "In the released pre-trained student the last block's attention projection, MLP and the final norm "
                "were never trained (the loss stops at its q, k, v): use features of earlier blocks or fine-tune. "
                + (
                    "Converted from the official TinyMIM-PT-B.pth; the upstream weights carry no licence and derive "
                    "from MAE (CC-BY-NC 4.0): non-commercial research use."
                    if _size in RELEASED_PT
                    else "The authors did not release these pre-trained weights (OliverRensu/TinyMIM#11); train them "
                    f"with the config (teacher: a ViT-B, e.g. MAE ViT-B or tinymim-base with teacher_heads={_last})."
                )
                + _FIDELITY_PT
            ),
            tiny_overrides={"net": {**_TINY, "last_heads": 4}, "teacher_block": -1},
        )
    )
    ENTRIES.append(
        Entry(
            name=f"tinymim-{_size}.in1k-ft",
            module="zoo.models.tinymim.module.ViTFinetuneModule",
            init_args={"size": _size, "num_classes": 1000, "layer_decay": 0.65 if _size == "base" else 0.75},
            paper=PAPER,
            license=LICENSE,
            description=(
                f"TinyMIM ViT-{_size[0].upper()}/16 fine-tuned on ImageNet-1k ({_ft_heads} heads, global "
                "average pooling + fc_norm). forward(images) gives 1000-way logits."
            ),
            hub_repo=None,
            preprocess=PREPROCESS,
            pipeline_tag="image-classification",
            datasets=("imagenet-1k",),
            tags=("vision-transformer", "image-classification"),
            params=PARAMS_FT[_size],
            paper_metrics=(
                Metric(
                    "image-classification",
                    "imagenet-1k",
                    "ImageNet-1k",
                    "accuracy",
                    TOP1[_size],
                    "validation",
                    "top-1",
                    _FT_PROTOCOL,
                ),
            ),
            config="configs/tinymim-finetune.yaml" if _size == "base" else f"configs/tinymim-{_size}-finetune.yaml",
            recipe=_RECIPE_FT,
            limitations=(
                "No fine-tuned T/S/B weights are linked from the official repository by name; fine-tune a distilled "
                "student with the config. Layer decay for T/S (0.75 here) is our choice: the authors did not publish "
                "it."
                + (
                    " The fine-tuned ViT-T uses 3 heads although it was pre-trained with 6/12 (the authors' choice, "
                    "for parity with DeiT; OliverRensu/TinyMIM#4)."
                    if _size == "tiny"
                    else ""
                )
                + _FIDELITY_FT
            ),
            tiny_overrides={"net": _TINY, "num_classes": 10},
        )
    )

ENTRIES.append(
    Entry(
        name="tinymim-tiny-star",
        module="zoo.models.tinymim.module.ViTFinetuneModule",
        init_args={"size": "tiny-star", "num_classes": 1000, "layer_decay": 0.75},
        paper=PAPER,
        license=LICENSE,
        description=(
            "TinyMIM*-T: ViT-T/16 with 12 heads, a distillation token and a 192->1280 projection of the final "
            "tokens, fine-tuned on ImageNet-1k (~1000 epochs with DeiT-style distillation). forward(images) "
            "gives logits (class and distillation heads averaged)."
        ),
        hub_repo="zoo-models/tinymim-tiny-star",
        weights_note=_CONVERT_NOTE.format(
            file="TinyMIM-FT-Tstar.pth", name="tinymim-tiny-star", repo="zoo-models/tinymim-tiny-star"
        ),
        preprocess=PREPROCESS,
        pipeline_tag="image-classification",
        datasets=("imagenet-1k",),
        tags=("vision-transformer", "image-classification", "knowledge-distillation"),
        params=8_336_400,
        paper_metrics=(
            Metric(
                "image-classification",
                "imagenet-1k",
                "ImageNet-1k",
                "accuracy",
                79.6,
                "validation",
                "top-1",
                "TinyMIM*-T fine-tuned ~1000 epochs with DeiT-style distillation (teacher/recipe unpublished)",
            ),
            Metric(
                "image-segmentation",
                "scene_parse_150",
                "ADE20K",
                "mean_iou",
                45.0,
                "validation",
                "mIoU (UperNet)",
                _ADE_PROTOCOL + "; layer decay 0.8",
            ),
        ),
        config="configs/tinymim-tiny-star-finetune.yaml",
        recipe=(
            "Distilled ViT-T (TinyMIM), then ~1000 epochs of supervised fine-tuning with a DeiT distillation token "
            "(OliverRensu/TinyMIM#8); the distillation teacher and hyper-parameters were not released, so zoo "
            "fine-tunes T* with the MAE recipe and both heads on the labels."
        ),
        limitations=(
            "Converted from the official TinyMIM-FT-Tstar.pth (no licence upstream; MAE-derived, CC-BY-NC 4.0: "
            "non-commercial research use). The widths of fc_norm/head/head_dist (1280) and the pooling (mean of patch "
            "tokens for head, distillation token for head_dist) are our reading of the checkpoint's key names; the "
            "classification code of T* was not published, so the parameter count (8,336,400) is checked against that "
            "reading, not against the file. DeiT-style hard distillation during training is not implemented."
            + _FIDELITY_STAR
        ),
        tiny_overrides={"net": {**_TINY, "num_heads": 4, "neck_dim": 64}, "num_classes": 10},
    )
)


# The paper's central claim in miniature (zoo list --claims; the card's "Claim in miniature").
CLAIM = Claim(
    claim="Distilling the token relations (Q-K and V-V attention) of a masked-image-modelling teacher into a small "
    "ViT beats distilling its features or no distillation, measured by the student's fine-tuned accuracy.",
    paper="ImageNet-1K top-1 (README = paper table): TinyMIM ViT-T 75.8 vs MAE ViT-T 71.6 (S 83.0 vs 80.6, B 85.0 vs "
    "83.6); the relation vs feature / CLS distillation comparison is the paper's first finding, its numbers are not "
    "in the specs zoo was built from.",
    metric="test/acc1",
    arms=(
        Arm("relation distillation", "tinymim-finetune", after=("tinymim-teacher", "tinymim")),
        Arm(
            "feature distillation", "tinymim-finetune", "feature-distill", after=("tinymim-teacher", "tinymim-feature")
        ),
        Arm("no distillation", "tinymim-finetune", "scratch", ("--model.init_args.pretrained=null",)),
    ),
    design="A teacher pre-trained here with masked image modelling: configs/demo/tinymim-teacher.yaml trains a "
    "4-block, 96-wide ViT as a masked autoencoder (MAE: mask ratio 0.75, light decoder, normalised-pixel loss "
    "on the masked patches) on scikit-learn's digits (1,437 8x8 scans upscaled to 32x32, no labels); "
    "configs/demo/tinymim.yaml distils its last-block Q-K / V-V relations into a 4-block, 48-wide ViT student, "
    "configs/demo/tinymim-feature.yaml instead regresses the student's projected output tokens onto the "
    "teacher's whitened last-block tokens (smooth-L1, the paper's feature-distillation baseline; same student, "
    "recipe and epochs); configs/demo/tinymim-finetune.yaml fine-tunes each student, or a randomly initialised "
    "one, on the digits labels (10 classes) for 8 epochs with the same recipe; zoo reproduce reruns the whole "
    "chain for every seed. Differs from the paper: a toy teacher pre-trained for minutes on 1.4k tiny images "
    "instead of MAE ViT-B/L on ImageNet-1k, student and teacher of equal depth (teacher block = last), a few "
    "distillation epochs instead of 300, fine-tuning on the same small set the teacher saw, no Mixup/CutMix.",
    scale=100.0,
    unit="%",
    decimals=1,
)
