"""EMO and its inverted Residual Mobile Block (iRMB).

Zhang et al., "Rethinking Mobile Block for Efficient Attention-based Models", ICCV 2023, arXiv 2301.01146;
official code ``zhangzjn/EMO`` (``model/emo.py``). Layer configs, block order and quirks follow the released code.

The iRMB (paper §3, Eqs. for the Meta Mobile Block and iRMB; official model/emo.py ``iRMB``) on an input
X ∈ R^{B×C×H×W}::

    X̂ = Norm(X)                                     pre-norm (BN, or LayerNorm over channels; eps 1e-6)
    Y = Act(W_v · EW-MHSA(X̂))                       attention on  (``attn_pre=True``, as released)
    Y = EW-MHSA_V(Act(W_v · X̂))                     attention on  (``attn_pre=False``, as the paper writes it)
    Y = Act(W_v · X̂)                                attention off (the inverted-residual expansion conv)
    Y = Y + SE(SiLU(BN(DW_k×k(Y))))  (skip)  or  SE(SiLU(BN(DW(Y))))  (no skip)
    out = X + DropPath(W_proj · Y)   (skip)  or  W_proj · Y

EW-MHSA ("expanded window MHSA") is multi-head attention inside windows of ``w×w`` tokens, with ``Q, K`` from one
1×1 conv (``C -> 2C``) and ``softmax(Q Kᵀ / sqrt(d_h))`` mixing either the normalised input (released models) or the
expanded values. Two details of the released code that the paper does not show, both reproduced here because the
released weights were trained with them:

- windows are **strided**, not contiguous: at an ``H×W`` map padded to multiples of ``w``, window ``(i, j)`` holds
  rows ``i, i + n_h, i + 2 n_h, ...`` and columns ``j, j + n_w, ...`` with ``n_h = H_pad / w`` windows per column
  (a dilated grid; at 14×14 with ``w = 7`` window 0 holds columns 0, 2, ..., 12);
- the map is zero-padded on the right/bottom to a multiple of ``w`` and the padded tokens are not masked out of
  the softmax (they enter with the Q/K conv's bias as their query/key).

A skip exists iff ``C_in == C_out`` and stride 1, so the first (downsampling, attention-free, doubled-expansion)
block of each stage has neither the inner nor the outer residual. EMO (paper §4, official model/emo.py ``EMO``): a
3×3/2 conv stem with bias + BN, a stage-0 iRMB (no norm, no expansion, SE with reduction ratio 1), then four stages
at strides 4/8/16/32 with BN+SiLU (stages 1-2, attention off) and LN+GELU (stages 3-4, attention on), a final
LayerNorm, global average pooling and a linear classifier.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct, DropPath, LayerNorm2d, SqueezeExcite, trunc_normal_
from torch import nn

from zoo.errors import UserError
from zoo.models.emo.sizes import SIZES

__all__ = ["iRMB", "EMO", "emo_1m", "emo_2m", "emo_5m", "emo_6m", "window_partition", "window_unpartition"]

_EPS = 1e-6  # every norm in the released model (BN and LN alike)

_NORMS = {
    "bn": lambda c: nn.BatchNorm2d(c, eps=_EPS),
    "ln": lambda c: LayerNorm2d(c, eps=_EPS),
}
_ACTS = {"silu": nn.SiLU, "gelu": nn.GELU, "relu": nn.ReLU}


def window_partition(x: torch.Tensor, wh: int, ww: int) -> tuple[torch.Tensor, int, int]:
    """Strided window partition of an already padded map, as the released EMO code lays windows out.

    ``x``: [B, C, H, W] with ``H % wh == W % ww == 0`` -> ([B·n_h·n_w, C, wh, ww], n_h, n_w) with ``n_h = H / wh``
    windows per column: window ``(i, j)`` (index ``i·n_w + j`` within an image) holds the pixels
    ``(i + a·n_h, j + b·n_w)``, ``a < wh``, ``b < ww`` — the einops pattern ``b c (h1 n1) (w1 n2) -> (b n1 n2) c h1 w1``
    of the official code, a dilated grid rather than Swin's contiguous blocks.
    """
    B, C, H, W = x.shape
    n_h, n_w = H // wh, W // ww
    x = x.view(B, C, wh, n_h, ww, n_w).permute(0, 3, 5, 1, 2, 4)
    return x.reshape(B * n_h * n_w, C, wh, ww), n_h, n_w


def window_unpartition(x: torch.Tensor, n_h: int, n_w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: [B·n_h·n_w, C, wh, ww] -> [B, C, wh·n_h, ww·n_w]."""
    Bn, C, wh, ww = x.shape
    B = Bn // (n_h * n_w)
    x = x.view(B, n_h, n_w, C, wh, ww).permute(0, 3, 4, 1, 5, 2)
    return x.reshape(B, C, wh * n_h, ww * n_w)


class iRMB(nn.Module):  # noqa: N801 - the paper's name
    """Inverted Residual Mobile Block (see the module docstring for the equations).

    Args:
        dim_in, dim_out: channels C_in, C_out.
        exp_ratio: λ; the expanded width is ``int(dim_in * λ)``.
        norm: ``"bn"``, ``"ln"`` (LayerNorm over channels) or ``None`` (no pre-norm; stage-0 block).
        act: activation after the value projection (and inside SE): ``"silu"``, ``"gelu"``, ``"relu"``.
        v_proj: whether the value/expansion 1×1 conv exists (``False`` only in the stage-0 block, λ = 1).
        dw_kernel_size, stride: the depth-wise conv (always followed by BN + SiLU).
        se: squeeze-excite with reduction ratio 1 after the depth-wise conv (stage-0 block only).
        attn: EW-MHSA on (needs ``dim_in % dim_head == 0``); ``dim_head``: d_h; ``window_size``: w (<= 0: global).
        attn_pre: ``True`` (released weights): attention mixes the normalised input, then the value projection;
            ``False`` (paper text): value projection first, attention mixes the values. Same parameters.
        has_skip: allow the residuals (they also need ``dim_in == dim_out`` and stride 1).

    Shapes: [B, dim_in, H, W] -> [B, dim_out, ceil(H / stride), ceil(W / stride)].
    """

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        exp_ratio: float = 1.0,
        norm: str | None = "bn",
        act: str = "silu",
        v_proj: bool = True,
        dw_kernel_size: int = 3,
        stride: int = 1,
        se: bool = False,
        attn: bool = False,
        dim_head: int = 64,
        window_size: int = 7,
        qkv_bias: bool = True,
        attn_pre: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        drop_path: float = 0.0,
        has_skip: bool = True,
    ) -> None:
        super().__init__()
        dim_mid = int(dim_in * exp_ratio)
        self.has_skip = has_skip and dim_in == dim_out and stride == 1
        self.norm = _NORMS[norm](dim_in) if norm else nn.Identity()
        self.attn = attn
        self.attn_pre = attn_pre
        if attn:
            if dim_in % dim_head:
                raise UserError(
                    f"iRMB: dim_in={dim_in} is not divisible by dim_head={dim_head}; give each attention stage an "
                    "embed_dims entry divisible by its dim_heads entry"
                )
            self.dim_head = dim_head
            self.num_heads = dim_in // dim_head
            self.window_size = window_size
            self.scale = dim_head**-0.5
            self.attn_drop = attn_drop
            self.qk = nn.Conv2d(dim_in, 2 * dim_in, 1, bias=qkv_bias)
        if v_proj or attn:
            self.v = nn.Conv2d(dim_in, dim_mid, 1, bias=qkv_bias)
            # in place on the conv's fresh output, as the official ConvNormAct (model/basic_modules.py, inplace=True):
            # autograd-safe: the conv's backward does not read its output, and in-place SiLU/ReLU have autograd
            # formulas (same gradients, tests/test_bench.py); GELU has no in-place form
            self.v_act = _ACTS[act]() if act == "gelu" else _ACTS[act](inplace=True)
        else:
            if dim_mid != dim_in:
                raise UserError("iRMB without a value projection needs exp_ratio 1: set exp_ratio=1.0 or v_proj=True")
            self.v = self.v_act = nn.Identity()
        # the local (depth-wise) mixer is BN + SiLU in every stage, whatever the stage's activation
        self.conv_local = ConvNormAct(
            dim_mid,
            dim_mid,
            dw_kernel_size,
            stride=stride,
            groups=dim_mid,
            bias=False,
            norm_layer=nn.BatchNorm2d,
            act_layer=nn.SiLU,
            norm_kwargs={"eps": _EPS},
        )
        self.se = SqueezeExcite(dim_mid, rd_channels=dim_mid, act_layer=_ACTS[act]) if se else nn.Identity()
        self.proj_drop = nn.Dropout(proj_drop)
        self.proj = nn.Conv2d(dim_mid, dim_out, 1, bias=False)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def _heads(self, x: torch.Tensor, wh: int, ww: int) -> torch.Tensor:
        """[B, heads·d, H_pad, W_pad] -> [B·windows, heads, wh·ww tokens, d] (strided windows)."""
        xw, _, _ = window_partition(x, wh, ww)
        Bn, C, w1, w2 = xw.shape
        return xw.view(Bn, self.num_heads, C // self.num_heads, w1 * w2).transpose(-1, -2)

    def _ew_mhsa(self, x: torch.Tensor) -> torch.Tensor:
        """EW-MHSA (+ value projection): [B, C, H, W] (normalised) -> [B, C_mid, H, W]."""
        B, C, H, W = x.shape
        wh, ww = (self.window_size, self.window_size) if self.window_size > 0 else (H, W)
        pad_b, pad_r = (-H) % wh, (-W) % ww
        if pad_b or pad_r:
            x = F.pad(x, (0, pad_r, 0, pad_b))
        n_h, n_w = (H + pad_b) // wh, (W + pad_r) // ww
        q, k = self.qk(x).chunk(2, dim=1)  # pointwise, so computing it before partitioning is the same
        q, k = self._heads(q, wh, ww), self._heads(k, wh, ww)
        # with attn_pre the attention mixes the (normalised) input; otherwise the activated values
        v = x if self.attn_pre else self.v_act(self.v(x))
        y = F.scaled_dot_product_attention(
            q,
            k,
            self._heads(v, wh, ww),
            dropout_p=self.attn_drop if self.training else 0.0,
            scale=self.scale,
        )  # [B·n_h·n_w, heads, w·w, d_v]
        Bn, nh, _, dv = y.shape
        y = y.transpose(-1, -2).reshape(Bn, nh * dv, wh, ww)
        y = window_unpartition(y, n_h, n_w)[:, :, :H, :W]
        return self.v_act(self.v(y)) if self.attn_pre else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm(x)
        x = self._ew_mhsa(x) if self.attn else self.v_act(self.v(x))
        local = self.se(self.conv_local(x))
        x = x + local if self.has_skip else local
        x = self.proj(self.proj_drop(x))
        return shortcut + self.drop_path(x) if self.has_skip else x


def _per_stage(v, n: int, name: str) -> list:
    if isinstance(v, (int, float, str, bool)) or v is None:
        return [v] * n
    v = list(v)
    if len(v) != n:
        raise UserError(f"EMO: {name} needs {n} values (one per stage), got {v}; give one per entry of depths")
    return v


class EMO(nn.Module):
    """Efficient MOdel: stem, stage-0 iRMB and four iRMB stages, LayerNorm, average pooling, linear classifier.

    Args:
        depths, embed_dims, exp_ratios, dim_heads: per stage 1-4 (official model/emo.py).
        stem_dim: stem/stage-0 width (24). norms / acts / dw_kernel_sizes / attn / window_sizes: per stage 1-4
            (stage 0 uses the first entry); ``window_sizes`` may be one int (7 for classification, 10/16 were used
            for detection/segmentation).
        attn_pre: see :class:`iRMB`; ``True`` reproduces the released weights.
        drop_path_rate: stochastic depth, linear from 0 over the stage 1-4 blocks (downsampling blocks, having no
            skip, ignore theirs).
        drop_rate: dropout before the classifier (0 in the paper); proj_drop_rate / attn_drop_rate: inside blocks.
        num_classes: 0 gives no classifier (``forward`` then returns pooled features).
        features_only: build a backbone returning the feature maps of ``out_indices`` (0-4 = stage 0-4, strides
            2, 4, 8, 16, 32) as a list; no final norm and no classifier are built.

    Shapes: ``forward`` [B, 3, H, W] -> logits [B, num_classes]; ``forward_features`` -> [B, C4, ⌈H/32⌉, ⌈W/32⌉]
    (after the final norm); ``forward_head`` -> logits, or pooled [B, C4] with ``pre_logits=True``.
    """

    fsdp_blocks = (iRMB,)  # zoo_fsdp: one FSDP unit (and checkpointing unit) per block

    def __init__(
        self,
        depths: Sequence[int] = (3, 3, 9, 3),
        embed_dims: Sequence[int] = (32, 48, 120, 200),
        exp_ratios: Sequence[float] = (2.0, 2.5, 3.0, 3.5),
        dim_heads: Sequence[int] = (16, 16, 20, 20),
        stem_dim: int = 24,
        norms: Sequence[str] = ("bn", "bn", "ln", "ln"),
        acts: Sequence[str] = ("silu", "silu", "gelu", "gelu"),
        dw_kernel_sizes: Sequence[int] = (3, 3, 5, 5),
        attn: Sequence[bool] = (False, False, True, True),
        window_sizes: int | Sequence[int] = 7,
        qkv_bias: bool = True,
        attn_pre: bool = True,
        drop_path_rate: float = 0.0,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        features_only: bool = False,
        out_indices: Sequence[int] = (0, 1, 2, 3, 4),
    ) -> None:
        super().__init__()
        n = len(depths)
        embed_dims, exp_ratios, dim_heads = (
            _per_stage(v, n, k)
            for k, v in (("embed_dims", embed_dims), ("exp_ratios", exp_ratios), ("dim_heads", dim_heads))
        )
        norms, acts, dw_ks, attn = (
            _per_stage(v, n, k)
            for k, v in (("norms", norms), ("acts", acts), ("dw_kernel_sizes", dw_kernel_sizes), ("attn", attn))
        )
        windows = _per_stage(window_sizes, n, "window_sizes")
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.features_only = features_only
        self.out_indices = tuple(out_indices)
        if features_only and not all(0 <= i <= n for i in self.out_indices):
            raise UserError(
                f"EMO: out_indices must lie in 0..{n} (stage 0-{n}), got {self.out_indices}; drop the others"
            )

        # stem: 3x3 stride-2 conv WITH bias + BN, no activation (MSPatchEmb with one dilation in the official code)
        self.stem = ConvNormAct(
            in_chans,
            stem_dim,
            dw_ks[0],
            stride=2,
            bias=True,
            apply_act=False,
            norm_layer=nn.BatchNorm2d,
            norm_kwargs={"eps": _EPS},
        )
        stages = [
            nn.Sequential(
                iRMB(
                    stem_dim,
                    stem_dim,
                    exp_ratio=1.0,
                    norm=None,
                    act=acts[0],
                    v_proj=False,
                    dw_kernel_size=dw_ks[0],
                    se=True,
                    attn=False,
                    qkv_bias=qkv_bias,
                    attn_pre=attn_pre,
                    proj_drop=proj_drop_rate,
                    has_skip=False,
                )
            )
        ]
        self.feature_info = [{"num_chs": stem_dim, "reduction": 2, "module": "stages.0"}]
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        dim, reduction, k = stem_dim, 2, 0
        for i in range(n):
            blocks = []
            for j in range(depths[i]):
                first = j == 0  # downsampling block: stride 2, no skip, no attention, doubled expansion
                blocks.append(
                    iRMB(
                        dim,
                        embed_dims[i],
                        exp_ratio=exp_ratios[i] * (2 if first else 1),
                        norm=norms[i],
                        act=acts[i],
                        dw_kernel_size=dw_ks[i],
                        stride=2 if first else 1,
                        attn=attn[i] and not first,
                        dim_head=dim_heads[i],
                        window_size=windows[i],
                        qkv_bias=qkv_bias,
                        attn_pre=attn_pre,
                        attn_drop=attn_drop_rate,
                        proj_drop=proj_drop_rate,
                        drop_path=dpr[k],
                        has_skip=not first,
                    )
                )
                dim, k = embed_dims[i], k + 1
            reduction *= 2
            stages.append(nn.Sequential(*blocks))
            self.feature_info.append({"num_chs": dim, "reduction": reduction, "module": f"stages.{i + 1}"})
        self.stages = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = dim

        if features_only:
            self.feature_info = [self.feature_info[i] for i in self.out_indices]
            self.norm = None
            self.head = None
        else:
            self.norm = _NORMS[norms[-1]](dim)
            self.head_drop = nn.Dropout(drop_rate)
            self.head = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # as released: Linear trunc-normal(0.02), norms (1, 0); convolutions keep PyTorch's default init
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Names excluded from weight decay: every 1-D parameter and every bias (timm's rule, as trained)."""
        return {name for name, p in self.named_parameters() if p.ndim <= 1 or name.endswith(".bias")}

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a freshly initialised ``Linear(num_features, num_classes)`` (0: none)."""
        if self.features_only:
            raise RuntimeError("a features_only EMO has no classifier")
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            self._init_weights(self.head)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, C4, ⌈H/32⌉, ⌈W/32⌉], after the final norm (before it for features_only)."""
        x = self.stages(self.stem(x))
        return x if self.norm is None else self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """[B, C4, h, w] -> logits [B, num_classes] (``pre_logits``: pooled features [B, C4])."""
        x = self.head_drop(x.mean((2, 3)))
        return x if pre_logits else self.head(x)

    def forward_intermediates(self, x: torch.Tensor, indices: Sequence[int] | None = None) -> list[torch.Tensor]:
        """Feature maps after the stages in ``indices`` (default ``out_indices``): list of [B, C_i, H/2^(i+1), ...]."""
        indices = tuple(self.out_indices if indices is None else indices)
        out = []
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in indices:
                out.append(x)
            if i >= max(indices):
                break
        return out

    def forward(self, x: torch.Tensor):
        if self.features_only:
            return self.forward_intermediates(x)
        return self.forward_head(self.forward_features(x))


def _build(size: str, **kwargs) -> EMO:
    return EMO(**{**SIZES[size], **kwargs})


def emo_1m(**kwargs) -> EMO:
    """EMO-1M: 1,361,168 parameters, 261M multiply-adds at 224² (paper: 71.5 % ImageNet top-1)."""
    return _build("emo_1m", **kwargs)


def emo_2m(**kwargs) -> EMO:
    """EMO-2M: 2,377,472 parameters, 439M multiply-adds at 224² (paper: 75.1 %)."""
    return _build("emo_2m", **kwargs)


def emo_5m(**kwargs) -> EMO:
    """EMO-5M: 5,108,848 parameters, 903M multiply-adds at 224² (paper: 78.4 %)."""
    return _build("emo_5m", **kwargs)


def emo_6m(**kwargs) -> EMO:
    """EMO-6M: 6,168,496 parameters, 961M multiply-adds at 224² (paper: 79.0 %)."""
    return _build("emo_6m", **kwargs)
