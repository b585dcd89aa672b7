"""Image classification data: ImageNet in its published layouts, or a bundled real sample.

``root`` may be

- an ImageFolder tree: ``root/train/<class>/*.JPEG`` and ``root/val/<class>/*.JPEG`` (the layout of the ILSVRC-2012
  tarballs after the usual val re-foldering; class folders are WordNet ids, sorted to give label indices);
- a Hugging Face dataset written with ``save_to_disk`` (``dataset_dict.json`` at the root, splits with an
  ``image`` and a ``label`` column), e.g. ``imagenet-1k`` downloaded and saved once;
- ``None``: scikit-learn's bundled handwritten digits (1,797 real 8x8 scans, 10 classes), upscaled to
  ``image_size`` and made 3-channel, split 80/20 into train/val (stratified, fixed seed); with ``test_split`` set,
  a test split as large as val (360 images) is held out of the training part (60/20/20). Used by demos and tests
  offline.

Testing (``trainer.test``) reads ``test_split`` when it is set (``root/<test_split>/``, a split of the saved dataset,
or the digits' held-out 20 %); otherwise the validation split, the ImageNet convention (its test labels are not
public), and the log says so.

``image_size`` follows the model: left ``None``, it is the attached
LightningModule's ``data_config()["image_size"]`` (EMO's / TinyMIM's input side), read in ``setup``; set, it must
agree with the model (``zoo.sizes.follow_model``). Without a model (tests, ``zoo bench --data``) it must be set.

Training transforms are timm's ``create_transform`` with the paper's augmentation arguments (RandAugment string,
colour jitter, random erasing, interpolation); evaluation resizes to ``image_size / crop_pct`` and centre-crops.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from zoo.errors import DataNotFoundError, UserError, check_positive

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_IMG_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


class _Transformed(Dataset):
    """(PIL image, label) pairs from any indexable source, with a transform applied on access."""

    def __init__(self, getitem, length: int, transform):
        self.getitem, self.length, self.transform = getitem, length, transform

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        img, label = self.getitem(i)
        return self.transform(img.convert("RGB")), int(label)


def _digits_split(seed: int = 0, test: bool = False):
    """scikit-learn digits as PIL images: stratified 80/20 train/val; ``test``: the 80 % split again into train and a
    test part as large as val (val unchanged). -> ((getter, n) for train, val[, test])"""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    imgs = (digits.images * (255.0 / 16.0)).astype(np.uint8)
    idx_tr, idx_va = train_test_split(np.arange(len(imgs)), test_size=0.2, random_state=seed, stratify=digits.target)
    idx_te = None
    if test:
        idx_tr, idx_te = train_test_split(
            idx_tr, test_size=len(idx_va), random_state=seed, stratify=digits.target[idx_tr]
        )

    def make(idx):
        pil = [Image.fromarray(imgs[i], mode="L") for i in idx]
        lab = [int(digits.target[i]) for i in idx]
        return lambda i: (pil[i], lab[i]), len(idx)

    return (make(idx_tr), make(idx_va)) + ((make(idx_te),) if test else ())


class ImageNetDataModule(LightningDataModule):
    """ImageNet-1k (ImageFolder or a saved Hugging Face dataset), or the bundled digits when ``root=None``.

    Batches are ``(images [B, 3, H, W] float, labels [B] long)``.
    """

    def __init__(
        self,
        root: str | None = None,
        image_size: int | None = None,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        auto_augment: str | None = "rand-m9-mstd0.5-inc1",
        color_jitter: float | None = 0.4,
        re_prob: float = 0.25,
        hflip: float = 0.5,
        scale: Sequence[float] = (0.08, 1.0),
        interpolation: str = "bicubic",
        crop_pct: float = 0.875,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        limit_train: int | None = None,
        limit_val: int | None = None,
        pin_memory: bool = True,
    ) -> None:
        super().__init__()
        where = "ImageNetDataModule"
        if image_size is not None:
            check_positive("image_size", image_size, where=where, fix="set it >= 1, or null to follow the model")
        check_positive("batch_size", batch_size, where=where)
        if eval_batch_size is not None:
            check_positive("eval_batch_size", eval_batch_size, where=where, fix="set it >= 1, or null for batch_size")
        check_positive("num_workers", num_workers, minimum=0, where=where)
        if not 0 < crop_pct <= 1:
            raise UserError(f"{where}: crop_pct must be in (0, 1], got {crop_pct}; 0.875 is the usual ImageNet value.")
        self.save_hyperparameters()
        self.root = Path(root).expanduser() if root is not None else None
        if self.root is not None:
            self._check_layout()
        self.train_set = self.val_set = self.test_set = None
        self._num_classes: int | None = 10 if self.root is None else None
        self.image_size: int | None = image_size  # resolved in setup (follows the model when None)

    # ------------------------------------------------------------------ layout
    def _is_hf(self) -> bool:
        return (self.root / "dataset_dict.json").is_file()

    def _check_layout(self) -> None:
        r, hp = self.root, self.hparams
        expected = (
            f"Expected either an ImageFolder tree ({r}/{hp.train_split}/<class>/*.JPEG and {r}/{hp.val_split}/<class>/"
            f"*.JPEG) or a Hugging Face dataset saved with save_to_disk ({r}/dataset_dict.json). "
            "Use root=None (or omit data.init_args.root) for the bundled digits sample."
        )
        if not r.is_dir():
            raise DataNotFoundError(f"image dataset folder {r} does not exist. {expected}")
        if self._is_hf():
            return
        for split in (hp.train_split, hp.val_split, *([hp.test_split] if hp.test_split else [])):
            d = r / split
            if not d.is_dir():
                raise DataNotFoundError(f"{r} has no '{split}/' folder. {expected}")
            classes = [c for c in d.iterdir() if c.is_dir()]
            if not classes:
                loose = [f.name for f in d.iterdir() if f.suffix.lower() in _IMG_EXT][:3]
                why = f" (it holds loose images such as {loose}: put them in one folder per class)" if loose else ""
                raise DataNotFoundError(f"{d} has no class sub-folders{why}. {expected}")

    @property
    def num_classes(self) -> int:
        if self._num_classes is None:
            if self._is_hf():
                info = json.loads((self.root / "dataset_dict.json").read_text())
                split = info["splits"][0]
                feat = json.loads((self.root / split / "dataset_info.json").read_text())["features"]["label"]
                self._num_classes = len(feat.get("names", [])) or int(feat.get("num_classes", 0))
            else:
                self._num_classes = sum(1 for c in (self.root / self.hparams.train_split).iterdir() if c.is_dir())
        return self._num_classes

    # ------------------------------------------------------------------ transforms
    def resolve_image_size(self) -> int:
        """``image_size``, or the attached model's (``zoo.sizes.follow_model``); a conflict is a one-line error."""
        from zoo.sizes import follow_model, model_data_config

        model = model_data_config(self).get("image_size")
        self.image_size = follow_model(self, "image_size", self.hparams.image_size, model)
        return self.image_size

    def transform(self, training: bool):
        from timm.data import create_transform

        hp = self.hparams
        interp = hp.interpolation if training or hp.interpolation != "random" else "bicubic"
        return create_transform(
            input_size=self.image_size or self.resolve_image_size(),
            is_training=training,
            scale=tuple(hp.scale),
            hflip=hp.hflip,
            color_jitter=hp.color_jitter,
            auto_augment=hp.auto_augment,
            interpolation=interp,
            re_prob=hp.re_prob,
            crop_pct=hp.crop_pct,
            mean=tuple(hp.mean),
            std=tuple(hp.std),
        )

    def setup(self, stage: str | None = None) -> None:
        size = self.resolve_image_size()
        if self.train_set is not None:
            return
        hp = self.hparams
        t_train, t_eval = self.transform(True), self.transform(False)
        self.test_set = None
        if self.root is None:
            splits = _digits_split(test=bool(hp.test_split))
            log.warning(
                "ImageNetDataModule: root=None -> using scikit-learn's bundled digits (10 classes), "
                "upscaled to %dx%d; %s",
                size,
                size,
                ("train/val/test " if hp.test_split else "train/val ")
                + "/".join(str(n) for _, n in splits)
                + " images",
            )
            self.train_set, self.val_set = _Transformed(*splits[0], t_train), _Transformed(*splits[1], t_eval)
            if hp.test_split:
                self.test_set = _Transformed(*splits[2], t_eval)
        elif self._is_hf():
            from datasets import load_from_disk

            dd = load_from_disk(str(self.root))
            val_name = hp.val_split if hp.val_split in dd else "validation"
            for s in (hp.train_split, val_name, *([hp.test_split] if hp.test_split else [])):
                if s not in dd:
                    wanted = ", ".join(repr(x) for x in (hp.train_split, hp.val_split, hp.test_split) if x)
                    raise DataNotFoundError(
                        f"{self.root} has splits {list(dd)}; expected {wanted}: set "
                        "data.init_args.train_split / val_split / test_split to its split names."
                    )
            tr, va = dd[hp.train_split], dd[val_name]

            def getter(ds):
                return lambda i: (ds[i]["image"], ds[i]["label"])

            self.train_set = _Transformed(getter(tr), len(tr), t_train)
            self.val_set = _Transformed(getter(va), len(va), t_eval)
            if hp.test_split:
                te = dd[hp.test_split]
                self.test_set = _Transformed(getter(te), len(te), t_eval)
        else:
            from torchvision.datasets import ImageFolder

            self.train_set = ImageFolder(str(self.root / hp.train_split), transform=t_train)
            self.val_set = ImageFolder(str(self.root / hp.val_split), transform=t_eval)
            if hp.test_split:
                self.test_set = ImageFolder(str(self.root / hp.test_split), transform=t_eval)
            for name, other in ((hp.val_split, self.val_set), (hp.test_split, self.test_set)):
                if other is not None and self.train_set.classes != other.classes:
                    raise UserError(
                        f"{self.root}: {hp.train_split} has {len(self.train_set.classes)} classes, {name} has "
                        f"{len(other.classes)}; the class folders must be the same in every split."
                    )
        if hp.limit_train:
            self.train_set = torch.utils.data.Subset(self.train_set, range(min(hp.limit_train, len(self.train_set))))
        if hp.limit_val:
            self.val_set = torch.utils.data.Subset(self.val_set, range(min(hp.limit_val, len(self.val_set))))
            if self.test_set is not None:
                self.test_set = torch.utils.data.Subset(self.test_set, range(min(hp.limit_val, len(self.test_set))))

    def _loader(self, ds, shuffle: bool, batch_size: int) -> DataLoader:
        hp = self.hparams
        return DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=hp.num_workers,
            drop_last=shuffle,
            pin_memory=hp.pin_memory and torch.cuda.is_available(),
            persistent_workers=hp.num_workers > 0,
        )

    def train_dataloader(self):
        return self._loader(self.train_set, True, self.hparams.batch_size)

    def val_dataloader(self):
        return self._loader(self.val_set, False, self.hparams.eval_batch_size or self.hparams.batch_size)

    def test_dataloader(self):
        if self.test_set is None:
            log.info(
                "ImageNetDataModule: no test_split set -> testing on the validation split (%s)",
                "the digits' val part" if self.root is None else self.hparams.val_split,
            )
            return self.val_dataloader()
        return self._loader(self.test_set, False, self.hparams.eval_batch_size or self.hparams.batch_size)

    def predict_dataloader(self):
        return self.val_dataloader()
