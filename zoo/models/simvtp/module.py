"""SimVTP LightningModules: video-text masked autoencoding (pre-training) and text-video retrieval (fine-tuning).

Ma et al., "SimVTP: Simple Video Text Pre-training with Masked Autoencoders", arXiv 2212.03490; facts from the
official code release (``engine_for_pretraining.py``, ``loss.py``, ``run_simvtp_pretraining.py``,
``modeling_finetune.py``, ``run_simvtp_finetuning.py``, ``scripts/*.sh``).

:class:`SimVTPModule` (pre-training). Per step, with V a batch of clips and t its captions:

- tube mask M (``mask_ratio`` 0.9 of the spatial positions, the same in every temporal slice) and BERT masking of
  the text (``mlm_probability`` 0.75 of the tokens that are not special, i.e. not [PAD] [UNK] [CLS] [SEP] [MASK];
  all of them become [MASK], as released) -> t̃;
- ``L_v``: MSE between the decoder's prediction and the per-tubelet normalised pixels of the masked tubelets;
- ``L_t``: cross-entropy of ``text_cls`` at the masked words of the joint pass over [V_visible ; t̃]
  (``zoo.ops.fused_linear_cross_entropy``: the (tokens x 30522) logits are never materialised on CUDA with the kernel);
- ``L_vtc``: NormSoftmax (Frozen-in-Time) on s_ij = cos(mean Enc(t̃_i), mean Enc(V_j visible)), τ = 0.05:
  -(1/B) Σ_i log softmax_j(s_ij/τ)[i] - (1/B) Σ_j log softmax_i(s_ij/τ)[j];
- ``L_vtm``: one in-batch negative clip per caption (uniform over the other B-1, with its own mask); joint passes on
  B positives + B negatives; cross-entropy of ``vtm_head`` on the mean over all tokens (label 1 / 0);
- ``L = L_v + L_t + L_vtc + L_vtm``. AdamW (0.9, 0.95), wd 0.05, lr = 1.5e-4 x batch/256, warm-up from 1e-6 x
  batch/256, per-step cosine to 1e-5 x batch/256.

Switches for the released code's differences from the paper (defaults = as released): ``net.text_decoder_depth`` 0
(the "text decoder" is the linear ``text_cls``), ``pool_padding`` True (means include text padding),
``contrast_masked_inputs`` True (VTC and VTM see the masked text and the visible tubelets only),
``mlm_unk_mask_eligible`` False (as released, [UNK] and [MASK] in a caption are never selected for MLM; True is zoo's
earlier behaviour, which excluded only [CLS], [SEP] and padding).

:class:`SimVTPRetrievalModule` (fine-tuning). The dual encoder (two copies of the pre-trained encoder, LayerNorm of
the mean), NormSoftmax on the batch's text x video cosine matrix (τ 0.05), AdamW (0.9, 0.999) with layer-wise lr
decay 0.75, lr 3e-4 x batch/256, warm-up + cosine to 1e-6, drop path 0.1. Evaluation: text->video and video->text
R@1/5/10, median and mean rank (``zoo.metrics.retrieval.CrossModalRetrieval``); a clip given as several views
(B, V, C, T, H, W: segments x crops) is embedded per view and the embeddings are averaged.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor

from zoo.errors import UserError
from zoo.models.simvtp.model import SimVTPDualEncoder, SimVTPPretrainModel, mean_tokens
from zoo.models.simvtp.sizes import DEFAULT, RETRIEVAL_SIZES, SIZES
from zoo.nn.video import normalized_tubelet_targets, tube_mask
from zoo.sizes import net_args
from zoo.training import TimmScheduled, scaled_lr, warmup_cosine_epochs

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ============================================================================================== losses
def norm_softmax_loss(sim: Tensor, temperature: float = 0.05) -> Tensor:
    """Frozen-in-Time's NormSoftmaxLoss on a (B, B) cosine matrix whose diagonal holds the pairs (rows: texts)."""
    x = sim.float() / temperature
    i = F.log_softmax(x, dim=1).diagonal().mean()
    j = F.log_softmax(x.t(), dim=1).diagonal().mean()
    return -i - j


def cosine_matrix(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    """(N, D), (M, D) -> (N, M) cosine similarities (each row divided by max(norm, eps), as ``sim_matrix``)."""
    a = a / a.norm(dim=1, keepdim=True).clamp_min(eps)
    b = b / b.norm(dim=1, keepdim=True).clamp_min(eps)
    return a @ b.t()


def vtm_negatives(batch: int, generator: torch.Generator | None = None) -> Tensor:
    """For each i, an index drawn uniformly from the other ``batch - 1`` samples."""
    if batch < 2:
        raise UserError(
            "SimVTP's VTM loss needs at least 2 clips per batch (one in-batch negative per caption): "
            "raise data.init_args.batch_size"
        )
    return (torch.arange(batch) + torch.randint(1, batch, (batch,), generator=generator)) % batch


def mask_text(
    input_ids: Tensor,
    attention_mask: Tensor,
    probability: float,
    mask_token_id: int,
    special_ids: Sequence[int],
    generator: torch.Generator | None = None,
    replace_mask: float = 1.0,
    replace_random: float = 0.0,
    vocab_size: int | None = None,
):
    """BERT-style masking as released (``mask_batch_text_tokens`` in the release's ``utils.py``: the tokenizer's
    ``get_special_tokens_mask`` excludes every special token, [PAD] [UNK] [CLS] [SEP] [MASK], given in
    ``special_ids``): each non-special, non-padding token is selected with ``probability``; a
    selected token becomes [MASK] with ``replace_mask`` (released 1.0), else a random word with
    ``replace_random / (1 - replace_mask)``, else stays. -> (masked ids, labels: the original id where selected, -100
    elsewhere)."""
    ids = input_ids.clone()
    special = attention_mask == 0
    for s in special_ids:
        special |= input_ids == s
    p = torch.rand(ids.shape, generator=generator).to(ids.device)
    selected = (p < probability) & ~special
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, -100))
    u = torch.rand(ids.shape, generator=generator).to(ids.device)
    to_mask = selected & (u < replace_mask)
    ids[to_mask] = mask_token_id
    if replace_random > 0:
        to_rand = selected & ~to_mask & (u < replace_mask + replace_random)
        rand = torch.randint(vocab_size, ids.shape, generator=generator).to(ids.device)
        ids[to_rand] = rand[to_rand]
    return ids, labels


def _example_inputs(
    num_frames: int, img_size: int, grid, ratio: float, vocab_size: int, batch: int = 2, length: int = 8
):
    cpu = torch.device("cpu")  # real tensors even when the module is built under torch.device("meta")
    g = torch.Generator(device=cpu).manual_seed(0)
    video = torch.randn(batch, 3, num_frames, img_size, img_size, generator=g, device=cpu)
    ids = torch.randint(200, max(201, min(vocab_size, 2000)), (batch, length), generator=g, device=cpu)
    ids[:, 0], ids[:, -1] = 101, 102
    att = torch.ones(batch, length, dtype=torch.long, device=cpu)
    att[1, -2:] = 0
    ids[1, -2:] = 0
    return video, ids, att, tube_mask(batch, grid, ratio, generator=g)


def _check_batch(batch: dict, model_frames: int, model_size: int) -> None:
    video = batch["video"]
    T, H = video.shape[-3], video.shape[-2]
    if (T, H) != (model_frames, model_size):
        raise UserError(
            f"the data gives clips of {T} frames at {H} px but the model takes {model_frames} frames at "
            f"{model_size} px: set data.init_args.frames / image_size to the model's (or null)"
        )


def _data_config(arch: dict) -> dict:
    """What the network fixes in its data: clip length, frame size, and the text length its position table holds."""
    return {"frames": arch["num_frames"], "image_size": arch["img_size"], "max_tokens": arch["max_text_len"]}


def _bench_cpu_size(init_args: dict, demo_init_args: dict) -> tuple[dict, str]:
    """``zoo bench --train`` hook: on a machine without CUDA, the demo config's (CPU) size and ``net``; with CUDA the
    entry's."""
    if torch.cuda.is_available():
        return {}, ""
    over = {
        k: demo_init_args[k] for k in ("size", "net") if k in demo_init_args and init_args.get(k) != demo_init_args[k]
    }
    if not over:
        return {}, ""
    return over, "no CUDA: the demo's CPU size (" + ", ".join(f"{k}={v}" for k, v in over.items()) + ")"


def _build(network: type, sizes: dict, size: str, net: dict | None, where: str):
    """-> (the network, all its constructor arguments: the size's, the overrides, the constructor's defaults)."""
    defaults = {k: p.default for k, p in inspect.signature(network).parameters.items()}
    args = net_args(sizes, size, net, where=where, allowed=set(defaults))
    return network(**args), {**defaults, **args}


# ============================================================================================== pre-training


class SimVTPModule(TimmScheduled, LightningModule):
    """SimVTP pre-training (see the module docstring). ``forward(video, input_ids, attention_mask[, mask])`` gives the
    model's inference dict (``SimVTPPretrainModel.forward``). ``size``: a size of ``sizes.py`` (``base``); ``net``:
    overrides of :class:`SimVTPPretrainModel`'s arguments (``text_decoder_depth``, ``drop_path_rate``, a small
    demo's widths; ``pad_token_id`` also masks padding out of MLM). ``init_from``: VideoMAE/SimVTP weights to start from
    (loaded in ``setup``, keys whose shape differs dropped, as released): an official ``.pth``, a transformers
    VideoMAE folder / Hub name, or a zoo source; ``text_init``: a transformers BERT folder / Hub name whose
    embeddings initialise ``text_embeddings`` (released: bert-base-uncased). ``mlm_impl``: the ``zoo.ops`` impl of
    the MLM loss (``"auto"``: the fused Triton kernel on CUDA, else the PyTorch reference; ``FusedKernels`` and the
    ``zoo_ddp`` strategy switch it for a run). ``*_token_id``: the tokenizer's other special ids (BERT's); MLM
    never selects any of them (as released) unless ``mlm_unk_mask_eligible`` (zoo's earlier behaviour: [UNK] and
    [MASK] may be selected, only [CLS], [SEP] and padding are excluded)."""

    @classmethod
    def bench_init_args(cls, init_args: dict, demo_init_args: dict) -> tuple[dict, str]:
        """``zoo bench --train``: on a CPU-only machine the step runs at the demo's size (a ViT-B step over 16 x 224²
        clips takes minutes there); with CUDA at the entry's (ViT-B, 16 x 224²). Sizes given with ``--model-arg``
        that differ from the entry's are kept (no override is returned then)."""
        return _bench_cpu_size(init_args, demo_init_args)

    def __init__(
        self,
        size: str = DEFAULT,
        net: dict[str, Any] | None = None,
        mask_ratio: float = 0.9,
        mlm_probability: float = 0.75,
        mlm_replace_mask: float = 1.0,
        mlm_replace_random: float = 0.0,
        temperature: float = 0.05,
        normalize_target: bool = True,
        pool_padding: bool = True,
        contrast_masked_inputs: bool = True,
        loss_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        cls_token_id: int = 101,
        sep_token_id: int = 102,
        mask_token_id: int = 103,
        unk_token_id: int = 100,
        mlm_unk_mask_eligible: bool = False,
        init_from: str | None = None,
        text_init: str | None = None,
        lr: float | None = None,
        blr: float = 1.5e-4,
        min_blr: float = 1e-5,
        warmup_blr: float = 1e-6,
        weight_decay: float = 0.05,
        betas: Sequence[float] = (0.9, 0.95),
        warmup_epochs: float = 40,
        mlm_impl: str = "auto",
    ):
        super().__init__()
        self.save_hyperparameters()
        if not 0.0 <= mask_ratio < 1.0:
            raise UserError(f"mask_ratio={mask_ratio}: the fraction of masked tubes must be in [0, 1) (paper: 0.9)")
        if not 0.0 < mlm_probability <= 1.0:
            raise UserError(f"mlm_probability={mlm_probability} must be in (0, 1] (released: 0.75)")
        if len(loss_weights) != 4:
            raise UserError(f"loss_weights={list(loss_weights)}: give 4 weights (L_v, L_t, L_vtc, L_vtm)")
        for name, value in (("temperature", temperature), ("blr", blr)):
            if not value > 0:
                raise UserError(f"{name}={value} must be > 0 (released: temperature 0.05)")
        from zoo.ops import LinearCrossEntropyLoss

        self.model, self.arch = _build(SimVTPPretrainModel, SIZES, size, net, "SimVTPModule")
        self.mlm_loss = LinearCrossEntropyLoss(ignore_index=-100, impl=mlm_impl)
        self.register_buffer("initialised", torch.zeros((), dtype=torch.long))  # 1 once init_from/text_init loaded
        self.example_input_array = _example_inputs(
            self.arch["num_frames"], self.arch["img_size"], self.model.grid, mask_ratio, self.arch["vocab_size"]
        )
        from zoo.metrics.retrieval import CrossModalRetrieval

        self.val_retrieval = CrossModalRetrieval()

    def data_config(self) -> dict:
        """The data facts the network fixes (``frames``, ``image_size``, ``max_tokens``): a video data module whose
        arguments are unset follows them (``zoo.sizes.follow_model``)."""
        return _data_config(self.arch)

    # ----------------------------------------------------------------------------------------- weights
    def setup(self, stage: str) -> None:
        hp = self.hparams
        if int(self.initialised) == 0 and (hp.init_from or hp.text_init):
            from zoo.models.simvtp.convert import load_pretraining_init

            report = load_pretraining_init(self.model, hp.init_from, hp.text_init)
            self.initialised.fill_(1)
            log.info("SimVTP initialisation: %s", report)

    def forward(self, video, input_ids=None, attention_mask=None, mask=None):
        return self.model(video, input_ids, attention_mask, mask)

    # ----------------------------------------------------------------------------------------- objective
    def losses(
        self,
        video: Tensor,
        input_ids: Tensor,
        attention_mask: Tensor,
        mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """The four losses of one batch (each weight 1 in ``loss``); ``mask`` / ``generator`` fix the randomness."""
        hp, m = self.hparams, self.model
        B = video.shape[0]
        if mask is None:
            mask = tube_mask(B, m.grid, hp.mask_ratio, generator=generator, device=video.device)
        special = (hp.cls_token_id, hp.sep_token_id, self.arch["pad_token_id"])
        if not hp.mlm_unk_mask_eligible:
            special += (hp.unk_token_id, hp.mask_token_id)
        ids, labels = mask_text(
            input_ids,
            attention_mask,
            hp.mlm_probability,
            hp.mask_token_id,
            special,
            generator,
            hp.mlm_replace_mask,
            hp.mlm_replace_random,
            self.arch["vocab_size"],
        )
        keep = None if hp.pool_padding else attention_mask
        # joint pass: MVM + MLM
        v_tok, t_tok = m.encode_joint(video, mask, ids, attention_mask)
        pred = m.reconstruct(v_tok, mask)
        target = normalized_tubelet_targets(
            video, IMAGENET_MEAN, IMAGENET_STD, m.tubelet_size, m.patch_size, hp.normalize_target
        )
        target = target[mask].reshape(B, -1, target.shape[-1])
        loss_v = F.mse_loss(pred.float(), target)
        hidden = m.text_hidden(t_tok, attention_mask)
        if bool((labels != -100).any()):
            loss_t = self.mlm_loss(hidden, m.text_cls.weight, m.text_cls.bias, labels)
        else:  # no word selected in the whole batch (very short captions): nothing to predict
            loss_t = hidden.sum() * 0.0
        # VTC: single-modality passes
        c_ids, c_mask = (ids, mask) if hp.contrast_masked_inputs else (input_ids, None)
        v_feat = mean_tokens(m.encode_video(video, c_mask))
        t_feat = mean_tokens(m.encode_text(c_ids, attention_mask), keep)
        loss_vtc = norm_softmax_loss(cosine_matrix(t_feat, v_feat), hp.temperature)
        # VTM: B positives + B in-batch negatives, same (masked) text
        neg = vtm_negatives(B, generator).to(video.device)
        videos = torch.cat([video, video[neg]])
        masks = None if c_mask is None else torch.cat([c_mask, c_mask[neg]])
        att2 = torch.cat([attention_mask, attention_mask])
        jv, jt = m.encode_joint(videos, masks, torch.cat([c_ids, c_ids]), att2)
        joint_keep = None if keep is None else torch.cat([att2.new_ones(jv.shape[:2]), att2], 1)
        vtm_logits = m.vtm_head(mean_tokens(torch.cat([jv, jt], 1), joint_keep))
        vtm_labels = torch.cat([torch.ones(B), torch.zeros(B)]).long().to(video.device)
        loss_vtm = F.cross_entropy(vtm_logits.float(), vtm_labels)
        w = hp.loss_weights
        loss = w[0] * loss_v + w[1] * loss_t + w[2] * loss_vtc + w[3] * loss_vtm
        return {
            "loss": loss,
            "loss_v": loss_v,
            "loss_t": loss_t,
            "loss_vtc": loss_vtc,
            "loss_vtm": loss_vtm,
            "vtm_acc": (vtm_logits.argmax(-1) == vtm_labels).float().mean(),
        }

    def training_step(self, batch, batch_idx):
        _check_batch(batch, self.arch["num_frames"], self.arch["img_size"])
        out = self.losses(batch["video"], batch["input_ids"], batch["attention_mask"])
        B = batch["video"].shape[0]
        for k, v in out.items():
            self.log(f"train/{k}", v, batch_size=B, prog_bar=k == "loss")
        if "skipped" in batch:
            self.log("train/decode_skips", float(batch["skipped"]), batch_size=B, reduce_fx="sum")
        return out["loss"]

    def validation_step(self, batch, batch_idx):
        """Zero-shot retrieval with the pre-trained encoder: mean-pooled unmasked video-only and text-only passes."""
        m = self.model
        video = batch["video"]
        views = video.flatten(0, 1) if video.dim() == 6 else video
        v = mean_tokens(m.encode_video(views))
        if video.dim() == 6:
            v = v.view(video.shape[0], video.shape[1], -1).mean(1)
        keep = None if self.hparams.pool_padding else batch["attention_mask"]
        t = mean_tokens(m.encode_text(batch["input_ids"], batch["attention_mask"]), keep)
        ids = batch["match_id"]
        self.val_retrieval.update(v, t, ids, ids)

    def on_validation_epoch_end(self):
        for k, v in self.val_retrieval.compute().items():
            self.log(f"val/{k}", v, prog_bar=k == "t2v_r1")
        self.val_retrieval.reset()

    def configure_optimizers(self):
        from timm.optim import param_groups_weight_decay

        hp = self.hparams
        groups = param_groups_weight_decay(self.model, hp.weight_decay, no_weight_decay_list=("mask_token",))
        lr = scaled_lr(self, hp.lr, hp.blr, per=256)
        scale = lr / hp.blr
        opt = torch.optim.AdamW(groups, lr=lr, betas=tuple(hp.betas), eps=1e-8)
        return {
            "optimizer": opt,
            "lr_scheduler": warmup_cosine_epochs(
                self, opt, hp.warmup_epochs, hp.min_blr * scale, hp.warmup_blr * scale
            ),
        }


# ============================================================================================== fine-tuning
def layer_decay_groups(model: SimVTPDualEncoder, weight_decay: float, layer_decay: float) -> list[dict]:
    """Parameter groups with layer-wise lr decay (VideoMAE ``LayerDecayValueAssigner``): the embeddings are layer 0,
    block i is layer i + 1, ``fc_norm`` layer depth + 1; a group's ``lr_scale`` is ``layer_decay ** (depth + 1 -
    layer)``; no weight decay on 1-D parameters and biases. Both towers share the schedule."""
    depth = model.depth
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        parts = name.split(".")
        layer = (
            int(parts[2]) + 1
            if parts[1] == "blocks"
            else (0 if parts[1] in ("patch_embed", "text_embeddings") else depth + 1)
        )
        decay = p.ndim > 1 and not name.endswith(".bias")
        g = groups.setdefault(
            (layer, decay),
            {
                "params": [],
                "weight_decay": weight_decay if decay else 0.0,
                "lr_scale": layer_decay ** (depth + 1 - layer),
            },
        )
        g["params"].append(p)
    return [groups[k] for k in sorted(groups)]


class SimVTPRetrievalModule(TimmScheduled, LightningModule):
    """SimVTP fine-tuned for text-video retrieval (see the module docstring). ``forward(video, input_ids,
    attention_mask)`` -> (video embeddings, text embeddings), each (B, D), not normalised. ``pretrained``: weights of
    a pre-training run to start from (loaded in ``setup`` when the model was not initialised yet): a Lightning
    ``.ckpt`` of :class:`SimVTPModule`, an official SimVTP pre-training ``.pth``, or a zoo source of a ``simvtp-*``
    pre-trained entry; ``None`` trains from random weights. ``size`` / ``net``: as :class:`SimVTPModule`, for
    :class:`SimVTPDualEncoder` (``drop_path_rate`` 0.1 and ``pool_padding`` True as released)."""

    @classmethod
    def bench_init_args(cls, init_args: dict, demo_init_args: dict) -> tuple[dict, str]:
        """As :meth:`SimVTPModule.bench_init_args`; the pre-training checkpoint is not needed to time a step."""
        over, note = _bench_cpu_size(init_args, demo_init_args)
        return {**over, "pretrained": None}, note or "random initial weights"

    def __init__(
        self,
        size: str = DEFAULT,
        net: dict[str, Any] | None = None,
        temperature: float = 0.05,
        pretrained: str | None = None,
        lr: float | None = None,
        blr: float = 3e-4,
        min_lr: float = 1e-6,
        layer_decay: float = 0.75,
        weight_decay: float = 0.05,
        betas: Sequence[float] = (0.9, 0.999),
        warmup_epochs: float = 5,
    ):
        super().__init__()
        self.save_hyperparameters()
        for name, value in (("temperature", temperature), ("blr", blr)):
            if not value > 0:
                raise UserError(f"{name}={value} must be > 0 (released: temperature 0.05)")
        if not 0.0 < layer_decay <= 1.0:
            raise UserError(f"layer_decay={layer_decay} must be in (0, 1] (released: 0.75)")
        self.model, self.arch = _build(SimVTPDualEncoder, RETRIEVAL_SIZES, size, net, "SimVTPRetrievalModule")
        self.register_buffer("initialised", torch.zeros((), dtype=torch.long))
        example = _example_inputs(
            self.arch["num_frames"], self.arch["img_size"], (1, 1, 1), 0.0, self.arch["vocab_size"]
        )
        self.example_input_array = example[:3]  # no mask
        from zoo.metrics.retrieval import CrossModalRetrieval

        self.val_retrieval = CrossModalRetrieval()
        self.test_retrieval = CrossModalRetrieval()

    def data_config(self) -> dict:
        """As :meth:`SimVTPModule.data_config`."""
        return _data_config(self.arch)

    def setup(self, stage: str) -> None:
        if self.hparams.pretrained and int(self.initialised) == 0:
            from zoo.models.simvtp.convert import load_dual_from_pretraining

            load_dual_from_pretraining(self.model, self.hparams.pretrained)
            self.initialised.fill_(1)
            log.info("SimVTP dual encoder initialised from %s", self.hparams.pretrained)

    def forward(self, video, input_ids=None, attention_mask=None):
        return self.model(video, input_ids, attention_mask)

    def embed_video(self, video: Tensor) -> Tensor:
        """(B, C, T, H, W) or multi-view (B, V, C, T, H, W) -> (B, D), views averaged."""
        if video.dim() == 6:
            B, V = video.shape[:2]
            return self.model.encode_video(video.flatten(0, 1)).view(B, V, -1).mean(1)
        return self.model.encode_video(video)

    def training_step(self, batch, batch_idx):
        hp = self.hparams
        _check_batch(batch, self.arch["num_frames"], self.arch["img_size"])
        v = self.embed_video(batch["video"])
        t = self.model.encode_text(batch["input_ids"], batch["attention_mask"])
        loss = norm_softmax_loss(cosine_matrix(t, v), hp.temperature)
        B = v.shape[0]
        self.log("train/loss", loss, batch_size=B, prog_bar=True)
        if "skipped" in batch:
            self.log("train/decode_skips", float(batch["skipped"]), batch_size=B, reduce_fx="sum")
        return loss

    def _eval(self, batch, metric) -> None:
        v = self.embed_video(batch["video"])
        t = self.model.encode_text(batch["input_ids"], batch["attention_mask"])
        metric.update(v, t, batch["match_id"], batch["match_id"])

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0):
        """The batch's video embeddings (``video_embeds``) and, when it has captions, text embeddings."""
        out = {"video_embeds": self.embed_video(batch["video"]).cpu()}
        if batch.get("input_ids") is not None:
            out["text_embeds"] = self.model.encode_text(batch["input_ids"], batch["attention_mask"]).cpu()
        return out

    def figure_inputs(self, batch, outputs=None, max_items: int = 4, top_k: int = 3) -> dict:
        """A retrieval figure spec (:func:`zoo.figures.retrieval`): the first ``max_items`` captions of the batch as
        queries, each with its ``top_k`` videos of the batch by cosine similarity (the true match: same
        ``match_id``). Captions are the batch's ``caption`` strings, else its token ids decoded by id."""
        emb = outputs if isinstance(outputs, dict) and "text_embeds" in outputs else self.predict_step(batch, 0)
        if "text_embeds" not in emb:
            raise UserError("the SimVTP retrieval figure needs captions in the batch (input_ids, attention_mask)")
        sim = cosine_matrix(emb["text_embeds"].float(), emb["video_embeds"].float())  # (texts, videos)
        k = min(top_k, sim.shape[1])
        scores, ranked = sim.topk(k, dim=1)
        match = batch.get("match_id")
        texts = batch.get("caption")
        queries = []
        for i in range(min(max_items, sim.shape[0])):
            if texts is not None:
                text = str(texts[i])
            else:
                ids = batch["input_ids"][i][batch["attention_mask"][i].bool()].tolist()
                text = "token ids " + " ".join(map(str, ids))
            true = -1
            if match is not None:
                hits = (match.cpu() == match[i].cpu()).nonzero().flatten().tolist()
                true = hits[0] if hits else -1
            queries.append({"caption": text, "ranked": ranked[i].tolist(), "scores": scores[i].tolist(), "match": true})
        video = batch["video"]
        video = video[:, 0] if video.dim() == 6 else video  # multi-view: the first view
        return {
            "kind": "retrieval",
            "queries": queries,
            "videos": video.cpu(),
            "title": f"SimVTP text -> video retrieval, top {k} of {sim.shape[1]} videos in the batch",
        }

    def validation_step(self, batch, batch_idx):
        self._eval(batch, self.val_retrieval)

    def test_step(self, batch, batch_idx):
        self._eval(batch, self.test_retrieval)

    def _log_metric(self, metric, stage: str) -> None:
        for k, v in metric.compute().items():
            self.log(f"{stage}/{k}", v, prog_bar=k == "t2v_r1")
        metric.reset()

    def on_validation_epoch_end(self):
        self._log_metric(self.val_retrieval, "val")

    def on_test_epoch_end(self):
        self._log_metric(self.test_retrieval, "test")

    def configure_optimizers(self):
        hp = self.hparams
        lr = scaled_lr(self, hp.lr, hp.blr, per=256)
        groups = layer_decay_groups(self.model, hp.weight_decay, hp.layer_decay)
        for g in groups:
            g["lr"] = lr * g["lr_scale"]
        opt = torch.optim.AdamW(groups, lr=lr, betas=tuple(hp.betas))
        return {"optimizer": opt, "lr_scheduler": warmup_cosine_epochs(self, opt, hp.warmup_epochs, hp.min_lr)}
