"""SimVTP registry entries (Ma, Yang, Shan, Li, arXiv 2212.03490; official code mayuelala/SimVTP, release commit
carried by wufeim/SimVTP @4b54321).

- ``simvtp-base``: the pre-training network (``SimVTPModule``): ViT-B video-text encoder over 16 x 224² clips
  (tubelet 2 x 16 x 16, 1568 tokens) + BERT-base embeddings, 4-block 384-d video decoder, linear MLM head, VTM head.
  ``forward(video, input_ids, attention_mask[, mask])`` -> features, VTM and MLM logits (and pixel reconstruction).
- ``simvtp-base.msrvtt-ft``: the MSR-VTT retrieval dual encoder (``SimVTPRetrievalModule``): two copies of the
  pre-trained encoder, LayerNorm(mean) features. ``forward`` -> (video, text) embeddings.

Weights: the authors' checkpoints are on Google Drive only (no stable URL, CC-BY-NC 4.0): ``pending`` entries whose
card says how to convert them (``python -m zoo.models.simvtp.convert``). This file imports nothing heavy.
"""

from zoo.registry import Entry, Metric, Paper
from zoo.results import Arm, Claim, Protocol, ResultSpec, Variant

PAPER = Paper(
    title="SimVTP: Simple Video Text Pre-training with Masked Autoencoders",
    arxiv="2212.03490",
    code="https://github.com/mayuelala/SimVTP",
    venue="arXiv 2022",
    citation="""@article{ma2022simvtp,
  title   = {SimVTP: Simple Video Text Pre-training with Masked Autoencoders},
  author  = {Ma, Yue and Yang, Tianyu and Shan, Yin and Li, Xiu},
  journal = {arXiv preprint arXiv:2212.03490},
  year    = {2022}
}""",
)
LICENSE = "cc-by-nc-4.0"  # official README: "the majority of this project is released under the CC-BY-NC 4.0 license"
PREPROCESS = {
    "input_size": [3, 16, 224, 224],  # (C, T, H, W)
    "num_frames": 16,
    "frame_stride": 4,
    "interpolation": "bilinear",
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "tokenizer": "bert-base-uncased (WordPiece, vocab 30522; the MiniLM package's identical uncased vocab serves "
    "offline use)",
}
_TINY = {
    "img_size": 32,
    "patch_size": 8,
    "num_frames": 4,
    "tubelet_size": 2,
    "embed_dim": 32,
    "depth": 2,
    "num_heads": 2,
    "vocab_size": 1000,
    "max_text_len": 32,
}
_MODULE = "zoo.models.simvtp.module"
_TASK, _DS, _DSN = "text-to-video-retrieval", "msr-vtt", "MSR-VTT 1k-A"
_FT_PROTOCOL = (
    "pre-trained on WebVid-2M (2.5M pairs) 200 epochs from VideoMAE Kinetics-400 weights, fine-tuned on "
    "MSR-VTT 9k, evaluated on the 1k-A test split (official README table)"
)
_PAPER_FT = (
    Metric(_TASK, _DS, _DSN, "recall@1", 53.6, "test", "text-to-video R@1", _FT_PROTOCOL),
    Metric(_TASK, _DS, _DSN, "recall@5", 81.9, "test", "text-to-video R@5", _FT_PROTOCOL),
    Metric(_TASK, _DS, _DSN, "recall@10", 90.7, "test", "text-to-video R@10", _FT_PROTOCOL),
)
_PAPER_10 = Metric(
    _TASK,
    _DS,
    _DSN,
    "recall@1",
    43.8,
    "test",
    "text-to-video R@1, 10 % of WebVid-2M",
    "pre-trained on 10 % of WebVid-2M (paper abstract; fine-tuned or zero-shot is not stated)",
)
_DIFFS = (
    "The released code differs from the paper; zoo exposes each difference as a switch with the released behaviour "
    "as default: (i) the 'text decoder' is one linear layer on the encoder's text outputs (net.text_decoder_depth=0; "
    ">0 adds transformer blocks as in the paper's figure); (ii) the mean-pooled features include text padding "
    "(pool_padding=True; net.pool_padding in fine-tuning); (iii) VTC and VTM see the masked text and only the visible "
    "tubelets (contrast_masked_inputs=True); (iv) masked words all become [MASK] (mlm_replace_mask=1.0, no 80/10/10); "
    "(v) MLM never selects a special token ([PAD] [UNK] [CLS] [SEP] [MASK], the tokenizer's special-tokens mask in the "
    "release's mask_batch_text_tokens); mlm_unk_mask_eligible=True is zoo's earlier behaviour, which let [UNK] and "
    "[MASK] be selected. "
)
_CONVERT = (
    "download the authors' checkpoint (Google Drive links in github.com/mayuelala/SimVTP), convert it with "
    "`python -m zoo.models.simvtp.convert FILE {name} out/{name}` and load 'local-dir:out/{name}'. VideoMAE "
    "weights (official .pth or transformers VideoMAE) initialise pre-training through init_from; a "
    "transformers VideoMAE without the final LayerNorm (use_mean_pooling=True, e.g. a Kinetics fine-tuned "
    "model) is refused, since SimVTP's encoder.norm could not be filled from it. The release's save_model "
    "files ({{model, optimizer, epoch, scaler, args: argparse.Namespace}}) are read with "
    "torch.load(weights_only=True) admitting only argparse.Namespace and numpy values; fine-tuning checks the "
    "pre-training checkpoint exists and fits (key, checkpoint vs model shape) before it starts."
)

RESULTS = ResultSpec(
    task=_TASK,
    split="test",
    metrics={
        "t2v_r1": ("recall@1", "text-to-video R@1"),
        "t2v_r5": ("recall@5", "text-to-video R@5"),
        "t2v_r10": ("recall@10", "text-to-video R@10"),
        "t2v_medr": ("median-rank", "text-to-video MdR"),
        "v2t_r1": ("recall@1", "video-to-text R@1"),
    },
    protocols={
        "test": Protocol(
            "the final fine-tuned model on the MSR-VTT 1k-A test split, embeddings averaged over 3 segments x 3 crops",
            {k: f"test/{k}" for k in ("t2v_r1", "t2v_r5", "t2v_r10", "t2v_medr", "v2t_r1")},
            stage="test",
        )
    },
    variants={
        "default": Variant(
            "configs/simvtp-msrvtt-ft.yaml: MSR-VTT 9k fine-tuning from a SimVTP pre-training checkpoint"
        )
    },
    dataset_names={_DS: _DSN},
    decimals=1,
)

ENTRIES = [
    Entry(
        name="simvtp-base",
        module=f"{_MODULE}.SimVTPModule",
        init_args={"size": "base"},
        paper=PAPER,
        license=LICENSE,
        description=(
            "SimVTP pre-training network: a ViT-B video-text encoder (tube-masked 16x224² clips + BERT "
            "embeddings in one transformer), a 4-block 384-d pixel decoder, a linear MLM head and a VTM "
            "head. forward(video, input_ids, attention_mask[, mask]) gives mean-pooled video/text features, "
            "VTM and MLM logits and, with a mask, the reconstructed tubelets."
        ),
        hub_repo="zoo-models/simvtp-base",
        weights_note=_CONVERT.format(name="simvtp-base"),
        preprocess=PREPROCESS,
        pipeline_tag="feature-extraction",
        datasets=("webvid-2m",),
        tags=("video", "video-text", "masked-autoencoder", "vision-transformer", "videomae"),
        params=141_521_084,
        paper_metrics=(*_PAPER_FT, _PAPER_10),
        config="configs/simvtp.yaml",
        recipe=(
            "WebVid-2M, 200 epochs, batch 1024 (16 x 64 V100), AdamW (0.9, 0.95), weight decay 0.05, lr 1.5e-4 x "
            "batch/256 with 40 warm-up epochs from 1e-6 x batch/256 and per-step cosine to 1e-5 x batch/256, "
            "fp32, no clipping. Clips: 16 frames at stride 4 from a random start, TSN multi-scale crop "
            "{1, .875, .75, .66} to 224, ImageNet normalisation. Tube masking 90 %, text masking 75 % (all "
            "[MASK]); L = L_v + L_t + L_vtc + L_vtm (VTC: NormSoftmax tau 0.05 on mean-pooled single-modality "
            "passes; VTM: one in-batch negative per caption). Encoder and decoder start from VideoMAE ViT-B "
            "Kinetics-400 (1600 epochs), text embeddings from bert-base-uncased. " + _DIFFS
        ),
        limitations=(
            "No weights are published at a stable URL: train with the config or convert the authors' "
            "Google Drive checkpoint. CC-BY-NC 4.0 (non-commercial). The parameter count is the released "
            "layout (encoder, BERT embeddings, decoder, text_cls, vtm_head). The paper's headline numbers "
            "are after fine-tuning (simvtp-base.msrvtt-ft); per-ablation and zero-shot numbers were not "
            "retrievable."
        ),
        tiny_overrides={"net": {**_TINY, "decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2}},
    ),
    Entry(
        name="simvtp-base.msrvtt-ft",
        module=f"{_MODULE}.SimVTPRetrievalModule",
        init_args={"size": "base"},
        paper=PAPER,
        license=LICENSE,
        description=(
            "SimVTP fine-tuned for MSR-VTT text-video retrieval: a dual encoder, two copies of the "
            "pre-trained ViT-B encoder (video: tubelets; text: BERT embeddings), each LayerNorm(mean of "
            "tokens). forward(video, input_ids, attention_mask) -> (video, text) 768-d embeddings; "
            "similarity = cosine."
        ),
        hub_repo="zoo-models/simvtp-base.msrvtt-ft",
        weights_note=_CONVERT.format(name="simvtp-base.msrvtt-ft"),
        preprocess=PREPROCESS,
        pipeline_tag="feature-extraction",
        datasets=("msr-vtt",),
        tags=("video", "video-text", "text-to-video-retrieval", "vision-transformer"),
        params=195_111_168,
        paper_metrics=_PAPER_FT,
        results=RESULTS,
        config="configs/simvtp-msrvtt-ft.yaml",
        recipe=(
            "MSR-VTT 9k train (Frozen-in-Time split), 100 epochs, batch 64 (8 x 8), AdamW (0.9, 0.999), lr "
            "3e-4 x batch/256, layer-wise lr decay 0.75, weight decay 0.05, 5 warm-up epochs, cosine to 1e-6, "
            "drop path 0.1, NormSoftmax loss (tau 0.05) on the batch's text x video cosine matrix; 16 frames at "
            "stride 4, 224 crop. Test: MSR-VTT 1k-A, embeddings averaged over 3 segments x 3 crops, t2v/v2t "
            "R@1/5/10, MdR, MnR; model selection on t2v R@1. " + _DIFFS
        ),
        limitations=(
            "No weights at a stable URL (authors' Google Drive, CC-BY-NC 4.0). The released fine-tuned file "
            "also holds a text-embedding module in the video copy and a tubelet embedding in the text copy "
            "that are never used; zoo leaves them out (the count here is without them; the released file has "
            "25,017,600 more). "
            "The released fine-tuning also used RandAugment (rand-m7-n4-mstd0.5-inc1) and random erasing "
            "0.25 on the frames and DeepSpeed fp16; zoo's data module does the multi-scale crop only."
        ),
        tiny_overrides={"net": dict(_TINY)},
    ),
]

# The paper's central claim in miniature (zoo list --claims; the card's "Claim in miniature").
CLAIM = Claim(
    claim="Masked video-text pre-training (video masked 90 %, text 75 %, plus VTC/VTM) transfers: retrieval "
    "fine-tuned from the pre-trained encoder beats the same fine-tuning without it.",
    paper="MSR-VTT text-to-video R@1 53.6 fine-tuned after pre-training on WebVid-2M, 43.8 with 10 % of it (README "
    "table; abstract); baselines Frozen 31.0 ... BFormer 37.6. The paper gives no from-scratch number.",
    metric="test/t2v_r1",
    arms=(
        Arm("pre-trained", "simvtp-finetune", after=("simvtp",)),
        Arm("from scratch", "simvtp-finetune", "scratch", ("--model.init_args.pretrained=null",)),
    ),
    design="configs/demo/simvtp.yaml pre-trains a 3-block, 64-wide encoder on 1,000 synthetic moving-digit clips (4 "
    "frames, 32 px) with template captions; configs/demo/simvtp-finetune.yaml fine-tunes it for retrieval (4 epochs) "
    "and is scored on 400 held-out clips (40 caption classes: chance R@1 ~2.5 %). The paper pre-trains ViT-B on "
    "WebVid-2M and fine-tunes on MSR-VTT; here both sides are toy-sized and synthetic.",
    unit="%",
    decimals=1,
)
