"""A-CLIP's attentive token removal (Sec. 3.2; official ``microsoft/A-CLIP:models.py``, ``get_mask`` and
``get_att_mask``), and the random-masking baseline at the same granularity.

1. The EMA tower's CLS attention over the patches of the zoomed-out view v3 is a ``g x g`` map (14 x 14 at 224 px).
2. :func:`map_to_view`: the map is resized bilinearly to v3's box in image pixels, the online view's box is cut out
   of it (in pixels relative to v3's box; parts outside are zero), and the cut is resized back to ``g x g``.
3. :func:`keep_top_cells`: the view's map is resized bilinearly to ``(g/u) x (g/u)`` cells of ``u x u`` patches
   (u = 2: 7 x 7 cells of 32 x 32 px); the ``int(cells x ratio) + 1`` cells of highest attention are kept
   (25 of 49 at ratio 0.5) and every patch of a kept cell is kept: 100 of 196 tokens.

Boxes are ``(top, left, height, width)`` in pixels of the source image (torchvision's ``RandomResizedCrop.get_params``
order). Kept patch indices come sorted (row-major), which is the order the online tower runs them in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.errors import UserError


def cells_kept(grid: int, unit: int = 2, ratio: float = 0.5) -> int:
    """Number of kept cells: ``int((grid / unit)^2 x ratio) + 1`` (the official ``N + 1``)."""
    if grid % unit:
        raise UserError(
            f"a {grid}x{grid} patch grid does not split into {unit}x{unit}-patch masking units: choose img_size, "
            "patch_size and mask_unit so that img_size / patch_size is a multiple of mask_unit"
        )
    n = (grid // unit) ** 2
    return min(n, int(n * ratio) + 1)


def map_to_view(scores: Tensor, view_box: Tensor, ema_box: Tensor, grid: int) -> Tensor:
    """(B, g*g) attention over v3's patches -> (B, g, g) attention over the online view's patches (see step 2)."""
    B = scores.shape[0]
    maps = scores.reshape(B, 1, grid, grid).float()
    out = []
    for i in range(B):
        t3, l3, h3, w3 = (int(v) for v in ema_box[i])
        t, lft, h, w = (int(v) for v in view_box[i])
        big = F.interpolate(maps[i : i + 1], size=(h3, w3), mode="bilinear", align_corners=False)
        top, left = t - t3, lft - l3
        # crop with zero padding where the view leaves v3's box (torchvision's crop semantics)
        crop = big.new_zeros(1, 1, h, w)
        y0, y1 = max(top, 0), min(top + h, h3)
        x0, x1 = max(left, 0), min(left + w, w3)
        if y1 > y0 and x1 > x0:
            crop[..., y0 - top : y1 - top, x0 - left : x1 - left] = big[..., y0:y1, x0:x1]
        out.append(F.interpolate(crop, size=(grid, grid), mode="bilinear", align_corners=False))
    return torch.cat(out, 0)[:, 0]


def cells_to_patches(cells: Tensor, grid: int, unit: int) -> Tensor:
    """(B, k) cell indices on the (g/u)^2 grid -> (B, k*u*u) sorted patch indices on the g^2 grid."""
    c = grid // unit
    r, col = cells // c, cells % c
    dy, dx = torch.meshgrid(
        torch.arange(unit, device=cells.device), torch.arange(unit, device=cells.device), indexing="ij"
    )
    rows = r[:, :, None] * unit + dy.reshape(1, 1, -1)
    cols = col[:, :, None] * unit + dx.reshape(1, 1, -1)
    return (rows * grid + cols).flatten(1).sort(dim=1).values


def keep_top_cells(view_maps: Tensor, unit: int = 2, ratio: float = 0.5) -> Tensor:
    """(B, g, g) attention of a view -> (B, K) kept patch indices: the top cells of ``unit x unit`` patches."""
    g = view_maps.shape[1]
    k = cells_kept(g, unit, ratio)
    c = g // unit
    cells = F.interpolate(view_maps[:, None].float(), size=(c, c), mode="bilinear", align_corners=False).flatten(1)
    top = cells.topk(k, dim=1).indices
    return cells_to_patches(top, g, unit)


def keep_random_cells(
    batch: int, grid: int, unit: int = 2, ratio: float = 0.5, device=None, generator: torch.Generator | None = None
) -> Tensor:
    """(B, K) kept patch indices of uniformly random cells (same count as :func:`keep_top_cells`)."""
    k = cells_kept(grid, unit, ratio)
    c = grid // unit
    noise = torch.rand(batch, c * c, generator=generator, device="cpu" if generator is not None else device)
    return cells_to_patches(noise.argsort(dim=1)[:, :k].to(device), grid, unit)


def attentive_keep(
    scores: Tensor, view_box: Tensor, ema_box: Tensor, grid: int, unit: int = 2, ratio: float = 0.5
) -> Tensor:
    """Steps 2-3 together: EMA scores (B, g*g) + boxes -> (B, K) kept patch indices of the online view."""
    return keep_top_cells(map_to_view(scores, view_box, ema_box, grid), unit, ratio)


def box_patches(boxes: Tensor, grid: int, img_size: int) -> Tensor:
    """(B, 4) boxes (top, left, height, width) in image pixels -> (B, g*g) bool: the patches whose centre lies in
    the box (row-major, the order of the kept indices)."""
    centres = (torch.arange(grid, device=boxes.device, dtype=torch.float32) + 0.5) * (img_size / grid)
    top, left, h, w = boxes.float().unbind(-1)
    rows = (centres >= top[:, None]) & (centres < (top + h)[:, None])
    cols = (centres >= left[:, None]) & (centres < (left + w)[:, None])
    return (rows[:, :, None] & cols[:, None, :]).flatten(1)


def kept_fraction(keep: Tensor, inside: Tensor) -> Tensor:
    """(B,) fraction of the patches marked in ``inside`` (B, N) that ``keep`` (B, K) keeps (0 when none is marked)."""
    kept = torch.zeros_like(inside).scatter_(1, keep, True)
    return (kept & inside).sum(1) / inside.sum(1).clamp(min=1)
