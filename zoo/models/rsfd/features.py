"""Pre-extracted video features for RSFD, as a first-class step (the release's README / opts.py): it trains on two
HDF5 files,

- appearance: ``image_resnet101_imagenet_fps_max60.hdf5``: a frozen ImageNet ResNet-101, one 2048-d vector per frame
  (at most 60 frames per video);
- motion: ``motion_resnext101_kinetics_duration16_overlap8.hdf5``: a frozen Kinetics 3D ResNeXt-101, one 2048-d
  vector per 16-frame window, windows 8 frames apart;

each keyed by ``video<id>`` -> float32 (steps, dim).

:class:`~zoo.video_features.VideoFeatureExtractor` (shared with the caption data module, with the HDF5 file helpers)
computes both with any timm 2D CNN (``image_model``; ``resnet101`` as the paper) and
a torchvision video network (``motion_model``: ``r3d_18``, ``mc3_18``, ``r2plus1d_18``; torchvision has no 3D
ResNeXt-101), frozen, in eval mode. Weights: ``pretrained=True`` loads timm's / torchvision's ImageNet / Kinetics
weights (needs the network or a cache); ``False`` keeps the random initialisation (the offline demo: random frozen
convolutions still separate the digits and their motion). ``grid`` > 1 average-pools the 2D feature map to a
``grid x grid`` grid instead of one vector (the demo keeps coarse position that way).

:class:`FeatureExtractionModule` runs it under ``zoo predict`` (one video per batch from
``zoo.data_modules.VideoFramesDataModule``) and :class:`HDF5FeatureWriter` (a ``BasePredictionWriter``) appends each
video to the two files: written under a temporary name and renamed when complete, the file closed after every video,
so an interrupted run leaves valid files and a rerun skips the videos already there (the data module asks
``done_keys``). A video file that cannot be decoded is skipped with a warning that counts the skips (as the video
data modules do, ``zoo.data_modules.video.decode_frames`` / ``DecodeError``); the run goes on, and a rerun tries it
again and skips it again.
"""

from __future__ import annotations

import logging
import warnings

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import BasePredictionWriter

from zoo.errors import UserError
from zoo.video_features import VideoFeatureExtractor, feature_key, write_video

__all__ = ["FeatureExtractionModule", "HDF5FeatureWriter"]

log = logging.getLogger(__name__)


class HDF5FeatureWriter(BasePredictionWriter):
    """Writes each predicted video's features into ``appearance`` and ``motion`` HDF5 files (see the module
    docstring). Paths may be relative to the run's ``trainer.default_root_dir`` via the config's interpolation."""

    def __init__(self, appearance: str, motion: str):
        super().__init__(write_interval="batch")
        self.paths = (appearance, motion)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        for vid, app, mot in zip(prediction["ids"], prediction["appearance"], prediction["motion"]):
            key = feature_key(vid)
            write_video(self.paths[1], key, mot.cpu().numpy())
            write_video(self.paths[0], key, app.cpu().numpy())  # appearance last: its key marks the video done
        # written: drop the arrays, so that a long run's returned predictions hold only the ids
        prediction["appearance"].clear()
        prediction["motion"].clear()


class FeatureExtractionModule(LightningModule):
    """``zoo predict``: frozen 2D / 3D CNN features of each video (see :class:`VideoFeatureExtractor` for the
    arguments). ``predict_step`` -> ``{"ids": [...], "appearance": [(T, D_2d)], "motion": [(n, D_3d)]}``; nothing is
    trained (``training_step`` refuses)."""

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
    ):
        super().__init__()
        self.save_hyperparameters()
        self.model = VideoFeatureExtractor(
            image_model, motion_model, pretrained, image_size, motion_size, clip_len, overlap, grid
        )
        self.skipped: list[str] = []  # ids of the videos that could not be decoded in the current run

    def forward(self, frames: torch.Tensor):
        return self.model(frames)

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        ids, apps, mots = [], [], []
        for vid, frames in zip(batch["ids"], batch["frames"]):
            if isinstance(frames, Exception):  # an undecodable file (VideoFramesDataModule): skip it, keep going
                self.skipped.append(vid)
                warnings.warn(
                    f"skipping video {vid} (could not decode: {frames}); {len(self.skipped)} skipped so far",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            a, m = self.model(frames)
            ids.append(vid)
            apps.append(a)
            mots.append(m)
        return {"ids": ids, "appearance": apps, "motion": mots}

    def on_predict_start(self) -> None:
        self.skipped = []

    def on_predict_end(self) -> None:
        if self.skipped:
            names = ", ".join(self.skipped[:20]) + (" ..." if len(self.skipped) > 20 else "")
            log.warning(
                "feature extraction skipped %d undecodable video(s), not written (a rerun tries them again): %s",
                len(self.skipped),
                names,
            )

    def training_step(self, batch, batch_idx):
        raise UserError("FeatureExtractionModule only extracts features: run `zoo predict`, not `zoo fit`")

    def configure_optimizers(self):
        return None
