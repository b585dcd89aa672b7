"""Video transformer building blocks shared by the video methods (SimVTP; RSFD reuses the data side).

The VideoMAE tokenisation (Tong et al., NeurIPS 2022; official MCG-NJU/VideoMAE ``modeling_pretrain.py``,
``masking_generator.py``, ``engine_for_pretraining.py``):

- :class:`TubeletEmbed`: a Conv3d whose kernel = stride = (tubelet, patch, patch) cuts a clip (B, C, T, H, W) into
  (T / tubelet) x (H / patch) x (W / patch) tokens, flattened time-major (t, h, w), as ``patch_embed.proj``;
- :func:`sinusoid_table`: the fixed 1-D sine-cosine table over the flattened token index (not learned);
- :func:`tube_mask`: tube masking, one random spatial mask repeated over every temporal slice;
- :func:`tubelet_patchify` / :func:`normalized_tubelet_targets`: the pixel targets of masked video modelling, each
  tubelet's pixels per colour channel standardised over the tubelet (unbiased std + 1e-6).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["sinusoid_table", "TubeletEmbed", "tube_mask", "tubelet_patchify", "normalized_tubelet_targets"]


def sinusoid_table(n_position: int, dim: int) -> Tensor:
    """(1, n_position, dim) table: angle(p, j) = p / 10000^(2⌊j/2⌋ / dim); sin on even j, cos on odd j (the
    Transformer's table, as VideoMAE's ``get_sinusoid_encoding_table``). Built in float64, returned float32, on the
    CPU even under a meta-device context (it is a constant, not a parameter)."""
    cpu = torch.device("cpu")
    pos = torch.arange(n_position, dtype=torch.float64, device=cpu)[:, None]
    j = torch.arange(dim, device=cpu)
    angle = pos / torch.pow(10000.0, (2 * (j // 2)).double() / dim)
    table = torch.where(j % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float().unsqueeze(0)


class TubeletEmbed(nn.Module):
    """Clip (B, C, T, H, W) -> tokens (B, N, D), N = T/t · H/p · W/p, order (t, h, w) (VideoMAE ``PatchEmbed``)."""

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        num_frames: int = 16,
        tubelet_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 768,
    ):
        super().__init__()
        if img_size % patch_size or num_frames % tubelet_size:
            raise ValueError(
                f"img_size {img_size} must be a multiple of patch_size {patch_size} and num_frames "
                f"{num_frames} a multiple of tubelet_size {tubelet_size}"
            )
        self.img_size, self.patch_size = img_size, patch_size
        self.num_frames, self.tubelet_size = num_frames, tubelet_size
        self.grid = (num_frames // tubelet_size, img_size // patch_size, img_size // patch_size)
        self.num_patches = math.prod(self.grid)
        self.proj = nn.Conv3d(
            in_chans,
            embed_dim,
            kernel_size=(tubelet_size, patch_size, patch_size),
            stride=(tubelet_size, patch_size, patch_size),
        )

    def forward(self, video: Tensor) -> Tensor:
        T, H, W = video.shape[-3:]
        if (T, H, W) != (self.num_frames, self.img_size, self.img_size):
            raise ValueError(
                f"clip of {T} frames at {H}x{W}; the model takes {self.num_frames} frames at "
                f"{self.img_size}x{self.img_size} (B, C, T, H, W)"
            )
        return self.proj(video).flatten(2).transpose(1, 2)


def tube_mask(
    batch: int,
    grid: tuple[int, int, int],
    ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Tube masking: (B, T'·H'·W') bool, True = masked. Per sample, ⌊ratio · H'W'⌋ spatial positions are drawn
    uniformly without replacement and masked in every one of the T' temporal slices (VideoMAE ``TubeMaskingGenerator``),
    so every sample has exactly T'·(H'W' − ⌊ratio · H'W'⌋) visible tokens."""
    t, h, w = grid
    hw = h * w
    n_mask = int(ratio * hw)
    if not 0 <= n_mask < hw:
        raise ValueError(f"mask ratio {ratio} leaves no visible token among {hw} spatial positions")
    cpu = generator.device if generator is not None else torch.device("cpu")  # real even under a meta context
    order = torch.rand(batch, hw, generator=generator, device=cpu).argsort(dim=1)
    spatial = torch.zeros(batch, hw, dtype=torch.bool, device=cpu)
    spatial.scatter_(1, order[:, :n_mask], True)
    return spatial.unsqueeze(1).expand(batch, t, hw).reshape(batch, t * hw).to(device or "cpu")


def tubelet_patchify(video: Tensor, tubelet: int, patch: int) -> Tensor:
    """(B, C, T, H, W) -> (B, N, tubelet·patch·patch, C): the pixels of each tubelet, tokens in (t, h, w) order and
    pixels in (t, y, x) order (einops ``b c (t p0) (h p1) (w p2) -> b (t h w) (p0 p1 p2) c``)."""
    B, C, T, H, W = video.shape
    x = video.reshape(B, C, T // tubelet, tubelet, H // patch, patch, W // patch, patch)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # B, t, h, w, p0, p1, p2, C
    return x.reshape(B, (T // tubelet) * (H // patch) * (W // patch), tubelet * patch * patch, C)


def normalized_tubelet_targets(video: Tensor, mean, std, tubelet: int, patch: int, normalize: bool = True) -> Tensor:
    """Pixel targets of masked video modelling: (B, N, tubelet·patch²·C).

    ``video`` is the model input (normalised with ``mean``/``std``); it is mapped back to [0, 1], cut into tubelets
    and, with ``normalize``, each tubelet's pixels are standardised per channel (mean over its pixels, divided by the
    unbiased std + 1e-6), then flattened with the channel fastest (``b n p c -> b n (p c)``)."""
    m = video.new_tensor(mean).view(1, -1, 1, 1, 1)
    s = video.new_tensor(std).view(1, -1, 1, 1, 1)
    x = tubelet_patchify(video.float() * s + m, tubelet, patch)
    if normalize:
        x = (x - x.mean(dim=-2, keepdim=True)) / (x.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6)
    return x.flatten(2)
