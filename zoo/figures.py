"""Pictures of what a model predicts, drawn with matplotlib (Agg, no display) and written atomically.

One function per kind of picture; :func:`render` dispatches on a *figure spec*: a dict with ``"kind"`` and the
CPU tensors a module's ``figure_inputs(batch, outputs, max_items)`` hands over (``zoo.callbacks.PredictionFigures``
calls it on the first predict / validation batch). Kinds:

- ``"bev_boxes"`` (SSDA3D, CMT): bird's-eye view of the point cloud with predicted (red, scored) and ground-truth
  (green) 3D boxes drawn as rotated rectangles, a line from the centre to the front edge showing the heading (yaw),
  boxes ``(x, y, z, dx, dy, dz, yaw, ...)`` in the LiDAR frame as OpenPCDet / mmdet3d write them.
- ``"instance_masks"`` (LWSIS): each instance mask tinted over the camera image, with its box and score, and the
  ground-truth boxes (the weak labels) dashed.
- ``"kept_tokens"`` (A-CLIP): the image with the dropped patches veiled, i.e. the tokens the online encoder keeps
  (attentive mask: the EMA encoder's CLS attention, Yang et al. 2023, Sec. 3.2), beside the attention map.
- ``"captions"`` (RSFD): for each clip its sampled frames (or, for a feature-only batch, its per-step appearance
  features drawn as a strip) with the generated caption and a reference caption.
- ``"retrieval"`` (SimVTP): query captions, each with the middle frame of its top-ranked videos (the true match framed
  green, others red).

matplotlib is imported inside the functions so that ``import zoo`` stays light. A figure is built on
``matplotlib.figure.Figure`` (no pyplot global state) at exactly ``size = (width, height)`` pixels.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from zoo.errors import UserError

DPI = 100
DEFAULT_SIZE = (1200, 800)
KINDS = ("bev_boxes", "instance_masks", "kept_tokens", "captions", "retrieval")


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    if len(size) != 2 or not all(isinstance(v, int) and 64 <= v <= 8000 for v in size):
        raise UserError(f"figure size must be (width, height) in pixels, each an integer in 64..8000; got {size!r}")
    return int(size[0]), int(size[1])


def new_figure(size: Sequence[int] = DEFAULT_SIZE):
    """A Figure of exactly ``size`` = (width, height) pixels when saved at :data:`DPI`."""
    from matplotlib.figure import Figure

    w, h = _check_size(size)
    return Figure(figsize=(w / DPI, h / DPI), dpi=DPI)


def save_png(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` as PNG to ``path`` through a temporary sibling renamed into place (as
    :func:`zoo.files.atomic_write_text`): a reader never sees a half-written picture."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from zoo.files import current_umask

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())
        FigureCanvasAgg(fig)
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=DPI)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def display_image(image: torch.Tensor):
    """(3, H, W) or (H, W, 3) tensor in any range (normalised, 0..1 or 0..255) -> (H, W, 3) float array in [0, 1],
    stretched per image (for display only)."""
    x = image.detach().float().cpu()
    if x.dim() != 3:
        raise UserError(f"an image to draw needs 3 dims (3, H, W), got shape {tuple(x.shape)}")
    if x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.permute(1, 2, 0)
    if x.shape[-1] == 1:
        x = x.expand(-1, -1, 3)
    lo, hi = x.min(), x.max()
    x = (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)
    return x.numpy()


def _grid(fig, n: int, cols: int | None = None):
    cols = cols or min(n, 4)
    rows = max(1, math.ceil(n / cols))
    return [fig.add_subplot(rows, cols, i + 1) for i in range(n)]


def box_corners_bev(boxes: torch.Tensor) -> torch.Tensor:
    """(N, >=7) boxes (x, y, z, dx, dy, dz, yaw) -> (N, 4, 2) BEV corners (front-left, front-right, back-right,
    back-left), dx along the heading."""
    b = boxes.detach().float().cpu().reshape(-1, boxes.shape[-1] if boxes.numel() else 7)
    if b.shape[-1] < 7:
        raise UserError(f"3D boxes need >= 7 values (x, y, z, dx, dy, dz, yaw), got {b.shape[-1]}")
    half = torch.tensor([[0.5, 0.5], [0.5, -0.5], [-0.5, -0.5], [-0.5, 0.5]])
    local = half[None] * b[:, None, 3:5]
    c, s = torch.cos(b[:, 6]), torch.sin(b[:, 6])
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # (N, 2, 2)
    return local @ rot.transpose(1, 2) + b[:, None, :2]


def _draw_boxes(ax, boxes: torch.Tensor, color: str, label: str, scores: torch.Tensor | None = None) -> None:
    from matplotlib.patches import Polygon

    if boxes is None or not len(boxes):
        return
    corners = box_corners_bev(boxes)
    for i, poly in enumerate(corners):
        ax.add_patch(
            Polygon(
                poly.numpy(), closed=True, fill=False, edgecolor=color, linewidth=1.2, label=label if i == 0 else None
            )
        )
        front = (poly[0] + poly[1]) / 2
        centre = boxes[i, :2].float().cpu()
        ax.plot([float(centre[0]), float(front[0])], [float(centre[1]), float(front[1])], color=color, linewidth=1.2)
        if scores is not None and len(corners) <= 20:  # beyond that the numbers hide the boxes
            ax.text(
                float(poly[:, 0].max()), float(poly[:, 1].max()), f"{float(scores[i]):.2f}", color=color, fontsize=6
            )


def bev_boxes(frames: list[dict], point_cloud_range: Sequence[float], size=DEFAULT_SIZE, title: str = ""):
    """Bird's-eye views: per frame ``{"points" (N, >=2), "pred_boxes" (K, >=7), "pred_scores" (K), "gt_boxes"
    (M, >=7) or None, "name"}``; the axes span ``point_cloud_range`` (x_min, y_min, z_min, x_max, y_max, z_max)."""
    if len(point_cloud_range) != 6:
        raise UserError(f"point_cloud_range needs 6 numbers, got {list(point_cloud_range)}")
    fig = new_figure(size)
    for ax, fr in zip(_grid(fig, len(frames)), frames):
        pts = fr.get("points")
        if pts is not None and len(pts):
            p = pts.detach().float().cpu()
            ax.scatter(p[:, 0].numpy(), p[:, 1].numpy(), s=0.3, c="0.5", linewidths=0)
        _draw_boxes(ax, fr.get("gt_boxes"), "tab:green", "ground truth")
        _draw_boxes(ax, fr.get("pred_boxes"), "tab:red", "predicted", fr.get("pred_scores"))
        ax.set_xlim(point_cloud_range[0], point_cloud_range[3])
        ax.set_ylim(point_cloud_range[1], point_cloud_range[4])
        ax.set_aspect("equal")
        ax.set_xlabel("x (m)", fontsize=7)
        ax.set_ylabel("y (m)", fontsize=7)
        ax.tick_params(labelsize=6)
        n_gt = 0 if fr.get("gt_boxes") is None else len(fr["gt_boxes"])
        ax.set_title(
            f"{fr.get('name', '')}: {len(fr.get('pred_boxes', []))} predicted, {n_gt} ground truth", fontsize=8
        )
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="upper right")
    fig.suptitle(title or "BEV: predicted (red) vs ground-truth (green) boxes", fontsize=10)
    return fig


def instance_masks(images: list[dict], class_names: Sequence[str] | None = None, size=DEFAULT_SIZE, title: str = ""):
    """Per image ``{"image" (3, H, W), "masks" (n, H, W) bool, "boxes" (n, 4) x1y1x2y2, "scores" (n), "labels" (n),
    "gt_boxes" (m, 4) or None}``: masks tinted over the image with their boxes and scores, the ground-truth boxes (the
    weak labels) dashed."""
    import matplotlib
    import numpy as np
    from matplotlib.patches import Rectangle

    cmap = matplotlib.colormaps["tab10"]
    fig = new_figure(size)
    for ax, it in zip(_grid(fig, len(images), cols=min(len(images), 3)), images):
        img = display_image(it["image"])
        over = img.copy()
        masks = it["masks"].detach().cpu().bool().numpy()
        for i, m in enumerate(masks):
            colour = np.array(cmap(i % 10)[:3])
            over[m] = 0.45 * over[m] + 0.55 * colour
        ax.imshow(over)
        for i, box in enumerate(it["boxes"].detach().float().cpu()):
            x1, y1, x2, y2 = (float(v) for v in box)
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=cmap(i % 10), linewidth=1))
            lab = int(it["labels"][i])
            name = class_names[lab] if class_names and lab < len(class_names) else str(lab)
            ax.text(
                x1,
                y1,
                f"{name} {float(it['scores'][i]):.2f}",
                color="white",
                fontsize=6,
                bbox={"facecolor": cmap(i % 10), "alpha": 0.7, "pad": 1, "linewidth": 0},
            )
        gt = it.get("gt_boxes")
        for box in gt.detach().float().cpu() if gt is not None else ():
            x1, y1, x2, y2 = (float(v) for v in box)
            ax.add_patch(
                Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white", linestyle="--", linewidth=0.8)
            )
        ax.set_title(f"{it.get('name', '')}: {len(masks)} instances", fontsize=8)
        ax.axis("off")
    fig.suptitle(title or "instance masks", fontsize=10)
    return fig


def kept_tokens(images: list[dict], grid: int, size=DEFAULT_SIZE, title: str = ""):
    """Per image ``{"image" (3, H, W), "keep" (K) kept patch indices on the grid x grid patches, "scores" (grid*grid)
    or None}``: the image with dropped patches veiled, next to the attention map that chose them."""
    import numpy as np

    fig = new_figure(size)
    axes = _grid(fig, 2 * len(images), cols=min(2 * len(images), 4))
    for k, it in enumerate(images):
        img = display_image(it["image"])
        H, W = img.shape[:2]
        kept = np.zeros(grid * grid, dtype=bool)
        kept[it["keep"].detach().cpu().long().numpy()] = True
        cell = np.kron(kept.reshape(grid, grid), np.ones((math.ceil(H / grid), math.ceil(W / grid)), dtype=bool))
        cell = cell[:H, :W]
        veil = np.array([0.55, 0.6, 0.9])  # a bluish veil over dropped patches, visible on dark and bright pixels
        shown = np.where(cell[..., None], img, 0.3 * img + 0.7 * veil)
        ax = axes[2 * k]
        ax.imshow(shown)
        ax.set_title(f"{it.get('name', '')}: {int(kept.sum())}/{grid * grid} tokens kept", fontsize=8)
        ax.axis("off")
        ax = axes[2 * k + 1]
        if it.get("scores") is not None:
            ax.imshow(it["scores"].detach().float().cpu().reshape(grid, grid).numpy(), cmap="viridis")
            ax.set_title(it.get("scores_name", "EMA CLS attention"), fontsize=8)
        ax.axis("off")
    fig.suptitle(title or "kept tokens", fontsize=10)
    return fig


def _strip(frames: torch.Tensor, n: int):
    """(T, 3, H, W) -> (H, n*W, 3) array of ``n`` evenly spaced frames side by side."""
    import numpy as np

    T = frames.shape[0]
    idx = torch.linspace(0, T - 1, min(n, T)).round().long().tolist()
    return np.concatenate([display_image(frames[i]) for i in idx], axis=1)


def captions(clips: list[dict], frames_per_clip: int = 4, size=DEFAULT_SIZE, title: str = ""):
    """Per clip ``{"frames" (T, 3, H, W)}`` or, for a batch of features only, ``{"features" (T, D)}`` (drawn as a
    step x channel strip), with ``"caption"`` (generated) and ``"reference"`` (a ground-truth caption or None)."""
    import textwrap

    fig = new_figure(size)
    axes = _grid(fig, len(clips), cols=1)
    fig.subplots_adjust(hspace=0.6, top=0.88, bottom=0.04)
    features_only = False
    for ax, c in zip(axes, clips):
        if c.get("frames") is not None:
            ax.imshow(_strip(c["frames"], frames_per_clip))
        else:
            features_only = True
            ax.imshow(
                c["features"].detach().float().cpu().T.numpy(), aspect="auto", cmap="magma", interpolation="nearest"
            )
        text = f"generated: {c['caption']}"
        if c.get("reference"):
            text += f"\nreference: {c['reference']}"
        ax.set_title(
            "\n".join(textwrap.wrap(text, 140, replace_whitespace=False)) if len(text) > 140 else text,
            fontsize=8,
            loc="left",
        )
        ax.set_xticks([])
        ax.set_yticks([])
    note = (
        "\n(the batch holds features, not frames: each strip is the sampled steps' appearance features, step "
        "by step left to right)"
        if features_only
        else ""
    )
    fig.suptitle((title or "captions over sampled frames") + note, fontsize=9)
    return fig


def retrieval(queries: list[dict], videos: torch.Tensor, size=DEFAULT_SIZE, title: str = ""):
    """Text-to-video retrieval: per query ``{"caption", "ranked" (k) video indices, "scores" (k), "match" (index of
    the true video or -1)}``; ``videos`` (N, 3, T, H, W): each ranked video shown by its middle frame."""
    from matplotlib.patches import Rectangle

    fig = new_figure(size)
    k = max(len(q["ranked"]) for q in queries)
    n = len(queries)
    for r, q in enumerate(queries):
        head = fig.add_subplot(n, k + 1, r * (k + 1) + 1)
        head.text(0.0, 0.5, "\n".join(_wrap(q["caption"], 28)), fontsize=7, va="center", ha="left")
        head.axis("off")
        for j, (v, s) in enumerate(zip(q["ranked"], q["scores"])):
            ax = fig.add_subplot(n, k + 1, r * (k + 1) + j + 2)
            clip = videos[int(v)]
            img = display_image(clip[:, clip.shape[1] // 2])
            ax.imshow(img)
            hit = int(v) == int(q.get("match", -1))
            ax.add_patch(
                Rectangle(
                    (0, 0),
                    img.shape[1] - 1,
                    img.shape[0] - 1,
                    fill=False,
                    linewidth=3,
                    edgecolor="tab:green" if hit else "tab:red",
                )
            )
            ax.set_title(f"#{j + 1} video {int(v)} ({float(s):.2f})", fontsize=6)
            ax.axis("off")
    fig.suptitle(title or "text -> video retrieval (true match framed green)", fontsize=10)
    return fig


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(str(text), width) or [""]


_DRAW = {
    "bev_boxes": lambda s, size, t: bev_boxes(s["frames"], s["point_cloud_range"], size, t),
    "instance_masks": lambda s, size, t: instance_masks(s["images"], s.get("class_names"), size, t),
    "kept_tokens": lambda s, size, t: kept_tokens(s["images"], s["grid"], size, t),
    "captions": lambda s, size, t: captions(s["clips"], s.get("frames_per_clip", 4), size, t),
    "retrieval": lambda s, size, t: retrieval(s["queries"], s["videos"], size, t),
}


def render(spec: dict, path: str | os.PathLike, size: Sequence[int] = DEFAULT_SIZE) -> Path:
    """Draw a figure spec (``{"kind": one of KINDS, ...}``, see the module docstring) and write it as a PNG of
    ``size`` = (width, height) pixels to ``path`` atomically; returns the path."""
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind not in _DRAW:
        raise UserError(f"unknown figure kind {kind!r}: a figure spec is a dict whose 'kind' is one of {KINDS}")
    return save_png(_DRAW[kind](spec, size, spec.get("title", "")), path)
