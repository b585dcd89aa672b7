"""TinyMIM networks: plain ViT/16 students and MAE teachers, built on timm's ``VisionTransformer``.

Ren et al., "TinyMIM: An Empirical Study of Distilling MIM Pre-trained Models", CVPR 2023 (arXiv 2301.01296).
Facts from the official code (``OliverRensu/TinyMIM``, built on MAE) (models_mae.py, models_vit.py, main_distill.py):

- Every network is a pre-norm ViT/16 at 224² (LN eps 1e-6, GELU MLP ×4, qkv bias, CLS token, 196 patches), no
  relative position bias, no LayerScale. Pre-training models (teachers and distilled students) carry a **fixed 2-D
  sin-cos position embedding** (an ``nn.Parameter`` with ``requires_grad=False``, so it is in the state_dict and in
  the parameter count, as in MAE) and MAE's initialisation (xavier-uniform Linear, patch embedding initialised like a
  Linear, CLS ~ N(0, 0.02)).
- Students: the last block uses **as many heads as the teacher** so the relation maps of both have the same shape
  (B, h, N, N): ViT-B student 12 heads + 16 in block 12 (ViT-L teacher), ViT-S 6 + 12, ViT-T **6** (not 3) + 12
  (ViT-B teacher). Head count does not change any weight shape, so a checkpoint loads under any head split.
- Pre-training drop path: 0.1 on blocks 1-11, none on block 12 (constant, not the usual linear ramp).
- Fine-tuned classifiers are MAE's ``models_vit``: global average pool over patch tokens + ``fc_norm`` (no final
  ``norm``), the standard head counts (T 3, S 6, B 12) and a learned position embedding.
- TinyMIM*-T (the 79.6 % model): ViT-T with 12 heads, a DeiT distillation token (token order CLS, dist, patches;
  ``pos_embed`` of length 198) and ``LayerNorm(192) -> Linear(192, 1280) -> GELU`` on the final tokens.

Relation targets (Sec. 3.2, Eq. 2-3) need q, k, v of one block: :meth:`TinyMIMViT.forward_qkv` runs the blocks
before it, then only that block's ``norm1`` and ``attn.qkv`` (timm's own modules, split into heads exactly as timm's
``Attention.forward`` does); the rest of the block and the later blocks are not run, as in the official code.

Masked image modelling (the teachers' own pre-training; He et al., "Masked Autoencoders Are Scalable Vision
Learners", CVPR 2022, official facebookresearch/mae ``models_mae.py``): :meth:`TinyMIMViT.forward_masked` is MAE's
``forward_encoder`` (position embedding added, the masked patches dropped, CLS prepended, blocks, final norm) and
:class:`MAEDecoder` its light decoder (``decoder_embed``, a shared ``mask_token`` at every masked position, fixed
sin-cos positions, plain blocks, ``decoder_norm``, ``decoder_pred`` to the patch's pixels). The mask is zoo's
:func:`zoo.nn.video.tube_mask` with one time slice (MAE's per-sample uniform draw of ⌊ratio·N⌋ patches).

Shapes: images (B, 3, H, W); tokens (B, 1 + N, C) with N = (H/16)(W/16); q, k, v (B, heads, 1 + N, C/heads).
"""

from __future__ import annotations

from functools import partial

import torch
from timm.layers import DropPath
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import Block, VisionTransformer
from torch import Tensor, nn

from zoo.errors import UserError
from zoo.models.tinymim.sizes import TEACHERS

__all__ = [
    "sincos_pos_embed",
    "TinyMIMViT",
    "TinyMIMStarViT",
    "MAEDecoder",
    "mae_vit_base",
    "mae_vit_large",
]

LayerNorm6 = partial(nn.LayerNorm, eps=1e-6)


def sincos_pos_embed(dim: int, grid: tuple[int, int], num_prefix_tokens: int = 1) -> Tensor:
    """MAE's fixed 2-D sin-cos embedding, (1, prefix + gh·gw, dim); prefix rows are zero.

    The first half of the channels encodes the column (x) coordinate, the second half the row (y); each half is
    [sin(pos·ω), cos(pos·ω)] with ω_i = 10000^(-i / (dim/4)), the layout of MAE's ``get_2d_sincos_pos_embed``.
    """
    if dim % 4:
        raise UserError(f"embed_dim={dim}: the sin-cos position embedding needs embed_dim divisible by 4")
    gh, gw = grid
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    ys, xs = torch.meshgrid(torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64), indexing="ij")

    def one_d(pos):
        out = pos.reshape(-1, 1) * omega[None]
        return torch.cat([out.sin(), out.cos()], dim=1)

    emb = torch.cat([one_d(xs), one_d(ys)], dim=1).float()
    emb = torch.cat([emb.new_zeros(num_prefix_tokens, dim), emb], dim=0)
    return emb[None]


def _mae_init(module: nn.Module) -> None:
    """MAE / TinyMIM initialisation: xavier-uniform Linear with zero bias; LayerNorm (1, 0)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class TinyMIMViT(VisionTransformer):
    """A timm ``VisionTransformer`` whose last block may have its own head count, with access to per-block q, k, v.

    ``last_heads``: heads of the last block (``None``: same as ``num_heads``). ``fixed_pos_embed``: MAE's frozen
    sin-cos position embedding and MAE initialisation (pre-training models); otherwise timm's learned embedding and
    init (fine-tuning). ``drop_path_uniform``: the same drop-path rate on every block but the last (TinyMIM
    pre-training) instead of timm's linear ramp (fine-tuning). Other keyword arguments go to ``VisionTransformer``.
    """

    fsdp_blocks = (Block,)  # zoo_fsdp: one FSDP unit (and checkpointing unit) per transformer block

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        last_heads: int | None = None,
        num_classes: int = 0,
        global_pool: str = "token",
        drop_path_rate: float = 0.0,
        drop_path_uniform: bool = False,
        fixed_pos_embed: bool = True,
        **kwargs,
    ):
        super().__init__(
            img_size=img_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            num_classes=num_classes,
            global_pool=global_pool,
            mlp_ratio=4.0,
            qkv_bias=True,
            norm_layer=LayerNorm6,
            drop_path_rate=0.0 if drop_path_uniform else drop_path_rate,
            weight_init="skip" if fixed_pos_embed else "",
            **kwargs,
        )
        self.last_heads = last_heads or num_heads
        if self.last_heads != num_heads:
            if embed_dim % self.last_heads:
                raise UserError(f"last_heads={self.last_heads} does not divide embed_dim={embed_dim}: pick a divisor")
            old = self.blocks[-1]
            self.blocks[-1] = Block(
                embed_dim,
                self.last_heads,
                mlp_ratio=4.0,
                qkv_bias=True,
                norm_layer=LayerNorm6,
                drop_path=0.0 if drop_path_uniform else drop_path_rate,
            )
            if not fixed_pos_embed:  # keep timm's init of the block it replaces (head count changes no shape)
                self.blocks[-1].load_state_dict(old.state_dict())
        if drop_path_uniform and drop_path_rate > 0:
            for blk in self.blocks[:-1]:  # official: constant rate, last block none
                blk.drop_path1 = DropPath(drop_path_rate)
                blk.drop_path2 = DropPath(drop_path_rate)
        self.fixed_pos_embed = fixed_pos_embed
        if fixed_pos_embed:
            self.pos_embed.requires_grad_(False)
            self.init_mae_weights()

    @torch.no_grad()
    def init_mae_weights(self) -> None:
        self.pos_embed.copy_(sincos_pos_embed(self.embed_dim, self.patch_embed.grid_size, self.num_prefix_tokens))
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))  # patch embedding initialised like a Linear
        nn.init.zeros_(self.patch_embed.proj.bias)
        nn.init.normal_(self.cls_token, std=0.02)
        self.apply(_mae_init)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token", "dist_token"}

    def embed(self, x: Tensor) -> Tensor:
        """Images (B, 3, H, W) -> tokens (B, prefix + N, C) before the first block."""
        x = self.patch_embed(x)
        x = self._pos_embed(x)
        x = self.patch_drop(x)
        return self.norm_pre(x)

    def forward_masked(self, images: Tensor, mask: Tensor) -> Tensor:
        """MAE's ``forward_encoder``: images (B, 3, H, W) and ``mask`` (B, N) bool (True = masked, the same count per
        sample) -> (B, 1 + N_visible, C) after the final norm; visible patches keep their positions' order."""
        x = self.patch_embed(images) + self.pos_embed[:, self.num_prefix_tokens :]
        B, _, C = x.shape
        x = x[~mask].reshape(B, -1, C)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(B, -1, -1)
        return self.norm(self.blocks(torch.cat([cls, x], dim=1)))

    def forward_qkv(self, x: Tensor, block: int = -1) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v of block ``block`` (0-based; negative counts from the end), each (B, heads, T, head_dim).

        Runs the blocks before it, then that block's ``norm1`` and ``attn.qkv`` only (TinyMIM stops there).
        """
        idx = block % len(self.blocks)
        x = self.embed(x)
        for blk in self.blocks[:idx]:
            x = blk(x)
        return block_qkv(self.blocks[idx], x)


def block_qkv(blk: Block, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """q, k, v of a timm ``Block`` for input tokens ``x`` (B, T, C): the split timm's ``Attention.forward`` makes."""
    attn = blk.attn
    if not isinstance(attn.q_norm, nn.Identity) or not isinstance(attn.k_norm, nn.Identity):
        raise UserError(
            "relation targets are defined for attention without q/k norm (TinyMIM's ViTs have none): "
            "use a TinyMIMViT teacher"
        )
    B, T, _ = x.shape
    qkv = attn.qkv(blk.norm1(x)).reshape(B, T, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    return q, k, v


class MAEDecoder(nn.Module):
    """MAE's light decoder (``models_mae.py`` ``forward_decoder``): encoder tokens (B, 1 + N_visible, C) and the mask
    (B, N) -> per-patch pixel predictions (B, N, patch² · 3), channel fastest (MAE's ``patchify`` order).

    ``decoder_embed`` (C -> D), ``mask_token`` (N(0, 0.02)) at the masked positions, the fixed sin-cos embedding of the
    full grid, ``depth`` pre-norm blocks of ``num_heads`` heads (MLP ×4, qkv bias, LN eps 1e-6), ``decoder_norm``,
    ``decoder_pred`` (D -> patch² · 3), xavier-uniform Linear init.
    """

    def __init__(
        self,
        embed_dim: int,
        grid: tuple[int, int],
        patch_size: int,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        in_chans: int = 3,
    ):
        super().__init__()
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        pos = sincos_pos_embed(decoder_embed_dim, tuple(grid), 1)
        self.decoder_pos_embed = nn.Parameter(pos, requires_grad=False)  # fixed, in the state_dict as in MAE
        self.decoder_blocks = nn.Sequential(
            *(
                Block(decoder_embed_dim, decoder_num_heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=LayerNorm6)
                for _ in range(decoder_depth)
            )
        )
        self.decoder_norm = LayerNorm6(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size**2 * in_chans)
        self.apply(_mae_init)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: Tensor, mask: Tensor) -> Tensor:
        x = self.decoder_embed(latent)
        B, N = mask.shape
        full = self.mask_token.expand(B, N, -1).clone()
        full[~mask] = x[:, 1:].reshape(-1, x.shape[-1])  # visible tokens back at their positions
        x = torch.cat([x[:, :1], full], dim=1) + self.decoder_pos_embed
        x = self.decoder_norm(self.decoder_blocks(x))
        return self.decoder_pred(x)[:, 1:]  # the CLS token is dropped


class TinyMIMStarViT(VisionTransformerDistilled):
    """TinyMIM*-T: ViT-T/16 with 12 heads, a DeiT distillation token and a 192->1280 projection of the final tokens.

    ``forward_features`` -> (B, 2 + N, neck_dim) tokens after ``neck = LayerNorm(192) -> Linear(192, 1280) -> GELU``
    (the official ``conv1x1``; its LayerNorm has PyTorch's default eps 1e-5). The classifier is MAE's fine-tuning
    head with DeiT's two heads: ``head(fc_norm(mean of patch tokens))`` and ``head_dist(fc_norm(dist token))``,
    averaged at inference (``distilled_training`` returns both, as timm's DeiT). The checkpoint's ``fc_norm``/
    ``head``/``head_dist`` widths and the pooling are not published; 1280-wide heads fed this way are our reading
    of the released model (the ``neck`` exists to widen the features the classifier sees).
    """

    fsdp_blocks = (Block,)  # zoo_fsdp: one FSDP unit (and checkpointing unit) per transformer block

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 12,
        neck_dim: int = 1280,
        num_classes: int = 1000,
        drop_path_rate: float = 0.0,
        **kwargs,
    ):
        super().__init__(
            img_size=img_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            num_classes=0,
            global_pool="token",
            fc_norm=False,
            mlp_ratio=4.0,
            qkv_bias=True,
            norm_layer=LayerNorm6,
            drop_path_rate=drop_path_rate,
            **kwargs,
        )
        self.norm = nn.Identity()  # the released model has no final norm: the neck's LayerNorm takes its place
        self.neck = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, neck_dim), nn.GELU())
        self.num_features = self.head_hidden_size = neck_dim
        self.fc_norm = LayerNorm6(neck_dim)
        self.reset_classifier(num_classes)

    def reset_classifier(self, num_classes: int, global_pool=None) -> None:
        self.num_classes = num_classes
        dim = self.num_features
        self.head = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()
        self.head_dist = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token", "dist_token"}

    def forward_features(self, x: Tensor, **_) -> Tensor:
        x = self.patch_embed(x)
        x = self._pos_embed(x)
        x = self.norm_pre(x)
        x = self.blocks(x)
        return self.neck(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False):
        pooled = self.fc_norm(x[:, self.num_prefix_tokens :].mean(dim=1))
        dist = self.fc_norm(x[:, 1])
        pooled, dist = self.head_drop(pooled), self.head_drop(dist)
        if pre_logits:
            return (pooled + dist) / 2
        logits, logits_dist = self.head(pooled), self.head_dist(dist)
        if self.distilled_training and self.training:
            return logits, logits_dist
        return (logits + logits_dist) / 2


# ----------------------------------------------------------------------------------------------- constructors
def mae_vit_base(**kw) -> TinyMIMViT:
    """MAE ViT-B/16 encoder (no decoder), the teacher of TinyMIM-S/T."""
    return TinyMIMViT(**{**TEACHERS["mae_vit_base"], **kw})


def mae_vit_large(**kw) -> TinyMIMViT:
    """MAE ViT-L/16 encoder (no decoder), the teacher of TinyMIM-B (relations at block 18 of 24)."""
    return TinyMIMViT(**{**TEACHERS["mae_vit_large"], **kw})
