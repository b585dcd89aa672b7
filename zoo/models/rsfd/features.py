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
again and skips it again. ``image_checkpoint`` loads the 2D CNN's weights from a :class:`FrameClassificationModule`
checkpoint; ``seed`` draws the random weights from a seed of their own (not the run's ``seed_everything``), so that
the features, like the release's files, do not change with the captioner's seed.

:class:`FrameClassificationModule` (``zoo fit``) trains such a timm 2D CNN with a linear head to classify single frames,
the same resizing and normalisation as the extractor: the RSFD demo's offline stand-in for ImageNet weights
(``configs/demo/rsfd-cnn.yaml``, frames of ``zoo.data_modules.captioning.DigitFramesDataModule``), read back by
``FeatureExtractionModule(image_checkpoint=...)``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import BasePredictionWriter

from zoo.errors import UserError
from zoo.video_features import IMAGENET_MEAN, IMAGENET_STD, VideoFeatureExtractor, feature_key, write_video

__all__ = ["FeatureExtractionModule", "FrameClassificationModule", "HDF5FeatureWriter"]

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
    trained (``training_step`` refuses). ``image_checkpoint``: a :class:`FrameClassificationModule` checkpoint whose
    CNN (the same ``image_model``) replaces the 2D weights; ``seed``: the random weights drawn from this seed (the
    global generator left as it was) instead of the run's random state."""

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
        image_checkpoint: str | None = None,
        seed: int | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        with torch.random.fork_rng(enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.model = VideoFeatureExtractor(
                image_model, motion_model, pretrained, image_size, motion_size, clip_len, overlap, grid
            )
        if image_checkpoint is not None:
            self.model.image.load_state_dict(cnn_weights(image_checkpoint, image_model))
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


def cnn_weights(path: str, image_model: str) -> dict[str, torch.Tensor]:
    """The 2D CNN's state dict from a :class:`FrameClassificationModule` checkpoint (one-line errors for a missing
    file or another ``image_model``)."""
    if not Path(path).is_file():
        raise UserError(
            f"image_checkpoint {path} not found: train the frame classifier first (zoo fit --config "
            "configs/demo/rsfd-cnn.yaml, the same trainer.default_root_dir)"
        )
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    trained = (ckpt.get("hyper_parameters") or {}).get("image_model")
    state = {k[len("image.") :]: v for k, v in (ckpt.get("state_dict") or {}).items() if k.startswith("image.")}
    if not state or trained != image_model:
        raise UserError(
            f"image_checkpoint {path} holds no FrameClassificationModule CNN of image_model={image_model!r} "
            f"(found {trained!r}): point it at the frame classifier's last.ckpt, or set image_model to match"
        )
    return state


class FrameClassificationModule(LightningModule):
    """``zoo fit``: a timm 2D CNN (``image_model``, random init) + a linear head classify single frames (uint8
    (B, H, W, 3), label (B,)) with cross-entropy and Adam (``lr``); frames resized to ``image_size`` and normalised as
    :class:`VideoFeatureExtractor` does, the head on the globally averaged map. The RSFD demo's stand-in for ImageNet
    pre-training (``configs/demo/rsfd-cnn.yaml``); :class:`FeatureExtractionModule` reads the CNN back
    (``image_checkpoint``). ``seed``: the initial weights drawn from this seed (the global generator left as it was),
    not from the run's ``seed_everything``, so the demo's features are fixed across the captioner's seeds."""

    def __init__(
        self,
        image_model: str = "test_resnet",
        image_size: int = 32,
        num_classes: int = 10,
        lr: float = 1e-3,
        seed: int | None = 0,
    ):
        super().__init__()
        import timm

        self.save_hyperparameters()
        if num_classes < 2:
            raise UserError(f"num_classes={num_classes}: a classifier needs at least 2 classes")
        with torch.random.fork_rng(enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            try:
                self.image = timm.create_model(image_model, pretrained=False, num_classes=0, global_pool="")
            except RuntimeError as e:
                raise UserError(f"image_model={image_model!r}: {e} (any timm model name)") from e
            self.head = torch.nn.Linear(self.image.num_features, num_classes)
        cfg = getattr(self.image, "pretrained_cfg", {}) or {}
        self.register_buffer("mean", torch.tensor(cfg.get("mean", IMAGENET_MEAN)).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(cfg.get("std", IMAGENET_STD)).view(1, 3, 1, 1), False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> logits (B, num_classes)."""
        x = images.permute(0, 3, 1, 2).float() / 255.0
        x = (VideoFeatureExtractor._resize(x, self.hparams.image_size) - self.mean) / self.std
        return self.head(F.adaptive_avg_pool2d(self.image.forward_features(x), 1).flatten(1))

    def training_step(self, batch, batch_idx):
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels.long())
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", (logits.argmax(1) == labels).float().mean())
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
