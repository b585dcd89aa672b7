"""TinyMIM LightningModules: relation distillation (pre-training) and MAE-style fine-tuning.

Ren et al., "TinyMIM: An Empirical Study of Distilling MIM Pre-trained Models", CVPR 2023 (arXiv 2301.01296);
facts from the official code (OliverRensu/TinyMIM: main_pretrain.py, engine_pretrain.py; README).

:class:`TinyMIMDistillModule` (Sec. 3.2, Eq. 2-4; official main_pretrain.py)
    A frozen MIM teacher and a ViT student see the same crop (the student's copy colour-jittered); the teacher's
    block ``teacher_block`` and the student's last block each give per-head relations

        R_qk = softmax(q kᵀ / √d_h),   R_vv = softmax(v vᵀ / √d_h)      (d_h: that model's own head dim)

    and the loss is  L = KL(R_qk^T ‖ R_qk^S) + KL(R_vv^T ‖ R_vv^S)  (weights 1:1), KL summed over keys, averaged over
    batch × heads × query tokens. No masking, no CLS or feature distillation. :func:`relation_kl_loss` is that loss;
    the arithmetic is ``zoo.ops.relation_kl`` (PyTorch reference; a tiled Triton kernel on CUDA, same numbers).

    ``target="feature"`` is the paper's feature-distillation baseline (Sec. 3.2, the first finding compares it with
    relations; not in the official code, which distils relations only): the student's output tokens (after its last
    block and final norm) through a linear projection to the teacher's width are regressed onto the teacher's tokens
    after block ``teacher_block``, whitened by a LayerNorm without affine parameters, with a smooth-L1 loss (the
    recipe of Wei et al.'s Feature Distillation, arXiv 2205.14141, which the paper follows; β = 1, PyTorch's
    default, is zoo's choice). The projection is trained with the student and dropped by fine-tuning.
    AdamW β = (0.9, 0.95), wd 0.05 on ≥2-D weights, lr = blr × batch / 256, per-iteration linear warm-up then
    half-cycle cosine to ``min_lr`` (MAE's ``lr_sched``).

    **Colour jitter is done here, on the batch**: the data module delivers the shared crop (RandomResizedCrop 0.2-1,
    flip, normalised); the teacher gets it as is and the student a per-sample ColorJitter(0.4, 0.4, 0.4) of it
    (torchvision semantics: brightness, contrast, saturation factors in [0.6, 1.4], random order per image, applied
    in [0, 1] pixel space), so one data pipeline serves both and the crop is identical by construction.

    **The teacher** is not part of ``self.model`` (which is the student alone, so ``zoo.load("tinymim-base")``
    returns just the student) and is built lazily in :meth:`configure_model`, never in ``__init__``. ``teacher`` is
    a registry name / ``local-dir:PATH`` / ``hf-hub:org/name`` / a folder (any zoo ViT: sequential distillation
    B -> S -> T is ``teacher: local-dir:runs/...``), a Lightning ``.ckpt`` of a zoo module, an official MAE/TinyMIM
    ``.pth`` (converted, read with ``weights_only=True``), or a dict of :class:`~zoo.models.tinymim.model.TinyMIMViT`
    init args (a randomly initialised teacher, ``seed`` optional: tests and the offline demo). It is frozen
    (``requires_grad=False``), kept in eval mode, run under ``no_grad``, left out of the optimizer and of saved
    checkpoints.

:class:`MAEPretrainModule` (He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022; official
facebookresearch/mae ``models_mae.py``, ``main_pretrain.py``: how TinyMIM's teachers were made)
    A ViT encoder sees the 25 % of patches left by a random mask (ratio 0.75, per sample); a light decoder puts a
    shared mask token at the masked positions and predicts their pixels; the loss is the mean squared error on the
    masked patches only, against each patch's pixels standardised over the patch (``norm_pix_loss``, MAE's released
    setting). AdamW β = (0.9, 0.95), wd 0.05, lr = blr × batch / 256, warm-up then cosine (MAE's ``lr_sched``).
    ``self.model`` is the encoder alone (a :class:`~zoo.models.tinymim.model.TinyMIMViT`, as the MAE
    ``mae_pretrain_vit_*.pth`` files), so a checkpoint of this module is a ``teacher`` of
    :class:`TinyMIMDistillModule`.

:class:`ViTFinetuneModule` (MAE's ``main_finetune.py``, the official README command)
    Supervised fine-tuning of a (distilled) ViT: global-pool + fc_norm head (init N(0, 2e-5)), drop path, timm
    Mixup/CutMix with label smoothing (soft-target CE), AdamW with layer-wise lr decay (0.65 for B), per-iteration
    warm-up + cosine to ``min_lr``; top-1 / top-5 (torchmetrics). ``pretrained`` (loaded lazily in
    ``configure_model``): a distillation checkpoint, a zoo model, or an official ``.pth``.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from zoo.errors import UserError, check_choice, check_fits_data, check_positive
from zoo.models.tinymim.model import MAEDecoder, TinyMIMStarViT, TinyMIMViT, block_qkv
from zoo.models.tinymim.sizes import (
    DEFAULT,
    FINETUNE_DEFAULT,
    FINETUNE_SIZES,
    MAE_DEFAULT,
    MAE_SIZES,
    SIZES,
    TEACHERS,
)
from zoo.sizes import net_args
from zoo.training import ClassificationEval, TimmScheduled, scaled_lr, warmup_cosine_epochs

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_OFFICIAL_SUFFIXES = (".pth", ".pt", ".bin")


# ============================================================================================== the loss
def relation_kl_loss(
    student_qkv: Sequence[Tensor], teacher_qkv: Sequence[Tensor], impl: str = "auto", kl: nn.Module | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """TinyMIM's relation loss (Eq. 2-4): ``(L, L_qk, L_vv)`` with ``L = L_qk + L_vv``.

    ``student_qkv`` / ``teacher_qkv``: (q, k, v), each (B, H, N, d); H and N must agree, d may differ. Each relation
    uses its own model's temperature 1/√d. Gradients reach the student tensors only. ``impl`` goes to
    ``zoo.ops.relation_kl`` ("auto": Triton kernel on CUDA, else the PyTorch reference). ``kl``: a
    ``zoo.ops.RelationKLLoss`` to compute both terms with (its ``impl`` then decides; the
    ``FusedKernels`` callback switches it); its temperatures are set here from the shapes.
    """
    from zoo.ops import relation_kl

    sq, sk, sv = student_qkv
    tq, tk, tv = (t.detach() for t in teacher_qkv)
    if sq.shape[:3] != tq.shape[:3]:
        raise UserError(
            f"student relations {tuple(sq.shape[:3])} and teacher relations {tuple(tq.shape[:3])} differ in "
            "(batch, heads, tokens): give the student's last block as many heads as the teacher's relation block "
            "(last_heads / teacher_heads) and the same image and patch size."
        )
    s_scale, t_scale = sq.shape[-1] ** -0.5, tq.shape[-1] ** -0.5
    if kl is not None:
        kl.student_scale, kl.teacher_scale = s_scale, t_scale
        loss_qk, loss_vv = kl(sq, sk, tq, tk), kl(sv, sv, tv, tv)
    else:
        loss_qk = relation_kl(sq, sk, tq, tk, s_scale, t_scale, impl=impl)
        loss_vv = relation_kl(sv, sv, tv, tv, s_scale, t_scale, impl=impl)
    return loss_qk + loss_vv, loss_qk, loss_vv


# ============================================================================================== helpers
def color_jitter(
    images: Tensor,
    strength: float,
    mean: Sequence[float],
    std: Sequence[float],
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-sample ColorJitter(brightness=contrast=saturation=strength) on a normalised batch (B, 3, H, W).

    torchvision's semantics, vectorised: each factor ~ U[max(0, 1 - s), 1 + s], the three ops in a random order per
    image, every op clamps to [0, 1] (pixel space: the batch is de-normalised first and re-normalised after).
    """
    if strength <= 0:
        return images
    B = images.shape[0]
    m = images.new_tensor(mean).view(1, -1, 1, 1)
    s = images.new_tensor(std).view(1, -1, 1, 1)
    x = (images * s + m).clamp(0, 1)
    dev = images.device
    lo, hi = max(0.0, 1 - strength), 1 + strength
    factors = torch.empty(B, 3, device="cpu").uniform_(lo, hi, generator=generator).to(dev, images.dtype)
    order = torch.rand(B, 3, generator=generator).argsort(dim=1).to(dev)  # per-image permutation of the 3 ops
    gray_w = images.new_tensor([0.2989, 0.587, 0.114]).view(1, 3, 1, 1)

    def blend(a, b, f):
        return (f * a + (1 - f) * b).clamp(0, 1)

    for slot in range(3):
        f = factors.gather(1, order[:, slot : slot + 1]).view(B, 1, 1, 1)
        gray = (x * gray_w).sum(1, keepdim=True)
        candidates = (
            blend(x, torch.zeros_like(x), f),  # brightness
            blend(x, gray.mean(dim=(1, 2, 3), keepdim=True), f),  # contrast
            blend(x, gray, f),  # saturation
        )
        op = order[:, slot].view(B, 1, 1, 1)
        x = torch.where(op == 0, candidates[0], torch.where(op == 1, candidates[1], candidates[2]))
    return (x - m) / s


def _adamw(module: LightningModule, groups, lr: float | None = None) -> dict:
    """The MAE-recipe optimiser of TinyMIM's modules: AdamW over ``groups`` at the batch-scaled ``lr`` (``blr`` x
    batch / 256 unless ``lr`` is set), ``betas``, and :func:`_schedule`."""
    hp = module.hparams
    lr = scaled_lr(module, hp.lr, hp.blr, per=256) if lr is None else lr
    opt = torch.optim.AdamW(groups, lr=lr, betas=tuple(hp.betas))
    return {"optimizer": opt, "lr_scheduler": _schedule(module, opt, hp.warmup_epochs, hp.min_lr)}


def _schedule(module: LightningModule, optimizer, warmup_epochs: float, min_lr: float) -> dict:
    """MAE's ``lr_sched``: per iteration, linear warm-up from 0 over ``warmup_epochs``, then half-cycle cosine down to
    ``min_lr`` (times each group's ``lr_scale``)."""
    return warmup_cosine_epochs(module, optimizer, warmup_epochs, min_lr)


def _is_url(source: str) -> bool:
    return str(source).startswith(("https://", "http://"))


def _read_state(source: str) -> dict:
    """A zoo-keyed state_dict from a source: official .pth (a file or its published URL, downloaded once into the zoo
    cache), Lightning .ckpt, or anything ``zoo.load`` accepts."""
    path = Path(source).expanduser()
    if _is_url(source) or (path.is_file() and path.suffix in _OFFICIAL_SUFFIXES):
        from zoo.models.tinymim.convert import read_official

        return read_official(path)
    if path.is_file() and path.suffix == ".ckpt":
        from zoo.hub import model_state_dict, read_checkpoint

        model = model_state_dict(read_checkpoint(path), path)
        if not model:
            raise UserError(
                f"{path} holds no 'model.*' weights: not a checkpoint of a zoo LightningModule; give a "
                "zoo .ckpt, an official .pth or a registry name"
            )
        return model
    import zoo

    return zoo.load(source, allowed_init_args=("teacher", "pretrained")).model.state_dict()  # its network only


def _infer_vit_args(state: dict) -> dict:
    """ViT init args from a pre-training state_dict's shapes (official checkpoints do not store them)."""
    w = state["patch_embed.proj.weight"]
    dim, patch = w.shape[0], w.shape[-1]
    n_tokens = state["pos_embed"].shape[1]
    prefix = 1 + ("dist_token" in state)
    grid = int(round(math.sqrt(n_tokens - prefix)))
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    return dict(embed_dim=dim, patch_size=patch, img_size=grid * patch, depth=depth, num_heads=max(1, dim // 64))


def build_teacher(spec: str | dict, teacher_heads: int | None = None) -> TinyMIMViT:
    """The frozen teacher network from a source (see :class:`TinyMIMDistillModule`)."""
    if isinstance(spec, dict):
        args = dict(spec)
        seed = args.pop("seed", 0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = TinyMIMViT(**args)
    else:
        path = Path(str(spec)).expanduser()
        if _is_url(str(spec)) or (path.is_file() and path.suffix in _OFFICIAL_SUFFIXES):
            state = _read_state(str(spec))
            if "norm.weight" not in state:
                raise UserError(
                    f"{spec} is not a pre-training (encoder) checkpoint: it has no final 'norm'; give the "
                    "teacher's pre-training file (e.g. mae_pretrain_vit_large.pth), not a fine-tuned one"
                )
            net = TinyMIMViT(**_infer_vit_args(state))
            from zoo.hub import load_weights_strict

            load_weights_strict(net, state, str(spec))
        elif path.is_file() and path.suffix == ".ckpt":
            from zoo.hub import module_from_checkpoint, read_checkpoint

            # Head counts are not in the weights: rebuild the module from the checkpoint's hyper-parameters
            # (LightningCLI records the class path; a plain Trainer checkpoint of a TinyMIM module does not).
            hp = read_checkpoint(path).get("hyper_parameters", {})
            kind = "TinyMIMDistillModule" if "teacher_block" in hp else "ViTFinetuneModule"
            kind = "MAEPretrainModule" if "mask_ratio" in hp else kind
            cls = None if "_class_path" in hp else f"{__name__}.{kind}"
            net = module_from_checkpoint(path, cls, ("teacher", "pretrained"))[0].model  # its own sources unused
        else:
            import zoo

            net = zoo.load(str(spec), allowed_init_args=("teacher", "pretrained")).model  # its own sources unused
        if not isinstance(net, TinyMIMViT):
            raise UserError(
                f"teacher {spec!r} is a {type(net).__name__}; TinyMIM needs a zoo ViT (TinyMIMViT): give a "
                "tinymim-* / MAE teacher"
            )
    net.requires_grad_(False)
    net.teacher_heads = teacher_heads  # an optional re-split of the relation block's channels into heads
    return net.eval()


def _teacher_qkv(teacher: TinyMIMViT, images: Tensor, block: int, heads: int | None):
    idx = block % len(teacher.blocks)
    x = teacher.embed(images)
    for blk in teacher.blocks[:idx]:
        x = blk(x)
    blk = teacher.blocks[idx]
    if heads is None or heads == blk.attn.num_heads:
        return block_qkv(blk, x)
    # Head count is not a property of the weights: split the same q, k, v channels into `heads` groups.
    q, k, v = (t.transpose(1, 2).flatten(2) for t in block_qkv(blk, x))
    B, T, C = q.shape
    if C % heads:
        raise UserError(f"teacher_heads={heads} does not divide the teacher width {C}: pick a divisor of {C}")
    return tuple(t.view(B, T, heads, C // heads).transpose(1, 2) for t in (q, k, v))


def _teacher_tokens(teacher: TinyMIMViT, images: Tensor, block: int) -> Tensor:
    """The teacher's tokens (B, 1 + N, C) after block ``block`` (0-based), the target of feature distillation."""
    x = teacher.embed(images)
    for blk in teacher.blocks[: block % len(teacher.blocks) + 1]:
        x = blk(x)
    return x


def feature_distillation_loss(student_tokens: Tensor, teacher_tokens: Tensor) -> Tensor:
    """The feature-distillation baseline's loss: smooth-L1 between the (projected) student tokens and the teacher's
    tokens whitened per token (LayerNorm without affine parameters), both (B, T, C_teacher); no gradient reaches the
    teacher."""
    target = F.layer_norm(teacher_tokens.detach().float(), teacher_tokens.shape[-1:])
    if student_tokens.shape != target.shape:
        raise UserError(
            f"projected student tokens {tuple(student_tokens.shape)} and teacher tokens {tuple(target.shape)} "
            "differ: give both the same image and patch size"
        )
    return F.smooth_l1_loss(student_tokens.float(), target)


# ============================================================================================== distillation
def _ctor_args(cls, fixed: Sequence[str] = ()) -> set[str]:
    """A network's named constructor arguments, less those the module sets itself."""
    return set(inspect.signature(cls).parameters) - {"kwargs", *fixed}


class TinyMIMDistillModule(TimmScheduled, LightningModule):
    """Relation distillation of a frozen MIM teacher into a ViT student (see the module docstring).

    Student: ``size`` (:data:`zoo.models.tinymim.sizes.SIZES`: ``tiny`` | ``small`` | ``base``, a ViT/16 at 224 with
    the teacher's head count in its last block) with ``net`` overriding
    :class:`~zoo.models.tinymim.model.TinyMIMViT`'s arguments (``img_size``, ``patch_size``, ``embed_dim``, ``depth``,
    ``num_heads``, ``last_heads``, ``drop_path_rate``); the module fixes MAE's sin-cos position embedding and the
    uniform drop path of pre-training. ``teacher_block`` is 1-based as in the paper (18 of 24) or negative from the
    end (-1: last). ``target``: ``"relation"`` (TinyMIM) or ``"feature"`` (the paper's feature-distillation
    baseline, see the module docstring). ``forward`` gives the student's token features (B, 1 + N, C) after its final
    norm.
    """

    _TARGETS = ("relation", "feature")

    _FIXED = ("num_classes", "global_pool", "drop_path_uniform", "fixed_pos_embed")  # set by the module

    @classmethod
    def bench_init_args(cls, init_args: dict, demo_init_args: dict) -> tuple[dict, str]:
        """``zoo bench --train``: without a teacher, the paper's MAE ViT (ViT-L/16 for a teacher block beyond 12,
        else ViT-B/16) at random weights; the values do not change the cost of a step, and the MAE files are not
        downloadable offline."""
        if init_args.get("teacher"):
            return {}, ""
        arch = "mae_vit_large" if init_args.get("teacher_block", 18) > 12 else "mae_vit_base"
        student = net_args(SIZES, init_args.get("size", DEFAULT), init_args.get("net"), where=cls.__name__)
        spec = {**TEACHERS[arch], "img_size": student["img_size"], "patch_size": student["patch_size"], "seed": 0}
        return {"teacher": spec}, f"teacher {arch} at random weights"

    def __init__(
        self,
        size: str = DEFAULT,
        net: dict[str, Any] | None = None,
        teacher: str | dict | None = None,
        teacher_block: int = 18,
        teacher_heads: int | None = None,
        student_color_jitter: float = 0.4,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        blr: float = 1.5e-4,
        lr: float | None = None,
        min_lr: float = 0.0,
        weight_decay: float = 0.05,
        betas: Sequence[float] = (0.9, 0.95),
        warmup_epochs: float = 15,
        relation_impl: str = "auto",
        target: str = "relation",
    ) -> None:
        super().__init__()
        check_choice("target", target, self._TARGETS, where=type(self).__name__)
        if teacher_block == 0:
            raise UserError(
                "teacher_block=0: it is 1-based (the paper's 'block 18 of 24') or negative from the end "
                "(-1: the last block)"
            )
        where = type(self).__name__
        self.net_kwargs = net_args(SIZES, size, net, where=where, allowed=_ctor_args(TinyMIMViT, self._FIXED))
        self.save_hyperparameters()
        self.model = TinyMIMViT(**self.net_kwargs, drop_path_uniform=True, fixed_pos_embed=True)
        img_size = self.net_kwargs["img_size"]
        self.teacher: TinyMIMViT | None = None  # built in configure_model
        self.feature_proj: nn.Linear | None = None  # target="feature": student width -> teacher width, configure_model
        # the loss as a zoo op module (no parameters) with ``impl=relation_impl``, which
        # zoo.callbacks.FusedKernels(ops=["relation_kl"]) / the zoo_ddp strategy switch to the Triton kernel for a run
        from zoo.ops import RelationKLLoss

        self.relation_kl = RelationKLLoss(self.model.blocks[-1].attn.head_dim ** -0.5, 1.0, impl=relation_impl)
        self.example_input_array = torch.randn(2, 3, img_size, img_size)

    def data_config(self) -> dict[str, Any]:
        """What the data module follows (``zoo.sizes.follow_model``): the student's input side."""
        return {"image_size": self.net_kwargs["img_size"]}

    # ------------------------------------------------------------------ inference
    def forward(self, images: Tensor) -> Tensor:
        return self.model.forward_features(images)

    # ------------------------------------------------------------------ teacher
    def configure_model(self) -> None:
        if self.teacher is not None:
            return
        spec = self.hparams.teacher
        if spec is None:
            raise UserError(
                "TinyMIMDistillModule needs a teacher to train: set model.init_args.teacher to a zoo model "
                "(registry name, local-dir:PATH, hf-hub:org/name), a Lightning .ckpt, an official MAE .pth "
                "(e.g. mae_pretrain_vit_large.pth) or a dict of ViT init args."
            )
        teacher = build_teacher(spec, self.hparams.teacher_heads)
        n = len(teacher.blocks)
        blk = self.hparams.teacher_block
        if not (-n <= blk <= n):
            raise UserError(f"teacher_block={blk} but the teacher has {n} blocks: use 1..{n} or -{n}..-1")
        self._teacher_index = blk - 1 if blk > 0 else n + blk
        heads = teacher.teacher_heads or teacher.blocks[self._teacher_index].attn.num_heads
        if self.hparams.target == "feature":  # tokens are compared, not per-head relations: head counts are free
            self.feature_proj = nn.Linear(self.model.embed_dim, teacher.embed_dim, device=self.device)
            nn.init.xavier_uniform_(self.feature_proj.weight)
            nn.init.zeros_(self.feature_proj.bias)
        elif heads != self.model.last_heads:
            raise UserError(
                f"the teacher's relation block has {heads} heads but the student's last block has "
                f"{self.model.last_heads}: set last_heads={heads} (the paper's choice) or teacher_heads="
                f"{self.model.last_heads}."
            )
        self.teacher = teacher.to(self.device)
        log.info(
            "TinyMIM teacher: %s (%d blocks, relations at block %d, %d heads)",
            spec if isinstance(spec, str) else "ViT from init args",
            n,
            self._teacher_index + 1,
            heads,
        )

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # the teacher is a fixed target: never dropout / drop path
        return self

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The teacher is an input, rebuilt from `teacher`; keep it out of checkpoints (ViT-L would triple them).
        sd = checkpoint.get("state_dict", {})
        for k in [k for k in sd if k.startswith("teacher.")]:
            del sd[k]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        sd = checkpoint.setdefault("state_dict", {})
        if self.teacher is not None:  # restoring into a configured module: strict loading expects its keys
            for k, v in self.teacher.state_dict().items():
                sd.setdefault(f"teacher.{k}", v)
        if self.feature_proj is None:  # the feature projection is a training head: a student alone does without it
            for k in [k for k in sd if k.startswith("feature_proj.")]:
                del sd[k]

    # ------------------------------------------------------------------ objective
    def relation_loss(self, images: Tensor, student_images: Tensor | None = None):
        """(L, L_qk, L_vv) for a batch: teacher on ``images``, student on ``student_images`` (default: the same)."""
        if self.teacher is None:
            self.configure_model()
        with torch.no_grad():
            t_qkv = _teacher_qkv(self.teacher, images, self._teacher_index, self.teacher.teacher_heads)
        s_qkv = self.model.forward_qkv(images if student_images is None else student_images, -1)
        return relation_kl_loss(s_qkv, t_qkv, kl=self.relation_kl)

    def feature_loss(self, images: Tensor, student_images: Tensor | None = None) -> Tensor:
        """``target="feature"``: teacher tokens after ``teacher_block`` on ``images``, student output tokens on
        ``student_images`` (default: the same) projected to the teacher's width (see the module docstring)."""
        if self.teacher is None:
            self.configure_model()
        with torch.no_grad():
            t_tokens = _teacher_tokens(self.teacher, images, self._teacher_index)
        s_tokens = self.model.forward_features(images if student_images is None else student_images)
        return feature_distillation_loss(self.feature_proj(s_tokens), t_tokens)

    def distillation_losses(self, images: Tensor, student_images: Tensor | None = None) -> dict[str, Tensor]:
        """The ``target``'s loss (``"loss"``) and, for relations, its two terms (``"loss_qk"``, ``"loss_vv"``)."""
        if self.hparams.target == "feature":
            return {"loss": self.feature_loss(images, student_images)}
        loss, l_qk, l_vv = self.relation_loss(images, student_images)
        return {"loss": loss, "loss_qk": l_qk, "loss_vv": l_vv}

    def training_step(self, batch, batch_idx):
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        student_images = color_jitter(images, self.hparams.student_color_jitter, self.hparams.mean, self.hparams.std)
        losses = self.distillation_losses(images, student_images)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=images.shape[0])
        return losses["loss"]

    def validation_step(self, batch, batch_idx):
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        losses = self.distillation_losses(images)
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=images.shape[0])

    test_step = validation_step

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        from timm.optim import param_groups_weight_decay

        hp = self.hparams
        # the student only (the teacher is not an optimisation variable); no decay on 1-D parameters and biases
        # (MAE pre-training's rule: tokens are decayed); the decayed group first, as in earlier checkpoints
        trained = self.model if self.feature_proj is None else nn.ModuleList([self.model, self.feature_proj])
        groups = sorted(param_groups_weight_decay(trained, hp.weight_decay), key=lambda g: g["weight_decay"] == 0.0)
        return _adamw(self, groups)


# ============================================================================================== MIM pre-training
def mae_pixel_loss(pred: Tensor, images: Tensor, mask: Tensor, patch_size: int, norm_pix_loss: bool = True) -> Tensor:
    """MAE's ``forward_loss``: the mean squared error per patch between ``pred`` (B, N, patch² · 3) and the pixels of
    ``images`` (the normalised input, cut as MAE's ``patchify``: channel fastest), averaged over the masked patches
    (``mask`` (B, N), True = masked) only; ``norm_pix_loss``: each target patch standardised over its patch² · 3
    values (unbiased variance + 1e-6)."""
    from zoo.nn.video import tubelet_patchify

    target = tubelet_patchify(images.float().unsqueeze(2), 1, patch_size).flatten(2)  # (B, N, patch² · 3)
    if norm_pix_loss:
        target = (target - target.mean(dim=-1, keepdim=True)) / (target.var(dim=-1, keepdim=True) + 1e-6) ** 0.5
    per_patch = ((pred.float() - target) ** 2).mean(dim=-1)
    weight = mask.to(per_patch.dtype)
    return (per_patch * weight).sum() / weight.sum()


class MAEPretrainModule(TimmScheduled, LightningModule):
    """Masked-autoencoder pre-training of a ViT (see the module docstring): the MIM teacher TinyMIM distils from.

    ``size``: :data:`zoo.models.tinymim.sizes.MAE_SIZES` (``mae_vit_base`` | ``mae_vit_large``), ``net``: overrides
    of the encoder's :class:`~zoo.models.tinymim.model.TinyMIMViT` arguments and the decoder's ``decoder_embed_dim``,
    ``decoder_depth``, ``decoder_num_heads``. ``forward`` gives the encoder's token features of the full image
    (B, 1 + N, C); ``self.model`` is the encoder alone.
    """

    _FIXED = TinyMIMDistillModule._FIXED + ("last_heads",)  # MAE's encoder: fixed sin-cos positions, one head count
    _DECODER = ("decoder_embed_dim", "decoder_depth", "decoder_num_heads")

    def __init__(
        self,
        size: str = MAE_DEFAULT,
        net: dict[str, Any] | None = None,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = True,
        blr: float = 1.5e-4,
        lr: float | None = None,
        min_lr: float = 0.0,
        weight_decay: float = 0.05,
        betas: Sequence[float] = (0.9, 0.95),
        warmup_epochs: float = 40,
    ) -> None:
        super().__init__()
        where = type(self).__name__
        if not 0 < mask_ratio < 1:
            raise UserError(f"{where}: mask_ratio={mask_ratio} must lie in (0, 1): MAE masks 0.75 of the patches")
        allowed = _ctor_args(TinyMIMViT, self._FIXED) | set(self._DECODER)
        args = net_args(MAE_SIZES, size, net, where=where, allowed=allowed)
        self.net_kwargs = {k: v for k, v in args.items() if k not in self._DECODER}
        self.save_hyperparameters()
        self.model = TinyMIMViT(**self.net_kwargs, fixed_pos_embed=True)
        patch = self.net_kwargs["patch_size"]
        grid = tuple(self.model.patch_embed.grid_size)
        self.decoder = MAEDecoder(self.model.embed_dim, grid, patch, **{k: args[k] for k in self._DECODER})
        img_size = self.net_kwargs["img_size"]
        self.example_input_array = torch.randn(2, 3, img_size, img_size)

    def data_config(self) -> dict[str, Any]:
        """What the data module follows (``zoo.sizes.follow_model``): the encoder's input side."""
        return {"image_size": self.net_kwargs["img_size"]}

    def forward(self, images: Tensor) -> Tensor:
        return self.model.forward_features(images)

    def reconstruction_loss(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Mask ``mask_ratio`` of each image's patches (drawn with ``generator``), encode the rest, decode, and
        return :func:`mae_pixel_loss` on the masked patches."""
        from zoo.nn.video import tube_mask

        grid = tuple(self.model.patch_embed.grid_size)
        mask = tube_mask(images.shape[0], (1, *grid), self.hparams.mask_ratio, generator, device=images.device)
        pred = self.decoder(self.model.forward_masked(images, mask), mask)
        return mae_pixel_loss(pred, images, mask, self.net_kwargs["patch_size"], self.hparams.norm_pix_loss)

    def training_step(self, batch, batch_idx):
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        loss = self.reconstruction_loss(images)
        self.log("train/loss", loss, prog_bar=True, batch_size=images.shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        # the same masks at every evaluation (a generator seeded by the batch index), so val/loss is comparable
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        loss = self.reconstruction_loss(images, torch.Generator().manual_seed(batch_idx))
        self.log("val/loss", loss, prog_bar=True, batch_size=images.shape[0])

    test_step = validation_step

    def configure_optimizers(self):
        from timm.optim import param_groups_weight_decay

        hp = self.hparams
        # encoder and decoder; no decay on 1-D parameters and biases (MAE: timm's add_weight_decay); the fixed
        # position embeddings are not trained
        return _adamw(self, param_groups_weight_decay(self, hp.weight_decay))


# ============================================================================================== fine-tuning
def load_pretrained(model: nn.Module, source: str) -> list[str]:
    """Initialise a fine-tuning ViT from a pre-trained one (MAE ``main_finetune``): the encoder weights load, the
    final ``norm`` is dropped when the classifier uses ``fc_norm``, the head stays new, ``pos_embed`` is resampled
    when the grid differs. Returns the keys left at initialisation; raises if any encoder weight is missing."""
    from timm.layers import resample_abs_pos_embed

    state = _read_state(source)
    own = model.state_dict()
    prefix = getattr(model, "num_prefix_tokens", 1)
    if "pos_embed" in state and state["pos_embed"].shape != own["pos_embed"].shape:
        src_prefix = 1 + ("dist_token" in state)
        if src_prefix != prefix:
            raise UserError(
                f"cannot map pos_embed with {src_prefix} prefix tokens onto a model with {prefix}: "
                "load T* (dist token) weights into kind='star', plain ViT weights into kind='vit'"
            )
        grid = getattr(model.patch_embed, "grid_size")
        state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], new_size=grid, num_prefix_tokens=prefix)
    keep = {
        k: v for k, v in state.items() if k in own and not k.startswith(("head", "fc_norm")) and v.shape == own[k].shape
    }
    if isinstance(getattr(model, "fc_norm", None), nn.LayerNorm):
        keep = {k: v for k, v in keep.items() if not k.startswith("norm.")}
    encoder = [k for k in own if k.startswith(("blocks.", "patch_embed.", "cls_token"))]
    lost = [k for k in encoder if k not in keep]
    if lost:
        raise UserError(
            f"pre-trained weights from {source} do not fit the encoder: {lost[:6]} missing or shaped "
            "differently: give weights of the same ViT size (embed_dim, depth, patch_size)"
        )
    model.load_state_dict(keep, strict=False)
    return sorted(set(own) - set(keep))


class ViTFinetuneModule(TimmScheduled, ClassificationEval, LightningModule):
    """MAE-style supervised fine-tuning of a (TinyMIM-distilled) ViT; ``forward`` gives logits.

    ``size``: :data:`zoo.models.tinymim.sizes.FINETUNE_SIZES` (``tiny`` | ``small`` | ``base`` | ``tiny-star``),
    ``net``: overrides of its arguments. Its ``kind`` picks the network: ``"vit"``, a timm ViT with ``num_heads``
    heads (the standard counts: T 3, S 6, B 12) and ``global_pool`` ("avg": MAE's mean of patch tokens + fc_norm;
    "token": CLS + final norm); ``"star"``, TinyMIM*-T (distillation token, ``neck_dim``-wide features, two heads
    averaged). ``num_classes``: the label set (checked against the data module in ``setup``).
    """

    _NETS = {"vit": TinyMIMViT, "star": TinyMIMStarViT}
    _FIXED = ("num_classes", "drop_path_uniform", "fixed_pos_embed")  # set by the module

    def __init__(
        self,
        size: str = FINETUNE_DEFAULT,
        net: dict[str, Any] | None = None,
        num_classes: int = 1000,
        pretrained: str | None = None,
        blr: float = 5e-4,
        lr: float | None = None,
        min_lr: float = 1e-6,
        weight_decay: float = 0.05,
        layer_decay: float = 0.65,
        betas: Sequence[float] = (0.9, 0.999),
        warmup_epochs: float = 5,
        mixup: float = 0.8,
        cutmix: float = 1.0,
        mixup_prob: float = 1.0,
        mixup_switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
    ) -> None:
        super().__init__()
        where = "ViTFinetuneModule"
        check_positive(
            "num_classes",
            num_classes,
            where=where,
            fix="set model.init_args.num_classes to the number of classes (1000 for ImageNet)",
        )
        kind = net_args(FINETUNE_SIZES, size, net, where=where)["kind"]
        check_choice("net.kind", kind, sorted(self._NETS), where=where)
        cls = self._NETS[kind]
        args = net_args(FINETUNE_SIZES, size, net, where=where, allowed=_ctor_args(cls, self._FIXED) | {"kind"})
        self.net_kwargs = {k: v for k, v in args.items() if k != "kind"}
        if kind == "star":  # a ViT size switched to star by net.kind: the star head has its own pooling
            self.net_kwargs.pop("global_pool", None)
        self.save_hyperparameters()
        extra = {"fixed_pos_embed": False} if kind == "vit" else {}
        self.model = cls(**self.net_kwargs, num_classes=num_classes, **extra)
        img_size = self.net_kwargs["img_size"]
        for head in (getattr(self.model, "head", None), getattr(self.model, "head_dist", None)):
            if isinstance(head, nn.Linear):  # MAE: trunc_normal(std=2e-5) head, zero bias
                nn.init.trunc_normal_(head.weight, std=2e-5)
                nn.init.zeros_(head.bias)
        self.mixup_fn = None
        if mixup > 0 or cutmix > 0:
            from timm.data import Mixup

            self.mixup_fn = Mixup(
                mixup_alpha=mixup,
                cutmix_alpha=cutmix,
                prob=mixup_prob,
                switch_prob=mixup_switch_prob,
                label_smoothing=label_smoothing,
                num_classes=num_classes,
            )
        self.init_classification_metrics(num_classes)
        self._pretrained_loaded = False
        self.example_input_array = torch.randn(2, 3, img_size, img_size)

    def data_config(self) -> dict[str, Any]:
        """What the data module follows (``zoo.sizes.follow_model``): the network's input side."""
        return {"image_size": self.net_kwargs["img_size"]}

    def setup(self, stage: str) -> None:
        # a head narrower than the data's label set fails mid-step (an index error in the loss): refuse here
        super().setup(stage)
        check_fits_data(self, "num_classes", self.hparams.num_classes, "num_classes", exact=False)

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)

    def configure_model(self) -> None:
        if self.hparams.pretrained and not self._pretrained_loaded:
            fresh = load_pretrained(self.model, self.hparams.pretrained)
            log.info("fine-tuning from %s; newly initialised: %s", self.hparams.pretrained, fresh)
            self._pretrained_loaded = True

    def training_step(self, batch, batch_idx):
        images, labels = batch
        if self.mixup_fn is not None:
            if images.shape[0] % 2:  # timm's batch Mixup pairs images with the flipped batch: needs an even size
                images, labels = images[:-1], labels[:-1]
            images, targets = self.mixup_fn(images, labels)
            logits = self(images)
            loss = torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
        else:
            logits = self(images)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.hparams.label_smoothing)
        self.log("train/loss", loss, prog_bar=True, batch_size=images.shape[0])
        return loss

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """timm's layer-wise lr decay groups (MAE ``lr_decay``: scale = decay^(L + 1 - layer id), stem id 0,
        block i id i + 1, head L + 1), each with its scaled lr; no weight decay on 1-D params, pos/cls/dist tokens."""
        from timm.optim import param_groups_layer_decay

        groups = param_groups_layer_decay(
            self.model,
            weight_decay=self.hparams.weight_decay,
            no_weight_decay_list=self.model.no_weight_decay(),
            layer_decay=self.hparams.layer_decay,
        )
        for g in groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        return groups

    def configure_optimizers(self):
        lr = scaled_lr(self, self.hparams.lr, self.hparams.blr, per=256)
        return _adamw(self, self.param_groups(lr), lr)
