"""A-CLIP networks: a timm ViT image tower with token gather and an attention hook, open_clip's CLIP text transformer,
the SimCLR / BYOL heads and the EMA towers.

Yang et al., "Attentive Mask CLIP", ICCV 2023 (arXiv 2212.08653), Sec. 3; facts from the official code
(``microsoft/A-CLIP:models.py``: ``ACLIP``, ``MaskVisionTransformer``, ``ACLIP_VITB16``).

- Image tower (:class:`ACLIPVisionTransformer`): timm's ``VisionTransformer`` (pre-norm, qkv bias, LN eps 1e-6,
  learned position embedding with a CLS slot, final LN, ``num_classes=0``); the image feature is the CLS token after
  the final LN. The patch embedding is **frozen at its random init** (MoCo-v3's trick, kept by A-CLIP).
  :meth:`~ACLIPVisionTransformer.forward_cls` runs only kept tokens: position embeddings are added to all patch
  tokens, the kept ones are gathered, then CLS (+ its position embedding) is prepended (Sec. 3.2).
  :meth:`~ACLIPVisionTransformer.forward_cls_attention` returns, with the CLS feature, the CLS-query row of the
  softmax attention over patch keys, averaged over every layer and head (Sec. 3.2, the EMA tower's attention map):
  forward hooks on timm's own ``attn_drop`` module capture the softmax (timm's fused kernel is switched off for
  that pass only).
- Text tower: open_clip's ``TextTransformer`` (causal, width 512, 12 layers, 8 heads, context 77, QuickGELU, fp32
  LayerNorm, EOT (argmax) pooling, ``ln_final``, bias-free 512x512 ``text_projection``).
- Joint space: ``image_projection`` (vision width x 512) bias-free; ``logit_scale`` init ln(1/0.07).
- Heads: ``image_mlp`` (SimCLR: Linear-BN-ReLU-Linear-BN-ReLU-Linear, 4096 hidden, 256 out), ``byol_projector``
  (bias-free Linear(C, 4096)-BN-ReLU-Linear(4096, 256)), ``byol_predictor`` (bias-free 256-4096-256, BN-ReLU inside).
- EMA towers (no gradient, updated by :meth:`ACLIP.momentum_update`): ``visual_ema``, ``text_transformer_ema``,
  ``byol_projector_ema``, ``image_projection_ema``, ``text_projection_ema``. The text EMA shares the token and
  position embeddings and ``ln_final`` with the online text tower (the official code's layout).

The EMA towers live in the network (not in a weight-averaging callback such as ``zoo.callbacks.EMA``) because they are
part of the objective: the EMA image tower chooses the kept tokens and gives the BYOL target in every step, its
momentum follows its own per-iteration cosine schedule, and the EMA towers are what is evaluated and exported.
So they are parameters of ``module.model`` (``requires_grad=False``; counted in ``params``, saved in checkpoints).

Shapes: images (B, 3, H, W); text (B, L) token ids; keep (B, K) patch indices in [0, N); scores (B, N); embeddings
(B, 512).
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from zoo.errors import UserError
from zoo.models.aclip.sizes import SIZES

__all__ = ["ACLIP", "ACLIPVisionTransformer", "aclip_vit_b16", "aclip_vit_l16", "aclip_vit_s16"]


class ACLIPVisionTransformer(VisionTransformer):
    """timm ViT with a frozen patch embedding, a kept-token path and a CLS-attention hook (see the module docstring)."""

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        **kwargs,
    ):
        from functools import partial

        super().__init__(
            img_size=img_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            num_classes=0,
            global_pool="token",
            mlp_ratio=4.0,
            qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            **kwargs,
        )
        self.patch_embed.proj.requires_grad_(False)  # frozen at random init (A-CLIP / MoCo v3)

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.patch_embed.grid_size)

    def _tokens(self, images: Tensor, keep: Tensor | None) -> Tensor:
        """(B, 1 + K, C): CLS + kept patch tokens, each with its position embedding."""
        x = self.patch_embed(images)  # (B, N, C)
        x = x + self.pos_embed[:, self.num_prefix_tokens :]
        if keep is not None:
            x = torch.gather(x, 1, keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        return self.norm_pre(torch.cat([cls, x], dim=1))

    def forward_cls(self, images: Tensor, keep: Tensor | None = None) -> Tensor:
        """CLS feature after the final LN, (B, C), running only the patches ``keep`` (B, K) (all when ``None``)."""
        x = self.blocks(self._tokens(images, keep))
        return self.norm(x)[:, 0]

    def forward_cls_attention(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(CLS feature (B, C), attention scores (B, N)): the CLS row of the softmax attention over the patch keys,
        averaged over all layers and heads (the official ``need_attn=True`` path), from all tokens."""
        rows: list[Tensor] = []

        def hook(_module, _inp, out):
            rows.append(out[:, :, 0, self.num_prefix_tokens :].float())  # (B, heads, N)

        handles, fused = [], []
        for blk in self.blocks:
            fused.append(blk.attn.fused_attn)
            blk.attn.fused_attn = False  # the explicit softmax path, whose attn_drop sees the attention matrix
            handles.append(blk.attn.attn_drop.register_forward_hook(hook))
        try:
            cls = self.forward_cls(images)
        finally:
            for h in handles:
                h.remove()
            for blk, f in zip(self.blocks, fused):
                blk.attn.fused_attn = f
        return cls, torch.stack(rows, 0).mean(dim=(0, 2))

    def forward(self, images: Tensor) -> Tensor:
        return self.forward_cls(images)


def _simclr_mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """SLIP's SimCLR head (``_build_mlp``): Linear-BN-ReLU-Linear-BN-ReLU-Linear, with biases."""
    return nn.Sequential(
        OrderedDict(
            [
                ("layer1", nn.Linear(in_dim, hidden)),
                ("bn1", nn.BatchNorm1d(hidden)),
                ("relu1", nn.ReLU(inplace=True)),
                ("layer2", nn.Linear(hidden, hidden)),
                ("bn2", nn.BatchNorm1d(hidden)),
                ("relu2", nn.ReLU(inplace=True)),
                ("layer3", nn.Linear(hidden, out_dim)),
            ]
        )
    )


def _byol_mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """A-CLIP's ``_build_mlp_byol(2, ..., last_bn=False)``: bias-free Linear-BN-ReLU-Linear."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, out_dim, bias=False),
    )


class ACLIP(nn.Module):
    """The A-CLIP network: online CLIP towers, SimCLR/BYOL heads and EMA towers (see the module docstring).

    ``forward(images, text)``: in eval mode the L2-normalised image and text embeddings of the towers selected by
    ``eval_towers`` ("ema": what A-CLIP evaluates and exports; "online"), as ``{"image_embeds", "text_embeds",
    "logit_scale"}``; in training mode the online towers' outputs the objective consumes (full views): the
    embeddings, the SimCLR and BYOL-predictor outputs and the logit scale.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        vision_width: int = 768,
        vision_depth: int = 12,
        vision_heads: int = 12,
        embed_dim: int = 512,
        context_length: int = 77,
        vocab_size: int = 49408,
        text_width: int = 512,
        text_heads: int = 8,
        text_layers: int = 12,
        ssl_mlp_dim: int = 4096,
        ssl_emb_dim: int = 256,
        byol_hidden_dim: int = 4096,
        byol_dim: int = 256,
        eval_towers: str = "ema",
    ):
        super().__init__()
        from open_clip.transformer import LayerNormFp32, QuickGELU, TextTransformer

        self.eval_towers = eval_towers
        self.visual = ACLIPVisionTransformer(img_size, patch_size, vision_width, vision_depth, vision_heads)
        self.text = TextTransformer(
            context_length=context_length,
            vocab_size=vocab_size,
            width=text_width,
            heads=text_heads,
            layers=text_layers,
            output_dim=embed_dim,
            act_layer=QuickGELU,
            norm_layer=LayerNormFp32,
            pool_type="argmax",
            proj_type="linear",
            proj_bias=False,
        )
        self.image_projection = nn.Parameter(torch.randn(vision_width, embed_dim) * vision_width**-0.5)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.image_mlp = _simclr_mlp(vision_width, ssl_mlp_dim, ssl_emb_dim)
        self.byol_projector = _byol_mlp(vision_width, byol_hidden_dim, byol_dim)
        self.byol_predictor = _byol_mlp(byol_dim, byol_hidden_dim, byol_dim)
        # EMA towers: copies of the online ones at init, never trained by gradient
        self.visual_ema = copy.deepcopy(self.visual)
        self.text_transformer_ema = copy.deepcopy(self.text.transformer)
        self.byol_projector_ema = copy.deepcopy(self.byol_projector)
        self.image_projection_ema = nn.Parameter(self.image_projection.detach().clone())
        self.text_projection_ema = nn.Parameter(self.text.text_projection.detach().clone())
        for m in self.ema_modules():
            m.requires_grad_(False)
        self.image_projection_ema.requires_grad_(False)
        self.text_projection_ema.requires_grad_(False)

    # ------------------------------------------------------------------ EMA
    def ema_modules(self) -> tuple[nn.Module, ...]:
        return self.visual_ema, self.text_transformer_ema, self.byol_projector_ema

    def ema_pairs(self):
        """(online tensor, EMA tensor) pairs that the momentum update averages: parameters and BN buffers."""
        for online, ema in (
            (self.visual, self.visual_ema),
            (self.text.transformer, self.text_transformer_ema),
            (self.byol_projector, self.byol_projector_ema),
        ):
            yield from zip(online.parameters(), ema.parameters())
        yield self.image_projection, self.image_projection_ema
        yield self.text.text_projection, self.text_projection_ema

    @torch.no_grad()
    def momentum_update(self, m: float) -> None:
        """EMA <- m EMA + (1 - m) online, for the EMA towers' parameters (the official ``_update_momentum_encoder``;
        BatchNorm running statistics of the EMA projector keep their own, as in the official code)."""
        online, ema = zip(*self.ema_pairs())
        torch._foreach_mul_(list(ema), m)
        torch._foreach_add_(list(ema), list(online), alpha=1.0 - m)

    # ------------------------------------------------------------------ towers
    def encode_image(self, images: Tensor, keep: Tensor | None = None, ema: bool = False) -> Tensor:
        """Unnormalised image embeddings (B, D) of the online or EMA tower; ``keep``: the patches to run."""
        if ema:
            return self.visual_ema.forward_cls(images, keep) @ self.image_projection_ema
        return self.visual.forward_cls(images, keep) @ self.image_projection

    def encode_text(self, text: Tensor, normalize: bool = False, ema: bool | None = None) -> Tensor:
        """Text embeddings (B, D) at the EOT token; ``ema=None`` follows ``eval_towers`` (open_clip's interface, so
        ``open_clip.zero_shot_classifier.build_zero_shot_classifier`` can call it)."""
        if ema is None:
            ema = self.eval_towers == "ema"
        t = self.text
        transformer = self.text_transformer_ema if ema else t.transformer
        proj = self.text_projection_ema if ema else t.text_projection
        L = text.shape[1]
        if L > t.num_pos:
            raise UserError(
                f"text of {L} tokens but the context length is {t.num_pos}: tokenise with context_length={t.num_pos}"
            )
        x = t.token_embedding(text) + t.positional_embedding[:L].to(t.token_embedding.weight.dtype)
        x = transformer(x, attn_mask=t.attn_mask[:L, :L])
        x = t.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), text.argmax(dim=-1)]  # EOT has the largest id
        x = x @ proj
        return nn.functional.normalize(x, dim=-1) if normalize else x

    def forward(self, images: Tensor, text: Tensor | None = None) -> dict[str, Tensor]:
        """See the class docstring; ``text=None`` encodes the images only."""
        if not self.training:
            ema = self.eval_towers == "ema"
            out = {
                "image_embeds": nn.functional.normalize(self.encode_image(images, ema=ema), dim=-1),
                "logit_scale": self.logit_scale.exp(),
            }
            if text is not None:
                out["text_embeds"] = self.encode_text(text, normalize=True, ema=ema)
            return out
        cls = self.visual.forward_cls(images)
        out = {
            "image_embeds": cls @ self.image_projection,
            "ssl_embeds": self.image_mlp(cls),
            "byol_pred": self.byol_predictor(self.byol_projector(cls)),
            "logit_scale": self.logit_scale.exp(),
        }
        if text is not None:
            out["text_embeds"] = self.encode_text(text, ema=False)
        return out


# ----------------------------------------------------------------------------------------------- constructors
def _build(size: str, **kw) -> ACLIP:
    return ACLIP(**{**SIZES[size], **kw})


def aclip_vit_b16(**kw) -> ACLIP:
    """ACLIP_VITB16: ViT-B/16 (768, 12 layers, 12 heads) + CLIP text transformer, 512-d joint space."""
    return _build("b16", **kw)


def aclip_vit_l16(**kw) -> ACLIP:
    """ACLIP_VITL16: ViT-L/16 (1024, 24 layers, 16 heads)."""
    return _build("l16", **kw)


def aclip_vit_s16(**kw) -> ACLIP:
    """ACLIP_VITS16: ViT-S/16 width 384 with 12 heads (as in the code; timm's ViT-S has 6)."""
    return _build("s16", **kw)
