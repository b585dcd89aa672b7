"""Pre-extracted video features as files: the HDF5 layout of the video-captioning releases (RSFD's
``image_resnet101_imagenet_fps_max60.hdf5`` / ``motion_resnext101_kinetics_duration16_overlap8.hdf5``, inherited from
yangbang18/Non-Autoregressive-Video-Captioning), each keyed by ``video<id>`` -> float32 (steps, dim), and the frozen
CNNs that compute them. Method-independent: the data modules (``zoo.data_modules.captioning``) and the methods'
``zoo predict`` steps (``zoo.models.rsfd.features``) both use it, and neither imports the other.

- :func:`feature_key`, :func:`done_keys`, :func:`write_video`: the keys; the complete videos of a file; one video
  appended under a temporary name (``_partial_<key>``) and renamed when complete, so an interrupted run leaves a
  valid file and a rerun skips the videos already there.
- :class:`FeatureFiles`: reading the files of the modalities (checked: every video present, 2-D, one width per file).
- :class:`VideoFeatureExtractor`: a frozen timm 2D CNN per frame (``image_model``; ``resnet101`` as the paper) and a
  frozen torchvision video network over overlapping windows (``motion_model``: ``r3d_18``, ``mc3_18``,
  ``r2plus1d_18``; torchvision has no 3D ResNeXt-101), in eval mode. ``pretrained=True`` loads timm's / torchvision's
  ImageNet / Kinetics weights (needs the network or a cache); ``False`` keeps the random initialisation (the offline
  demo). ``grid`` > 1 average-pools the 2D feature map to a ``grid x grid`` grid instead of one vector.
  :func:`extract_to_hdf5` runs it without a Trainer. The demo's offline stand-in for ImageNet weights is a Lightning
  fit of its own (``configs/demo/rsfd-cnn.yaml``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import DataNotFoundError, UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)  # torchvision video models
KINETICS_STD = (0.22803, 0.22145, 0.216989)
PARTIAL = "_partial_"


def feature_key(video_id: str) -> str:
    """The published HDF5 key of a video: ``video<id>`` (MSR-VTT ids already read ``video123``)."""
    return video_id if video_id.startswith("video") else f"video{video_id}"


def window_starts(n: int, clip_len: int, overlap: int) -> list[int]:
    """Starts of ``clip_len``-frame windows ``clip_len - overlap`` apart covering ``n`` frames (one window, padded by
    repeating the last frame, for a shorter video)."""
    step = clip_len - overlap
    if n <= clip_len:
        return [0]
    starts = list(range(0, n - clip_len + 1, step))
    if starts[-1] + clip_len < n:
        starts.append(n - clip_len)
    return starts


class VideoFeatureExtractor(nn.Module):
    """Frozen 2D + 3D CNNs: ``frames`` uint8 (T, H, W, 3) -> (appearance (T, D_2d), motion (n_windows, D_3d))."""

    def __init__(
        self,
        image_model: str = "resnet101",
        motion_model: str = "r3d_18",
        pretrained: bool = False,
        image_size: int = 224,
        motion_size: int = 112,
        clip_len: int = 16,
        overlap: int = 8,
        grid: int = 1,
        chunk: int = 32,
    ):
        super().__init__()
        import timm
        import torchvision

        if not 0 <= overlap < clip_len:
            raise UserError(
                f"overlap={overlap} must be in [0, clip_len={clip_len}) (the release: 16 frames, overlap 8)"
            )
        if grid < 1:
            raise UserError(f"grid={grid}: 1 (global average, the paper) or more")
        try:
            self.image = timm.create_model(image_model, pretrained=pretrained, num_classes=0, global_pool="")
        except RuntimeError as e:
            raise UserError(f"image_model={image_model!r}: {e} (any timm model name)") from e
        names = {"r3d_18", "mc3_18", "r2plus1d_18"}
        if motion_model not in names:
            raise UserError(
                f"motion_model={motion_model!r}: one of {', '.join(sorted(names))} (torchvision video ResNets)"
            )
        self.motion = torchvision.models.get_model(motion_model, weights="DEFAULT" if pretrained else None)
        self.motion.fc = nn.Identity()
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()
        self.image_size, self.motion_size = image_size, motion_size
        self.clip_len, self.overlap, self.grid, self.chunk = clip_len, overlap, grid, chunk
        cfg = getattr(self.image, "pretrained_cfg", {}) or {}
        self.register_buffer("image_mean", torch.tensor(cfg.get("mean", IMAGENET_MEAN)).view(1, 3, 1, 1), False)
        self.register_buffer("image_std", torch.tensor(cfg.get("std", IMAGENET_STD)).view(1, 3, 1, 1), False)
        self.register_buffer("motion_mean", torch.tensor(KINETICS_MEAN).view(1, 3, 1, 1, 1), False)
        self.register_buffer("motion_std", torch.tensor(KINETICS_STD).view(1, 3, 1, 1, 1), False)

    def train(self, mode: bool = True):  # frozen: batch-norm statistics never update
        return super().train(False)

    @staticmethod
    def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
        """(N, 3, H, W) float in [0, 1] -> short side ``size``, centre crop ``size`` x ``size``."""
        h, w = x.shape[-2:]
        s = size / min(h, w)
        x = F.interpolate(
            x,
            size=(max(size, round(h * s)), max(size, round(w * s))),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        h, w = x.shape[-2:]
        y0, x0 = (h - size) // 2, (w - size) // 2
        return x[..., y0 : y0 + size, x0 : x0 + size]

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One video: uint8 (T, H, W, 3) -> (appearance (T, D_2d), motion (n_windows, D_3d))."""
        a, m = self.batch(frames[None])
        return a[0], m[0]

    @torch.no_grad()
    def batch(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Videos of equal length: uint8 (N, T, H, W, 3) -> (N, T, D_2d), (N, n_windows, D_3d)."""
        dev = self.image_mean.device
        n, t = clips.shape[:2]
        x = clips.to(dev).flatten(0, 1).permute(0, 3, 1, 2).float() / 255.0  # (N T, 3, H, W)
        outs = []
        for i in range(0, x.shape[0], self.chunk):
            xi = (self._resize(x[i : i + self.chunk], self.image_size) - self.image_mean) / self.image_std
            fm = self.image.forward_features(xi)
            if fm.dim() == 4:  # CNN map (N, C, h, w)
                outs.append(F.adaptive_avg_pool2d(fm, self.grid).flatten(1))
            else:  # token sequence (N, L, C): the model's own pooling
                outs.append(self.image.forward_head(fm, pre_logits=True))
        appearance = torch.cat(outs).view(n, t, -1)
        m = self._resize(x, self.motion_size).view(n, t, 3, self.motion_size, self.motion_size)
        starts = window_starts(t, self.clip_len, self.overlap)
        idx = torch.stack([torch.arange(s, s + self.clip_len).clamp(max=t - 1) for s in starts])  # (W, clip_len)
        windows = m[:, idx].flatten(0, 1).permute(0, 2, 1, 3, 4)  # (N W, 3, clip_len, h, w)
        windows = (windows - self.motion_mean) / self.motion_std
        motion = torch.cat([self.motion(windows[i : i + self.chunk]) for i in range(0, windows.shape[0], self.chunk)])
        return appearance.float(), motion.float().view(n, len(starts), -1)


# ================================================================================================ HDF5 files
def done_keys(path: str | Path) -> set[str]:
    """Keys of the complete videos in an HDF5 feature file (empty when the file does not exist)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        return set()
    try:
        with h5py.File(path, "r") as f:
            return {k for k in f if not k.startswith(PARTIAL)}
    except OSError as e:
        raise UserError(f"{path}: not a readable HDF5 file ({e}); move it away and rerun the extraction") from e


def write_video(file, key: str, array: np.ndarray) -> None:
    """Append one video's (steps, dim) features as ``key`` to ``file`` (a path: opened and closed around the write;
    or an open ``h5py.File``): written as ``_partial_<key>`` and renamed when complete (a leftover partial entry of an
    interrupted run is replaced)."""
    import h5py

    if not isinstance(file, h5py.File):
        path = Path(file)
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "a") as f:
            return write_video(f, key, array)
    tmp = PARTIAL + key
    for k in (tmp, key):
        if k in file:
            del file[k]
    file.create_dataset(tmp, data=np.asarray(array, dtype=np.float32))
    file.flush()
    file.move(tmp, key)


class FeatureFiles:
    """The HDF5 files of the modalities, opened lazily (per worker process)."""

    def __init__(self, paths: Sequence[str]):
        self.paths = [str(p) for p in paths]
        self._files = None

    def check(self, videos: Sequence[str]) -> list[int]:
        """Every video present in every file as a finite-sized 2-D array with one width per file -> the widths."""
        import h5py

        dims = []
        for p in self.paths:
            if not Path(p).is_file():
                raise DataNotFoundError(
                    f"feature file {p} not found: extract features first (zoo predict with "
                    "zoo.models.rsfd.features.FeatureExtractionModule, see configs/demo/"
                    "rsfd-features.yaml)"
                )
            try:
                f = h5py.File(p, "r")
            except OSError as e:
                raise UserError(f"{p}: not a readable HDF5 file ({e}); re-extract the features") from e
            with f:
                width = None
                for vid in videos:
                    key = feature_key(vid)
                    if key not in f:
                        raise UserError(
                            f"{p} has no entry {key!r}: the caption file names a video that the "
                            "features lack (extract its features or fix the caption file)"
                        )
                    ds = f[key]
                    if not hasattr(ds, "shape") or len(ds.shape) != 2 or ds.shape[0] < 1:
                        raise UserError(
                            f"{p}: entry {key!r} has shape {getattr(ds, 'shape', None)}, expected "
                            "(steps, dim) with steps >= 1: the file is corrupt, re-extract this video"
                        )
                    if width is None:
                        width = int(ds.shape[1])
                    elif ds.shape[1] != width:
                        raise UserError(
                            f"{p}: entry {key!r} has width {ds.shape[1]}, the file's others {width}: "
                            "corrupt entry, re-extract this video"
                        )
                dims.append(width)
        return dims

    def read(self, vid: str) -> list[np.ndarray]:
        import h5py

        if self._files is None:
            self._files = [h5py.File(p, "r") for p in self.paths]
        out = []
        for p, f in zip(self.paths, self._files):
            try:
                a = np.asarray(f[feature_key(vid)], dtype=np.float32)
            except (OSError, KeyError) as e:
                raise UserError(f"{p}: entry {feature_key(vid)!r} cannot be read ({e}): re-extract this video") from e
            if not np.isfinite(a).all():
                raise UserError(f"{p}: entry {feature_key(vid)!r} holds NaN/inf values: re-extract this video")
            out.append(a)
        return out

    def __getstate__(self):
        return {"paths": self.paths, "_files": None}


def extract_to_hdf5(
    extractor: VideoFeatureExtractor,
    videos: Sequence[tuple[str, np.ndarray]],
    appearance: str,
    motion: str,
    batch: int = 64,
) -> int:
    """Extract and write the equal-length videos (``(id, uint8 frames (T, H, W, 3))``) not yet in ``appearance``,
    ``batch`` videos per forward pass, the files closed after every batch; returns how many were written (the
    synthetic data module uses this without a Trainer)."""
    import h5py

    have = done_keys(appearance)
    todo = [(v, f) for v, f in videos if feature_key(v) not in have]
    for p in (appearance, motion):
        Path(p).parent.mkdir(parents=True, exist_ok=True)
    for i in range(0, len(todo), batch):
        part = todo[i : i + batch]
        a, m = extractor.batch(torch.as_tensor(np.stack([f for _, f in part])))
        with h5py.File(motion, "a") as fm, h5py.File(appearance, "a") as fa:
            for (vid, _), ai, mi in zip(part, a, m):
                write_video(fm, feature_key(vid), mi.numpy())
                write_video(fa, feature_key(vid), ai.numpy())
    return len(todo)
