"""Image-text pairs for CLIP-style training (A-CLIP's three views), with zero-shot and retrieval evaluation data.

``root`` (training pairs) and ``val_root`` (retrieval pairs) may be

- a CSV / TSV file (``.csv``: comma, ``.tsv``/``.txt``: tab, or ``separator``) with a header naming the image column
  ``image_key`` (default ``filepath``, open_clip's) and the caption column ``caption_key`` (default ``title``);
  relative image paths are relative to the file's folder (the CC3M / CC12M / YFCC-15M csv layout of open_clip);
- webdataset tar shards: a folder of ``*.tar``, one ``.tar`` file or a brace pattern (``/data/cc3m/{00000..00331}.tar``)
  whose samples hold an image (``jpg``/``jpeg``/``png``/``webp``) and a ``txt`` caption (img2dataset's output);
  ``webdataset_length`` sets the samples per epoch (webdataset streams have no length);
- a captioned image folder: images with a caption file of the same stem beside them (``a/123.jpg`` + ``a/123.txt``);
- ``None``: scikit-learn's bundled handwritten digits (1,797 real 8x8 scans), upscaled to ``image_size``, captioned
  from templates ("a photo of the number seven", several phrasings, one drawn per access), split by image 80/20
  (stratified, fixed seed). Validation holds the held-out images with a caption each (retrieval) and their labels
  with ``classnames`` zero..nine and prompt ``templates`` (zero-shot classification), all offline.
  ``digits_layout="cluttered"`` builds scenes from the same split instead (:func:`cluttered_digit_scene`): the
  captioned digit at ``scene_digit_fraction`` of the side (default half), at a random position on an ``image_size``
  canvas, among ``scene_distractors`` clutter strokes (small windows cut from other digit scans of the same split, at
  the digit's stroke scale, never overlapping the digit, so the caption names the one whole digit);
  ``scene_copies`` scenes per training scan, one per held-out scan; deterministic given ``seed``. Evaluation items
  then carry the digit's box (``target_box``, image pixels) so a model can report how much of the described object
  its token selection keeps.

``zeroshot_root``: an ImageFolder tree (``<class>/*.jpg``) evaluated by zero-shot classification with
``classnames`` (a list in label order, ``"imagenet"`` for open_clip's ImageNet names, or ``None``: the folder names)
and ``templates`` (a list of ``"... {} ..."`` strings or ``"openai"``: the 80 OpenAI ImageNet templates).

Training items are A-CLIP's three views of one image (``microsoft/A-CLIP:datasets.py``, ``GetThreeRandomResizedCrop``
and the ACLIP dataset): two ``RandomResizedCrop(image_size, scale)`` boxes v1, v2 with colour augmentation
(ColorJitter(0.4, 0.4, 0.2, 0.1) p 0.8, grayscale p 0.2, Gaussian blur sigma in [0.1, 2] p 0.1, solarize p 0.2, no
flip), and v3, a random enlargement of the box that contains both ("zoom out"), without colour augmentation; all
normalised with ImageNet mean/std. Each view's box ``(top, left, height, width)`` in source pixels comes with it
(``boxes`` (3, 4)) for the attentive-mask mapping. The release has two defects here, kept by default because they
produced the paper's numbers (``release_union_box_bug=True``; ``False`` fixes both): the union box's left edge was
``min(left1, height2)``, and the enlarged box's height / width were drawn from the un-enlarged size so that it could
miss the far edge of the union.

Bad rows never stop an epoch: a missing image file or an empty caption is counted and skipped when the pairs are
listed (a warning names the first few); an image that does not decode is counted and skipped when it is read (the
batch is one smaller); webdataset skips are counted per pass and reported in a warning at its end. A source with
nothing usable is an error instead of an empty run: a CSV / folder none of whose sampled images decodes (checked at
setup, :func:`check_some_decode`), a webdataset pass that skipped every sample. Images of any mode (L, P, RGBA,
CMYK) are converted to RGB; captions longer than ``context_length`` tokens are truncated by the tokenizer (EOT kept as
the last token).

``image_size`` and ``context_length`` follow the model: left ``None``, they are the attached LightningModule's
``data_config()`` values (A-CLIP's image and text towers), read in ``setup``; set, they must agree with the model
(``zoo.sizes.follow_model``). Without a model (tests, ``zoo bench --data``) they must be set.
"""

from __future__ import annotations

import csv
import logging
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, IterableDataset

from zoo.errors import DataNotFoundError, UserError, check_choice, check_positive, not_utf8_error
from zoo.text.clip import clip_tokenizer

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_IMG_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
_WDS_IMG_KEYS = ("jpg", "jpeg", "png", "webp")

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_CAPTIONS = (
    "a photo of the number {}",
    "a handwritten {}",
    "the digit {}",
    "a scan of a handwritten {}",
    "the number {}, written by hand",
    "a small grey picture of a {}",
)
DIGIT_TEMPLATES = ("a photo of the number {}.", "a picture of the digit {}.")
DIGIT_LAYOUTS = ("frame", "cluttered")


# ================================================================================================ views
def three_boxes(
    height: int,
    width: int,
    scale: Sequence[float],
    ratio: Sequence[float],
    release_bug: bool = False,
    rng: random.Random | None = None,
) -> list[tuple[int, int, int, int]]:
    """(v1, v2, v3) boxes (top, left, height, width): two RandomResizedCrop boxes and a random enlargement of their
    union that stays inside the image (the fixed zoom-out; ``release_bug``: the released code's draw)."""
    import math

    rng = rng or random

    def rrc():  # torchvision's RandomResizedCrop.get_params, with our generator
        area = height * width
        log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        for _ in range(10):
            target = area * rng.uniform(scale[0], scale[1])
            ar = math.exp(rng.uniform(*log_ratio))
            w = int(round(math.sqrt(target * ar)))
            h = int(round(math.sqrt(target / ar)))
            if 0 < w <= width and 0 < h <= height:
                return rng.randint(0, height - h), rng.randint(0, width - w), h, w
        in_ratio = width / height
        if in_ratio < min(ratio):
            w, h = width, int(round(width / min(ratio)))
        elif in_ratio > max(ratio):
            h, w = height, int(round(height * max(ratio)))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    b1, b2 = rrc(), rrc()
    top = min(b1[0], b2[0])
    left = min(b1[1], b2[2]) if release_bug else min(b1[1], b2[1])
    bottom = max(b1[0] + b1[2], b2[0] + b2[2])
    right = max(b1[1] + b1[3], b2[1] + b2[3])
    h, w = bottom - top, right - left
    top = rng.randint(0, top) if top > 0 else top
    left = rng.randint(0, left) if left > 0 else left
    if release_bug:  # official: the size is drawn from [union size, image - new corner]
        h = rng.randint(h, height - top) if h < height else h
        w = rng.randint(w, width - left) if w < width else w
    else:  # the enlarged box must still reach the union's bottom / right edge
        h = rng.randint(bottom - top, height - top)
        w = rng.randint(right - left, width - left)
    return [b1, b2, (top, left, h, w)]


class _PILGaussianBlur:
    """SLIP's ``GaussianBlur``: PIL Gaussian blur with sigma ~ U[sigma_min, sigma_max]."""

    def __init__(self, sigma=(0.1, 2.0)):
        self.sigma = sigma

    def __call__(self, img):
        from PIL import ImageFilter

        return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(*self.sigma)))


class ThreeViews:
    """PIL image -> (v1, v2, v3 tensors (3, S, S), boxes LongTensor (3, 4)) as described in the module docstring."""

    def __init__(
        self,
        size: int,
        scale=(0.5, 1.0),
        ratio=(3 / 4, 4 / 3),
        online_augment: bool = True,
        release_union_box_bug: bool = True,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    ):
        from torchvision import transforms as T

        self.size, self.scale, self.ratio, self.bug = size, tuple(scale), tuple(ratio), release_union_box_bug
        norm = [T.ToTensor(), T.Normalize(mean, std)]
        aug = [
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.RandomApply([_PILGaussianBlur((0.1, 2.0))], p=0.1),
            T.RandomSolarize(128, p=0.2),
        ]
        self.online = T.Compose((aug if online_augment else []) + norm)
        self.ema = T.Compose(norm)

    def __call__(self, img):
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        if img.mode != "RGB":
            img = img.convert("RGB")
        boxes = three_boxes(img.height, img.width, self.scale, self.ratio, self.bug)
        crops = [TF.resized_crop(img, *b, [self.size, self.size], InterpolationMode.BILINEAR) for b in boxes]
        return (self.online(crops[0]), self.online(crops[1]), self.ema(crops[2]), torch.tensor(boxes, dtype=torch.long))


def eval_transform(size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """Resize the short side to ``size`` (bilinear), centre-crop ``size`` (crop pct 1.0, official eval), normalise."""
    from torchvision import transforms as T

    return T.Compose(
        [
            T.Resize(size, interpolation=T.InterpolationMode.BILINEAR),
            T.CenterCrop(size),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )


# ================================================================================================ sources
def _open_rgb(path_or_file) -> Any:
    from PIL import Image

    with Image.open(path_or_file) as im:
        im.load()
        return im.convert("RGB")


class SkipCounter:
    """Counts skipped rows by reason and warns with the first few names (once per reason and source)."""

    def __init__(self, source: str):
        self.source, self.counts, self.examples = source, {}, {}

    def add(self, reason: str, name: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < 3:
            ex.append(str(name))

    def warn(self) -> None:
        for reason, n in self.counts.items():
            log.warning(
                "%s: skipped %d row(s) with %s, e.g. %s", self.source, n, reason, ", ".join(self.examples[reason])
            )

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def read_pair_table(
    path: Path, image_key: str, caption_key: str | Sequence[str], separator: str | None, skips: SkipCounter
) -> list[tuple[str, str | list[str]]]:
    """(image path, caption) rows of a CSV/TSV file; rows with a missing file or an empty caption are skipped.
    ``caption_key`` may list several columns (YFCC's title and description): the row keeps its non-empty ones and
    training draws one per access, as SLIP / A-CLIP do."""
    sep = separator or ("," if path.suffix.lower() == ".csv" else "\t")
    keys = [caption_key] if isinstance(caption_key, str) else list(caption_key)
    with open(path, newline="", encoding="utf-8") as f:
        try:
            reader = csv.DictReader(f, delimiter=sep)
            fields = reader.fieldnames or []
            if image_key not in fields or any(k not in fields for k in keys):
                raise UserError(
                    f"{path}: columns {fields} lack image_key={image_key!r} / caption_key="
                    f"{caption_key!r}: set data.init_args.image_key / caption_key to its image-path and "
                    "caption columns"
                )
            rows = []
            for i, r in enumerate(reader, start=2):
                img = (r.get(image_key) or "").strip()
                caps = [c for c in ((r.get(k) or "").strip() for k in keys) if c]
                cap = caps[0] if len(caps) == 1 else caps
                p = Path(img) if Path(img).is_absolute() else path.parent / img
                if not cap:
                    skips.add("an empty caption", f"{path.name}:{i}")
                elif not img or not p.is_file():
                    skips.add("a missing image file", f"{path.name}:{i} ({img})")
                else:
                    rows.append((str(p), cap))
        except UnicodeDecodeError as e:
            raise not_utf8_error(path, e) from None
    return rows


def read_captioned_folder(root: Path, skips: SkipCounter) -> list[tuple[str, str]]:
    """(image path, caption) for every image under ``root`` with a same-stem ``.txt`` caption beside it."""
    rows = []
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() not in _IMG_EXT:
            continue
        txt = p.with_suffix(".txt")
        cap = txt.read_text(encoding="utf-8", errors="replace").strip() if txt.is_file() else ""
        if not cap:
            skips.add("no or an empty caption file", p.name)
        else:
            rows.append((str(p), cap))
    return rows


def _shards(root: str) -> list[str] | None:
    """Tar shard URLs of a webdataset root, else ``None``."""
    if "{" in root and ".tar" in root:
        import braceexpand

        return list(braceexpand.braceexpand(root))
    p = Path(root)
    if p.is_file() and p.suffix == ".tar":
        return [str(p)]
    if p.is_dir():
        tars = sorted(str(t) for t in p.glob("*.tar"))
        return tars or None
    return None


def check_some_decode(paths: Sequence[str], source, probes: int = 8) -> None:
    """Decode up to ``probes`` images spread evenly over ``paths``; a :class:`UserError` when none decodes.

    Undecodable images are skipped while training (the batch is one smaller); without this check a source whose images
    are all corrupt (or not images) would yield only empty batches: zero training steps and a clean exit."""
    n, m = len(paths), min(probes, len(paths))
    picks = sorted({round(k * (n - 1) / max(m - 1, 1)) for k in range(m)})
    errors = []
    for i in picks:
        try:
            _open_rgb(paths[i])
            return
        except Exception as e:  # noqa: BLE001 - any decoding failure
            errors.append(f"{Path(paths[i]).name} ({type(e).__name__})")
    raise UserError(
        f"{source}: none of {len(picks)} images sampled across its {n} rows decodes, e.g. {errors[0]}; "
        "check that the image column / files hold images (JPEG, PNG, ...) and re-download corrupt files"
    )


def cluttered_digit_scene(
    target, pool, canvas: int, digit_side: int, distractors: int, rng, window: Sequence[int] = (3, 5)
) -> tuple[Any, tuple[int, int, int, int]]:
    """One cluttered scene: (``canvas`` x ``canvas`` uint8 array, the target's box (top, left, height, width)).

    ``target`` (8, 8) and ``pool`` (N, 8, 8) are uint8 digit scans; ``rng`` a numpy ``Generator``. The target is
    resized (bicubic) to ``digit_side`` px and placed uniformly at random inside the canvas; each distractor is a
    ``k x k`` window (k in ``window``) of a random scan of ``pool`` holding some ink, resized by the target's scale
    (same stroke width) and placed where it does not overlap the target's box (up to 20 draws each; overlapping
    distractors combine by maximum)."""
    import numpy as np
    from PIL import Image

    def resized(a, side):
        return np.asarray(Image.fromarray(a, mode="L").resize((side, side), Image.BICUBIC), dtype=np.uint8)

    scale = digit_side / target.shape[0]
    scene = np.zeros((canvas, canvas), np.uint8)
    top, left = (int(v) for v in rng.integers(0, canvas - digit_side + 1, size=2))
    for _ in range(distractors):
        for _ in range(20):
            k = int(rng.integers(window[0], window[1] + 1))
            src = pool[int(rng.integers(len(pool)))]
            y, x = (int(v) for v in rng.integers(0, src.shape[0] - k + 1, size=2))
            frag = src[y : y + k, x : x + k]
            side = max(1, round(k * scale))
            fy, fx = (int(v) for v in rng.integers(0, canvas - side + 1, size=2))
            apart = fy + side <= top or fy >= top + digit_side or fx + side <= left or fx >= left + digit_side
            if apart and (frag > 96).sum() >= k:  # a stroke, not an empty corner
                np.maximum(
                    scene[fy : fy + side, fx : fx + side],
                    resized(frag, side),
                    out=scene[fy : fy + side, fx : fx + side],
                )
                break
    scene[top : top + digit_side, left : left + digit_side] = resized(target, digit_side)
    return scene, (top, left, digit_side, digit_side)


class PairDataset(Dataset):
    """Map-style pairs: ``rows`` of (image loader or path, caption or list of captions, label); items are dicts.

    ``train``: the three A-CLIP views; else one evaluation view. An undecodable image gives ``None`` (the collate
    function drops it and the counter counts it)."""

    def __init__(self, rows, transform: Callable, tokenizer, train: bool, skips: SkipCounter):
        self.rows, self.transform, self.tokenizer, self.train, self.skips = rows, transform, tokenizer, train, skips

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        src, caption, label, *box = self.rows[i]  # a 4th element: the described object's box (scenes)
        try:
            img = _open_rgb(src) if isinstance(src, str) else src().convert("RGB")
        except Exception as e:  # noqa: BLE001 - any decoding failure is a bad row, not a crash
            self.skips.add("an undecodable image", f"{src if isinstance(src, str) else i} ({type(e).__name__})")
            if self.skips.counts["an undecodable image"] <= 3:
                log.warning("skipping undecodable image %s: %s", src if isinstance(src, str) else i, e)
            return None
        if isinstance(caption, (list, tuple)):  # several captions (templates): one drawn per access in training
            caption = random.choice(caption) if self.train else caption[i % len(caption)]
        item = make_item(img, caption, label, i, self.transform, self.tokenizer, self.train)
        if box and not self.train:
            item["target_box"] = torch.tensor(box[0], dtype=torch.long)
        return item


def make_item(img, caption: str, label: int, index: int, transform, tokenizer, train: bool) -> dict:
    text = tokenizer([caption])[0]
    if train:
        v1, v2, v3, boxes = transform(img)
        return {"view1": v1, "view2": v2, "view3": v3, "boxes": boxes, "text": text}
    return {"image": transform(img), "text": text, "label": torch.tensor(label), "index": torch.tensor(index)}


def collate_skipping(items):
    """Default collation of the items that decoded (``None`` items are dropped)."""
    from torch.utils.data import default_collate

    items = [x for x in items if x is not None]
    if not items:
        return None
    return default_collate(items)


class WebDatasetPairs(IterableDataset):
    """Streams (image, caption) samples from tar shards with ``webdataset``; bad samples are counted and skipped."""

    def __init__(
        self,
        urls: list[str],
        transform,
        tokenizer,
        train: bool,
        skips: SkipCounter,
        length: int | None = None,
        shuffle: int = 1000,
    ):
        self.urls, self.transform, self.tokenizer, self.train, self.skips = urls, transform, tokenizer, train, skips
        self.length, self.shuffle = length, shuffle

    def __len__(self):
        if self.length is None:
            raise TypeError("webdataset length unknown")
        return self.length

    def _sample(self, s: dict):
        import io

        key = s.get("__key__", "?")
        cap = s.get("txt")
        cap = cap.decode("utf-8", errors="replace").strip() if isinstance(cap, bytes) else (cap or "").strip()
        data = next((s[k] for k in _WDS_IMG_KEYS if k in s), None)
        if not cap:
            self.skips.add("an empty caption", key)
            return None
        if data is None:
            self.skips.add("no image", key)
            return None
        try:
            img = _open_rgb(io.BytesIO(data))
        except Exception:  # noqa: BLE001
            self.skips.add("an undecodable image", key)
            return None
        return make_item(img, cap, -1, -1, self.transform, self.tokenizer, self.train)

    def __iter__(self):
        import webdataset as wds

        ds = wds.WebDataset(
            self.urls,
            handler=wds.warn_and_continue,
            shardshuffle=self.train and len(self.urls),
            nodesplitter=wds.split_by_node,
            empty_check=False,
        )
        if self.train and self.shuffle:
            ds = ds.shuffle(self.shuffle)
        n = 0
        before = dict(self.skips.counts)
        try:
            for s in ds:
                item = self._sample(s)
                if item is None:
                    continue
                yield item
                n += 1
                if self.length is not None and n >= self.length:
                    break
        finally:
            self._report(n, before)

    def _report(self, yielded: int, before: dict) -> None:
        """Warn with this pass's skipped samples by reason (in the process that read them: a worker's count is its
        own); a pass that skipped samples and yielded none is a :class:`UserError`."""
        skipped = {r: c - before.get(r, 0) for r, c in self.skips.counts.items() if c > before.get(r, 0)}
        if not skipped:
            return
        what = ", ".join(f"{c} with {r}" for r, c in skipped.items())
        examples = "; ".join(", ".join(self.skips.examples[r]) for r in skipped)
        if yielded == 0:
            raise UserError(
                f"{self.skips.source}: no usable sample in {len(self.urls)} shard(s): skipped {what} "
                f"(e.g. {examples}); each sample needs a txt caption and a jpg/png/webp image"
            )
        log.warning(
            "%s: skipped %d of %d webdataset samples this pass (%s; e.g. %s)",
            self.skips.source,
            sum(skipped.values()),
            yielded + sum(skipped.values()),
            what,
            examples,
        )


# ================================================================================================ data module
class ImageTextDataModule(LightningDataModule):
    """Image-text pairs (see the module docstring). Batches: training ``{"view1", "view2", "view3" (B, 3, S, S),
    "boxes" (B, 3, 4), "text" (B, L)}``; evaluation ``{"image", "text", "label" (-1: none), "index" (-1: no
    caption pair)}``. ``classnames`` / ``templates`` are read by the module for zero-shot classification."""

    def __init__(
        self,
        root: str | None = None,
        val_root: str | None = None,
        zeroshot_root: str | None = None,
        image_key: str = "filepath",
        caption_key: str | Sequence[str] = "title",
        separator: str | None = None,
        classnames: Sequence[str] | str | None = None,
        templates: Sequence[str] | str | None = None,
        image_size: int | None = None,
        scale: Sequence[float] = (0.5, 1.0),
        context_length: int | None = None,
        online_augment: bool = True,
        release_union_box_bug: bool = True,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        webdataset_length: int | None = None,
        digits_val_fraction: float = 0.2,
        digits_layout: str = "frame",
        scene_digit_fraction: float = 0.5,
        scene_distractors: int = 4,
        scene_copies: int = 2,
        seed: int = 0,
        pin_memory: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_positive("batch_size", batch_size, where="ImageTextDataModule")
        unset = "or null to follow the model"
        if image_size is not None:
            check_positive("image_size", image_size, where="ImageTextDataModule", fix=f"set it >= 1, {unset}")
        if context_length is not None:
            check_positive(
                "context_length", context_length, minimum=2, where="ImageTextDataModule", fix=f"set it >= 2, {unset}"
            )
        check_choice("digits_layout", digits_layout, DIGIT_LAYOUTS, where="ImageTextDataModule")
        if not 0 < scene_digit_fraction <= 1:
            raise UserError(
                f"scene_digit_fraction={scene_digit_fraction}: the digit's side as a fraction of the canvas must be "
                "in (0, 1] (default 0.5)"
            )
        check_positive("scene_distractors", scene_distractors, minimum=0, where="ImageTextDataModule")
        check_positive("scene_copies", scene_copies, where="ImageTextDataModule")
        if not (0 < scale[0] <= scale[1] <= 1):
            raise UserError(f"scale={list(scale)}: the crop area fraction range must satisfy 0 < min <= max <= 1")
        self.train_set = self.val_sets = None
        self.classnames: list[str] | None = None
        self.templates = templates
        self.skips = SkipCounter(str(root) if root else "digits")
        self.image_size, self.context_length = image_size, context_length  # resolved in setup (follow the model)

    # ------------------------------------------------------------------ helpers
    def resolve_model_args(self) -> None:
        """``image_size`` / ``context_length``, or the attached model's (``zoo.sizes.follow_model``); a conflict is
        a one-line error."""
        from zoo.sizes import follow_model, model_data_config

        model = model_data_config(self)
        for name in ("image_size", "context_length"):
            setattr(self, name, follow_model(self, name, self.hparams[name], model.get(name)))

    def tokenizer(self):
        if self.context_length is None:
            self.resolve_model_args()
        return clip_tokenizer(self.context_length)

    def _views(self):
        hp = self.hparams
        return ThreeViews(
            self.image_size, hp.scale, online_augment=hp.online_augment, release_union_box_bug=hp.release_union_box_bug
        )

    def _pairs(self, root: str, train: bool, skips: SkipCounter):
        hp = self.hparams
        tok = self.tokenizer()
        transform = self._views() if train else eval_transform(self.image_size)
        urls = _shards(str(root))
        if urls is not None:
            return WebDatasetPairs(urls, transform, tok, train, skips, hp.webdataset_length if train else None)
        p = Path(root).expanduser()
        if p.is_file() and p.suffix.lower() in (".csv", ".tsv", ".txt"):
            rows = read_pair_table(p, hp.image_key, hp.caption_key, hp.separator, skips)
        elif p.is_dir():
            rows = read_captioned_folder(p, skips)
        else:
            raise DataNotFoundError(
                f"{root}: not an image-text dataset. Expected a CSV/TSV file with columns {hp.image_key!r} and "
                f"{hp.caption_key!r}, a folder of webdataset *.tar shards (jpg + txt per sample), or a folder of "
                "images with same-stem .txt captions; root=null uses the bundled captioned digits."
            )
        skips.warn()
        if not rows:
            raise DataNotFoundError(f"{root}: no usable image-text pair (skipped: {skips.counts})")
        check_some_decode([src for src, _ in rows], root)
        return PairDataset([(src, cap, -1) for src, cap in rows], transform, tok, train, skips)

    def _zeroshot(self, root: str):
        from torchvision.datasets import ImageFolder

        from zoo.metrics.zeroshot import resolve_classnames, resolve_templates

        p = Path(root).expanduser()
        if not p.is_dir():
            raise DataNotFoundError(f"zeroshot_root={root}: expected an ImageFolder tree <class>/<image>")
        folder = ImageFolder(str(p))
        names = resolve_classnames(self.hparams.classnames) or [c.replace("_", " ") for c in folder.classes]
        if len(names) != len(folder.classes):
            raise UserError(
                f"{len(names)} classnames for {len(folder.classes)} class folders in {root}: give one "
                "name per folder, in sorted folder order"
            )
        self.classnames = names
        tmpl = self.templates if self.templates is not None else "openai"
        first = resolve_templates(tmpl)[0]
        rows = [(path, first.format(names[y]), y) for path, y in folder.samples]
        ds = PairDataset(rows, eval_transform(self.image_size), self.tokenizer(), False, SkipCounter(str(root)))
        ds.no_pairs = True
        return ds

    def _digits(self):
        """((train rows, val rows)) of the captioned digits: (PIL loader, captions, label[, target box])."""
        import numpy as np
        from PIL import Image
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        hp = self.hparams
        digits = load_digits()
        imgs = (digits.images * (255.0 / 16.0)).astype(np.uint8)
        idx_tr, idx_va = train_test_split(
            np.arange(len(imgs)), test_size=hp.digits_val_fraction, random_state=hp.seed, stratify=digits.target
        )
        size = self.image_size
        if hp.digits_layout == "cluttered":
            return self._scenes(imgs, digits.target, idx_tr, hp.scene_copies, 1), self._scenes(
                imgs, digits.target, idx_va, 1, 2
            )

        def rows(idx):
            out = []
            for i in idx:
                pil = Image.fromarray(imgs[i], mode="L").resize((size, size), Image.BICUBIC)
                y = int(digits.target[i])
                out.append((lambda pil=pil: pil, [c.format(DIGIT_NAMES[y]) for c in DIGIT_CAPTIONS], y))
            return out

        return rows(idx_tr), rows(idx_va)

    def _scenes(self, imgs, targets, idx, copies: int, stream: int):
        """Rows of cluttered scenes (:func:`cluttered_digit_scene`) of the scans ``idx``, distractors cut from the same
        scans; ``copies`` scenes per scan; the numpy stream ``(seed, stream)`` makes them deterministic."""
        import numpy as np
        from PIL import Image

        hp = self.hparams
        rng = np.random.default_rng([hp.seed, stream])
        side = max(1, round(hp.scene_digit_fraction * self.image_size))
        pool = imgs[idx]
        out = []
        for _ in range(copies):
            for i in idx:
                scene, box = cluttered_digit_scene(imgs[i], pool, self.image_size, side, hp.scene_distractors, rng)
                pil = Image.fromarray(scene, mode="L")
                y = int(targets[i])
                out.append((lambda pil=pil: pil, [c.format(DIGIT_NAMES[y]) for c in DIGIT_CAPTIONS], y, box))
        return out

    # ------------------------------------------------------------------ Lightning
    def setup(self, stage: str | None = None) -> None:
        self.resolve_model_args()
        if self.train_set is not None:
            return
        hp = self.hparams
        tok = self.tokenizer()
        if hp.root is None:
            log.warning(
                "ImageTextDataModule: root=None -> scikit-learn's digits with template captions "
                "(%d px, %s layout, %d %% held out for zero-shot / retrieval)",
                self.image_size,
                hp.digits_layout,
                round(100 * hp.digits_val_fraction),
            )
            tr, va = self._digits()
            self.train_set = PairDataset(tr, self._views(), tok, True, self.skips)
            self.val_sets = [PairDataset(va, eval_transform(self.image_size), tok, False, self.skips)]
            self.classnames = list(DIGIT_NAMES) if hp.classnames is None else None
            if self.templates is None:
                self.templates = list(DIGIT_TEMPLATES)
        else:
            self.train_set = self._pairs(hp.root, True, self.skips)
            self.val_sets = []
            if hp.val_root:
                self.val_sets.append(self._pairs(hp.val_root, False, SkipCounter(str(hp.val_root))))
        if hp.zeroshot_root:
            self.val_sets.append(self._zeroshot(hp.zeroshot_root))
        if self.classnames is None and hp.classnames is not None:
            from zoo.metrics.zeroshot import resolve_classnames

            self.classnames = resolve_classnames(hp.classnames)

    def _loader(self, ds, train: bool):
        hp = self.hparams
        iterable = isinstance(ds, IterableDataset)
        return DataLoader(
            ds,
            batch_size=hp.batch_size if train else (hp.eval_batch_size or hp.batch_size),
            shuffle=train and not iterable,
            drop_last=train and not iterable,
            num_workers=hp.num_workers,
            collate_fn=_Collate(ds),
            pin_memory=hp.pin_memory and torch.cuda.is_available(),
            persistent_workers=hp.num_workers > 0,
        )

    def train_dataloader(self):
        n, bs = (None if isinstance(self.train_set, IterableDataset) else len(self.train_set)), self.hparams.batch_size
        if n is not None and n < bs:  # drop_last: not one full batch, so not one training step
            raise UserError(
                f"ImageTextDataModule: {n} training pairs are fewer than batch_size={bs} and the partial "
                f"batch is dropped, so nothing would train; set data.init_args.batch_size to at most {n}"
            )
        return self._loader(self.train_set, True)

    def val_dataloader(self):
        loaders = [self._loader(ds, False) for ds in self.val_sets or []]
        return loaders if len(loaders) != 1 else loaders[0]

    def test_dataloader(self):
        return self.val_dataloader()


class _Collate:
    """``collate_skipping``; items of a class-folder set get ``index = -1`` (no caption pair for retrieval)."""

    def __init__(self, ds):
        self.no_pairs = getattr(ds, "no_pairs", False)

    def __call__(self, items):
        batch = collate_skipping(items)
        if batch is not None and self.no_pairs:
            batch["index"] = torch.full_like(batch["index"], -1)
        return batch
