"""Video captioning on pre-extracted features (RSFD, Zhong et al., AAAI 2023): HDF5 feature files + caption
corpora in their published layouts.

:class:`CaptionFeaturesDataModule` reads

- ``features``: one HDF5 file per modality (the release: ``image_resnet101_imagenet_fps_max60.hdf5`` and
  ``motion_resnext101_kinetics_duration16_overlap8.hdf5``), keyed ``video<id>`` -> float (steps, dim), read with
  ``zoo.video_features``; written by ``zoo predict`` with
  ``zoo.models.rsfd.features.FeatureExtractionModule`` and ``HDF5FeatureWriter`` (and :class:`VideoFramesDataModule`
  below). Every video of the corpus must be present, 2-D, with one dimension per file;
  anything else is a one-line error naming the file and the key;
- the captions, ``layout``:

  - ``"msrvtt"``: ``videodatainfo.json`` (the MSR-VTT 2016 challenge release: ``videos`` [{``video_id``,
    ``category``, ``split``: train / validate / test}] and ``sentences`` [{``video_id``, ``caption``}]): the split
    6,513 / 497 / 2,990 and the 20 categories come from the file;
  - ``"msvd"``: ``MSVD_{train,val,test}.tsv`` (the Region_Learner / Frozen-in-Time caption lists: ``<captions joined by
    ", ">\\t<clip id>``, read with ``zoo.data_modules.video.read_msvd``); video ids are the clip ids, their feature
    keys ``video<clip id>``; no categories.

  ``root=None``: **synthetic moving digits** (``zoo.data_modules.video.moving_digits``, offline): clips of
  scikit-learn digit scans moving left / right / up / down, four template captions per clip (every phrasing of its
  digit and direction), disjoint scans in training and held-out clips (:func:`digits_corpus`; ``digits_colour_zipf``:
  the long-tailed variant, digits drawn in colours whose words follow Zipf's law in training). ``prepare_data``
  extracts their features with small frozen CNNs of random weights (``zoo.video_features``: a timm 2D CNN per frame
  and a torchvision 3D ResNet over overlapping windows; nothing is trained) into HDF5 files and writes the corpus as
  ``videodatainfo.json`` under ``cache_dir`` (a temporary folder by default), then everything is read as the real
  layout. The RSFD demo instead runs the steps as Lightning runs of their own (``configs/demo/rsfd-cnn.yaml``: the
  frame classifier on :class:`DigitFramesDataModule`, the stand-in for ImageNet weights; ``rsfd-features.yaml``:
  ``zoo predict`` of the same clips with :class:`VideoFramesDataModule` ``digits_sizes``, which also writes the
  corpus) and reads their files with ``root``.

Vocabulary (the release's ``misc/utils_corpora.py``): captions lower-cased and split into words (letters, digits,
apostrophes); specials ``<pad> <unk> <bos> <eos> <mask> <vis>`` = ids 0-5, then the training split's words with
count > ``count_threshold`` in decreasing frequency (ties alphabetical). ``token_counts`` (|V|,) is the frequency table
FAD needs: every caption encoded (out-of-vocabulary words count as ``<unk>``, ``<bos>``/``<eos>`` once per caption)
over the training split (``frequencies="train"``, default) or all splits (``"all"``, as the release's hard-coded
table).

Samples: training = one per caption (features sampled at ``n_steps`` segment-random steps per modality, the caption
``<bos> w1 .. wn <eos>`` cut to ``max_len`` tokens); evaluation = one per video (segment centres) with all its
references. Batches: ``feats`` {``m0``: (B, n_steps, dim), ``m1``: ...} (one entry per modality, in file order),
``tokens`` (B, L) (training), ``category`` (B,) (MSR-VTT), ``index`` (B,) video index, ``refs`` (evaluation: lists of
reference strings).
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from zoo.data_modules.video import (
    DIGIT_NAMES,
    DIRECTIONS,
    digit_caption,
    moving_digits,
    read_msvd,
    segment_indices,
)
from zoo.errors import DataNotFoundError, UserError, check_choice, check_positive
from zoo.sizes import follow_model, model_data_config
from zoo.video_features import FeatureFiles, done_keys, feature_key

log = logging.getLogger(__name__)

SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>", "<mask>", "<vis>")
PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPLITS = ("train", "val", "test")
_MSRVTT_SPLIT = {"train": "train", "validate": "val", "val": "val", "test": "test"}


# ================================================================================================ corpora
def words(caption: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", caption.lower())


class Corpus:
    """Videos per split, captions per video, category per video (``None`` without categories)."""

    def __init__(
        self,
        split_videos: dict[str, list[str]],
        captions: dict[str, list[str]],
        categories: dict[str, int] | None = None,
    ):
        self.split_videos, self.captions, self.categories = split_videos, captions, categories

    def num_captions(self, split: str) -> int:
        return sum(len(self.captions[v]) for v in self.split_videos[split])


def read_videodatainfo(path: str | Path) -> Corpus:
    """MSR-VTT ``videodatainfo.json`` -> Corpus (split and category of every video from its ``videos`` list)."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(
            f"msrvtt: {path} not found (videodatainfo.json with 'videos' and 'sentences', the MSR-VTT 2016 release)"
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "videos" not in data or "sentences" not in data:
        raise UserError(
            f"{path}: needs 'videos' (video_id, category, split) and 'sentences' (video_id, caption), the "
            "videodatainfo.json layout"
        )
    split_videos = {s: [] for s in SPLITS}
    categories, captions = {}, {}
    for v in data["videos"]:
        vid, split = str(v["video_id"]), _MSRVTT_SPLIT.get(str(v.get("split")))
        if split is None:
            raise UserError(f"{path}: video {vid} has split {v.get('split')!r}; expected train / validate / test")
        split_videos[split].append(vid)
        categories[vid] = int(v.get("category", 0))
        captions[vid] = []
    for s in data["sentences"]:
        vid = str(s["video_id"])
        if vid not in captions:
            raise UserError(f"{path}: a sentence names video {vid!r}, which is not in the file's 'videos' list")
        captions[vid].append(str(s["caption"]).strip())
    return Corpus(split_videos, captions, categories)


def read_msvd_lists(root: str | Path, files: dict[str, str]) -> Corpus:
    """MSVD caption lists (one TSV per split) -> Corpus (``zoo.data_modules.video.read_msvd`` parses each file)."""
    root = Path(root)
    split_videos, captions = {}, {}
    for split, name in files.items():
        path = root / name
        if not path.is_file():
            raise DataNotFoundError(
                f"msvd: {path} not found (MSVD_{{train,val,test}}.tsv: '<captions joined by \", "
                "\">\\t<clip id>' per line)"
            )
        vids = []
        for video_path, caption, _ in read_msvd(path, root):
            vid = Path(video_path).stem
            if vid not in captions:
                captions[vid] = []
                vids.append(vid)
            captions[vid].append(caption)
        split_videos[split] = vids
    return Corpus(split_videos, captions, None)


def build_vocab(captions: Sequence[str], count_threshold: int) -> list[str]:
    """id -> word: the specials, then words with count > ``count_threshold`` by decreasing count (ties by word)."""
    counts = Counter(w for c in captions for w in words(c))
    kept = sorted((w for w, n in counts.items() if n > count_threshold), key=lambda w: (-counts[w], w))
    return list(SPECIALS) + kept


def encode(caption: str, wtoi: dict[str, int], max_len: int) -> list[int]:
    """``<bos> w1 .. wn <eos>`` with unknown words as ``<unk>``, cut to ``max_len`` tokens (``<eos>`` kept)."""
    ids = [wtoi.get(w, UNK) for w in words(caption)][: max_len - 2]
    return [BOS, *ids, EOS]


def frequency_table(captions: Sequence[str], wtoi: dict[str, int], vocab_size: int) -> torch.Tensor:
    """Counts per id over the encoded captions (no length cut): the FAD table."""
    counts = torch.zeros(vocab_size)
    for c in captions:
        ids = encode(c, wtoi, 10**9)
        counts += torch.bincount(torch.tensor(ids), minlength=vocab_size).float()
    return counts


# ================================================================================================ features
def sample_steps(x: np.ndarray, n_steps: int, rng: np.random.Generator | None) -> np.ndarray:
    """``n_steps`` rows, one per equal segment (random within it with ``rng``, else the centre)."""
    return x[segment_indices(x.shape[0], n_steps, rng)]


class CaptionDataset(Dataset):
    def __init__(
        self,
        videos: Sequence[str],
        corpus: Corpus,
        files: FeatureFiles,
        wtoi: dict[str, int],
        max_len: int,
        n_steps: int,
        train: bool,
        seed: int = 0,
    ):
        self.videos, self.corpus, self.files = list(videos), corpus, files
        self.n_steps, self.train, self.seed = n_steps, train, seed
        self.items = (
            [(k, encode(c, wtoi, max_len)) for k, v in enumerate(self.videos) for c in corpus.captions[v]]
            if train
            else [(k, None) for k in range(len(self.videos))]
        )
        self._draws = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        k, tokens = self.items[i]
        vid = self.videos[k]
        rng = None
        if self.train:
            self._draws += 1
            info = torch.utils.data.get_worker_info()
            rng = np.random.default_rng(
                [self.seed, i, self._draws, info.id if info else 0, torch.initial_seed() % 2**32]
            )
        feats = [torch.from_numpy(sample_steps(a, self.n_steps, rng)) for a in self.files.read(vid)]
        out = {"feats": feats, "index": k}
        if self.corpus.categories is not None:
            out["category"] = self.corpus.categories[vid]
        if self.train:
            out["tokens"] = tokens
        else:
            out["refs"] = list(self.corpus.captions[vid])
        return out


def collate(samples: list[dict]) -> dict:
    # modalities as an ordered mapping (not a list: a list of tensors reads as per-sample items to generic tools)
    out = {
        "feats": {f"m{m}": torch.stack([s["feats"][m] for s in samples]) for m in range(len(samples[0]["feats"]))},
        "index": torch.tensor([s["index"] for s in samples], dtype=torch.long),
    }
    if "category" in samples[0]:
        out["category"] = torch.tensor([s["category"] for s in samples], dtype=torch.long)
    if "tokens" in samples[0]:
        n = max(len(s["tokens"]) for s in samples)
        out["tokens"] = torch.tensor([s["tokens"] + [PAD] * (n - len(s["tokens"])) for s in samples])
    if "refs" in samples[0]:
        out["refs"] = [s["refs"] for s in samples]
    return out


# ================================================================================================ long-tailed colours
# The long-tailed variant's attribute words (``colour_zipf``): the digit is drawn in one of these colours (RGB gains
# of its grey scan, so the colour is in the pixels and the features can carry it) and every caption names it. The
# order is the Zipf rank, most frequent first, roughly the order of colour words in MSVD / MSR-VTT captions.
COLOURS = {
    "white": (1.0, 1.0, 1.0),
    "red": (1.0, 0.1, 0.1),
    "blue": (0.2, 0.4, 1.0),
    "green": (0.1, 1.0, 0.1),
    "yellow": (1.0, 1.0, 0.1),
    "pink": (1.0, 0.5, 0.8),
    "purple": (0.6, 0.2, 1.0),
    "orange": (1.0, 0.55, 0.0),
}


def zipf_quota(n: int, k: int, exponent: float) -> np.ndarray:
    """Clip counts of ranks 1..k among ``n`` clips under Zipf's law: round(n r^-s / sum_j j^-s), every rank at
    least once, the rounding remainder given to rank 1 (so the counts sum to ``n``; needs n >= k)."""
    if n < k:
        raise UserError(f"{n} clips cannot hold all {k} colours once: use at least {k} training clips")
    p = np.arange(1, k + 1, dtype=np.float64) ** -float(exponent)
    quota = np.maximum(1, np.round(n * p / p.sum())).astype(np.int64)
    quota[0] += n - quota.sum()
    return quota


def colour_draws(n: int, exponent: float | None, rng: np.random.Generator) -> np.ndarray:
    """The colour index of each of ``n`` clips, shuffled: Zipf quotas (:func:`zipf_quota`) with ``exponent``, or
    balanced (every colour n / k times, the first n mod k once more) with ``exponent=None``."""
    k = len(COLOURS)
    quota = zipf_quota(n, k, exponent) if exponent is not None else n // k + (np.arange(k) < n % k)
    return rng.permutation(np.repeat(np.arange(k), quota))


def tint(clip: np.ndarray, colour: str) -> np.ndarray:
    """uint8 (..., 3) grey frames -> the same frames in ``colour`` (per-channel gains; white keeps them as they are)."""
    return (clip.astype(np.float32) * np.asarray(COLOURS[colour], dtype=np.float32)).round().astype(np.uint8)


def coloured_caption(caption: str, digit: int, colour: str) -> str:
    """``"a handwritten three drifts left"`` -> ``"a handwritten red three drifts left"`` (the colour before the
    digit's name)."""
    name = DIGIT_NAMES[digit]
    return re.sub(rf"\b{name}\b", f"{colour} {name}", caption, count=1)


def _check_colour_zipf(exponent: float | None, where: str) -> None:
    if exponent is not None and not exponent >= 0:
        raise UserError(f"{where}: digits_colour_zipf={exponent}: a Zipf exponent >= 0 (2 in the demo), or null")


def frequency_profile(captions: Sequence[str], rare_below: int = 5) -> dict[str, float]:
    """A caption corpus's word-frequency profile: ``vocabulary`` (distinct words), ``rare_share`` (the share of them
    seen fewer than ``rare_below`` times) and ``zipf_exponent`` (minus the least-squares slope of log count over log
    rank, all ranks): what the long-tailed digits' ``colour_zipf`` is chosen against."""
    counts = np.array(sorted(Counter(w for c in captions for w in words(c)).values(), reverse=True), dtype=np.float64)
    ranks = np.arange(1, counts.size + 1, dtype=np.float64)
    slope = float(np.polyfit(np.log(ranks), np.log(counts), 1)[0]) if counts.size > 1 else 0.0
    return {
        "vocabulary": float(counts.size),
        "rare_share": float((counts < rare_below).mean()),
        "zipf_exponent": -slope,
    }


# ================================================================================================ moving digits
def digits_corpus(
    sizes: Sequence[int], num_frames: int, size: int, seed: int = 0, colour_zipf: float | None = None
) -> tuple[list[dict], list[dict], list[tuple[str, np.ndarray]]]:
    """The synthetic caption set: ``sizes`` (train, val, test) moving-digit clips (training-pool scans for train,
    held-out scans for val / test), ids ``video0`` .. in that order -> (``videos`` and ``sentences`` of the
    ``videodatainfo.json`` layout, four template captions per clip; ``[(id, uint8 clip (T, H, W, 3))]``).

    ``colour_zipf`` (None: white digits, no attribute words, as before): the long-tailed variant. Each digit is drawn
    in one of the :data:`COLOURS` and every caption names it ("the digit red three moves to the left"); the training
    clips' colours follow Zipf's law with this exponent (:func:`zipf_quota`: with 320 clips and exponent 2 the ranks
    get 211, 52, 23, 13, 8, 6, 4, 3 clips, so the rarest colour words occur in a handful of training clips); the val
    and test clips are balanced over the colours, so every rare colour is tested. The colours are drawn from their
    own generator (seed, split), so the digits, directions and scans are the same clips as without colours.

    Why exponent 2 (:func:`frequency_profile` of the real corpora in ``shared/data``): MSVD's val captions (2,224
    words) and MSR-VTT's 1k-A test captions (2,008 words) fall off with rank at a fitted Zipf exponent of 1.25 and
    0.89, and 74 % / 88 % of their words occur fewer than 5 times. With 8 colour words among 35, exponent 1 would
    leave the rarest colour in 15 of 320 training clips; exponent 2 puts four colours in 3 to 8 clips and gives the
    whole training vocabulary a rank-frequency exponent of about 1, as the real corpora."""
    videos, sentences, clips, k = [], [], [], 0
    names = list(COLOURS)
    for split, n, s, pool in zip(("train", "validate", "test"), sizes, (0, 1, 2), ("train", "heldout", "heldout")):
        frames, _, labels = moving_digits(n, num_frames, size, seed * 10 + s, pool)
        colours = None
        if colour_zipf is not None:
            draws = colour_draws(n, colour_zipf if split == "train" else None, np.random.default_rng([seed, 7, s]))
            colours = [names[c] for c in draws]
        for i, (clip, (digit, direction, _)) in enumerate(zip(frames, labels)):
            vid = f"video{k}"
            video = {"video_id": vid, "category": 0, "split": split, "digit": int(digit)}
            video["direction"] = DIRECTIONS[direction]
            caps = [digit_caption(int(digit), DIRECTIONS[direction], t) for t in range(4)]
            if colours is not None:
                video["colour"] = colours[i]
                clip = tint(clip, colours[i])
                caps = [coloured_caption(c, int(digit), colours[i]) for c in caps]
            videos.append(video)
            sentences += [{"video_id": vid, "caption": c} for c in caps]
            clips.append((vid, clip))
            k += 1
    return videos, sentences, clips


def write_videodatainfo(path: str | Path, videos: list[dict], sentences: list[dict]) -> None:
    """The corpus as ``videodatainfo.json`` (written under a temporary name, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    info = {"description": "synthetic moving digits (zoo.data_modules.video)"}
    tmp.write_text(json.dumps({"info": info, "videos": videos, "sentences": sentences}))
    tmp.replace(path)


class _Indexed(Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = torch.from_numpy(images), torch.from_numpy(labels)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], self.labels[i]


class _DrawsWithReplacement(torch.utils.data.Sampler):
    """``steps`` batches of ``batch`` indices drawn with replacement from one seeded generator per epoch."""

    def __init__(self, n: int, batch: int, steps: int, seed: int):
        self.n, self.batch, self.steps, self.seed, self.epoch = n, batch, steps, seed, 0

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        for _ in range(self.steps):
            yield torch.randint(self.n, (self.batch,), generator=g).tolist()


class DigitFramesDataModule(LightningDataModule):
    """Single frames of training-pool digit scans, labelled by digit: the data of the RSFD demo's 2D CNN pre-training
    (``configs/demo/rsfd-cnn.yaml``, the offline stand-in for ImageNet classification; the held-out scans of the
    caption set's val / test clips are never seen). ``num_images`` frames of ``size`` px (``moving_digits`` seed
    ``seed * 10 + 9``); every epoch is ``steps_per_epoch`` batches of ``batch_size`` frames drawn with replacement
    (generator seed ``seed`` + epoch). Batches: (uint8 (B, H, W, 3), digit (B,))."""

    def __init__(
        self,
        num_images: int = 1500,
        size: int = 32,
        batch_size: int = 64,
        steps_per_epoch: int = 150,
        seed: int = 0,
        num_workers: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        for name, v in (("num_images", num_images), ("batch_size", batch_size), ("steps_per_epoch", steps_per_epoch)):
            check_positive(name, v, where="DigitFramesDataModule")
        self.data: _Indexed | None = None

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if self.data is None:
            frames, _, labels = moving_digits(hp.num_images, 1, hp.size, hp.seed * 10 + 9, "train")
            self.data = _Indexed(frames[:, 0], labels[:, 0])

    def train_dataloader(self):
        hp = self.hparams
        sampler = _DrawsWithReplacement(len(self.data), hp.batch_size, hp.steps_per_epoch, hp.seed)
        return DataLoader(self.data, batch_sampler=sampler, num_workers=hp.num_workers)


# ================================================================================================ data module
class CaptionFeaturesDataModule(LightningDataModule):
    """Features + captions for RSFD (see the module docstring).

    ``features``: the modality files, relative to ``root`` or absolute. ``max_len`` (captions cut to this many tokens,
    ``<bos>`` and ``<eos>`` included) None: the attached model's (its position table, ``data_config()``); set, it must
    equal the model's. ``msvd_files``: the (train, val, test) TSV names. Synthetic data (``root=None``):
    ``digits_sizes`` clips per split, ``digits_frames`` frames of ``digits_size`` px, ``digits_colour_zipf`` the
    long-tailed colour words (:func:`digits_corpus`; None: none); the extractor: ``image_model``
    (timm) on frames resized to ``image_size`` pooled to ``grid`` x ``grid``, ``motion_model`` (torchvision) on
    ``clip_len``-frame windows overlapping by ``overlap``, both with frozen random weights."""

    def __init__(
        self,
        layout: str = "msrvtt",
        root: str | None = None,
        features: Sequence[str] = (
            "image_resnet101_imagenet_fps_max60.hdf5",
            "motion_resnext101_kinetics_duration16_overlap8.hdf5",
        ),
        captions_file: str = "videodatainfo.json",
        msvd_files: Sequence[str] = ("MSVD_train.tsv", "MSVD_val.tsv", "MSVD_test.tsv"),
        count_threshold: int = 1,
        max_len: int | None = None,
        n_steps: int = 8,
        frequencies: str = "train",
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        cache_dir: str | None = None,
        digits_sizes: Sequence[int] = (320, 40, 80),
        digits_frames: int = 8,
        digits_size: int = 32,
        digits_colour_zipf: float | None = None,
        image_model: str = "test_resnet",
        image_size: int = 32,
        grid: int = 1,
        motion_model: str = "r3d_18",
        motion_size: int = 16,
        clip_len: int = 4,
        overlap: int = 2,
    ):
        super().__init__()
        self.save_hyperparameters()
        check_choice("layout", layout, ("msrvtt", "msvd"), "CaptionFeaturesDataModule")
        check_choice("frequencies", frequencies, ("train", "all"), "CaptionFeaturesDataModule")
        for name, v in (("batch_size", batch_size), ("n_steps", n_steps)):
            check_positive(name, v, where="CaptionFeaturesDataModule")
        if max_len is not None and max_len < 3:
            raise UserError(f"max_len={max_len}: a caption needs <bos>, a word and <eos>")
        if count_threshold < 0:
            raise UserError(f"count_threshold={count_threshold}: words with count <= threshold are dropped; use >= 0")
        if len(digits_sizes) != 3 or min(digits_sizes) < 1:
            raise UserError(f"digits_sizes={list(digits_sizes)}: (train, val, test) clip counts, each >= 1")
        _check_colour_zipf(digits_colour_zipf, "CaptionFeaturesDataModule")
        self.corpus: Corpus | None = None
        self.itow: list[str] | None = None
        self.token_counts: torch.Tensor | None = None
        self.feature_dims: list[int] | None = None
        self.sets: dict[str, CaptionDataset] = {}
        self.max_len: int | None = None  # resolved in setup: the argument, else the attached model's
        self._tmp = None

    # ------------------------------------------------------------------------------------------ files
    def _cache(self) -> Path:
        if self.hparams.cache_dir:
            return Path(self.hparams.cache_dir).expanduser()
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="zoo-rsfd-digits-")
        return Path(self._tmp.name)

    def _paths(self) -> tuple[list[str], Path]:
        hp = self.hparams
        if hp.root is None:
            c = self._cache()
            return [str(c / "image_digits.hdf5"), str(c / "motion_digits.hdf5")], c / "videodatainfo.json"
        root = Path(hp.root).expanduser()
        if not root.is_dir():
            raise DataNotFoundError(
                f"{hp.layout}: data root {root} does not exist (see zoo.data_modules.captioning "
                "for the layout; root: null gives the synthetic moving digits)"
            )
        feats = [str(p if Path(p).is_absolute() else root / p) for p in hp.features]
        return feats, root / hp.captions_file

    def prepare_data(self) -> None:
        if self.hparams.root is None:
            self._make_digits()

    def _make_digits(self) -> None:
        """Moving-digit clips -> features of frozen random-weight CNNs (HDF5, published layout) + videodatainfo.json
        under the cache folder; nothing is trained (the demo's pre-trained CNN: configs/demo/rsfd-cnn.yaml)."""
        from zoo.video_features import VideoFeatureExtractor, extract_to_hdf5

        hp = self.hparams
        feats, info = self._paths()
        if info.is_file() and all(Path(p).is_file() for p in feats):
            return
        videos, sentences, todo = digits_corpus(
            hp.digits_sizes, hp.digits_frames, hp.digits_size, hp.seed, hp.digits_colour_zipf
        )
        log.info(
            "CaptionFeaturesDataModule: root=None -> synthetic moving digits %s, frozen random-CNN features into %s",
            tuple(hp.digits_sizes),
            info.parent,
        )
        with torch.random.fork_rng():
            torch.manual_seed(hp.seed)  # the frozen random CNNs
            extractor = VideoFeatureExtractor(
                hp.image_model, hp.motion_model, False, hp.image_size, hp.motion_size, hp.clip_len, hp.overlap, hp.grid
            )
        extract_to_hdf5(extractor, todo, feats[0], feats[1])
        write_videodatainfo(info, videos, sentences)

    def read_corpus(self) -> Corpus:
        hp = self.hparams
        if hp.root is None or hp.layout == "msrvtt":
            return read_videodatainfo(self._paths()[1])
        return read_msvd_lists(Path(hp.root).expanduser(), dict(zip(SPLITS, hp.msvd_files)))

    # ------------------------------------------------------------------------------------------ setup
    @property
    def vocab_size(self) -> int | None:
        return None if self.itow is None else len(self.itow)

    @property
    def num_categories(self) -> int:
        cats = self.corpus.categories if self.corpus is not None else None
        return 0 if not cats or self.hparams.root is None else max(cats.values()) + 1

    @property
    def frequency_source(self) -> str:
        return "train-split" if self.hparams.frequencies == "train" else "all-split"

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        self.max_len = follow_model(self, "max_len", hp.max_len, model_data_config(self).get("max_len"))
        if self.corpus is not None:
            return
        if hp.root is None:
            self._make_digits()  # a no-op when prepare_data made them
        corpus = self.read_corpus()
        if not corpus.split_videos.get("train"):
            raise UserError("the caption corpus has no training videos: check the layout and the split files")
        train_caps = [c for v in corpus.split_videos["train"] for c in corpus.captions[v]]
        self.itow = build_vocab(train_caps, hp.count_threshold)
        wtoi = {w: i for i, w in enumerate(self.itow)}
        freq_caps = (
            train_caps if hp.frequencies == "train" else [c for v in corpus.captions for c in corpus.captions[v]]
        )
        self.token_counts = frequency_table(freq_caps, wtoi, len(self.itow))
        feats, _ = self._paths()
        files = FeatureFiles(feats)
        all_videos = [v for s in SPLITS for v in corpus.split_videos.get(s, [])]
        self.feature_dims = files.check(all_videos)
        self.corpus = corpus
        for s in SPLITS:
            vids = corpus.split_videos.get(s, [])
            if vids:
                self.sets[s] = CaptionDataset(
                    vids, corpus, files, wtoi, self.max_len, hp.n_steps, s == "train", hp.seed
                )
        log.info(
            "CaptionFeaturesDataModule: %s videos (train/val/test), vocabulary %d, features %s",
            [len(corpus.split_videos.get(s, [])) for s in SPLITS],
            len(self.itow),
            self.feature_dims,
        )

    def _loader(self, split: str, train: bool) -> DataLoader:
        hp = self.hparams
        if split not in self.sets:
            raise UserError(f"the corpus has no {split} videos")
        ds = self.sets[split]
        bs = hp.batch_size if train else (hp.eval_batch_size or hp.batch_size)
        return DataLoader(
            ds, batch_size=bs, shuffle=train, drop_last=False, num_workers=hp.num_workers, collate_fn=collate
        )

    def train_dataloader(self):
        return self._loader("train", True)

    def val_dataloader(self):
        return self._loader("val", False)

    def test_dataloader(self):
        return self._loader("test", False)

    # ------------------------------------------------------------------------------------------ baseline
    def nearest_caption(self, split: str = "test") -> dict[int, str]:
        """The nearest-caption baseline: each ``split`` video gets the first caption of the training video whose
        mean feature (per-modality time means, concatenated, standardised over the training videos) is closest."""

        def means(videos):
            return np.stack([np.concatenate([a.mean(0) for a in self.sets["train"].files.read(v)]) for v in videos])

        train = self.corpus.split_videos["train"]
        a, b = means(train), means(self.corpus.split_videos[split])
        mu, sd = a.mean(0), a.std(0) + 1e-6
        a, b = (a - mu) / sd, (b - mu) / sd
        d = (b**2).sum(1)[:, None] - 2 * b @ a.T + (a**2).sum(1)[None]
        return {k: self.corpus.captions[train[j]][0] for k, j in enumerate(d.argmin(1))}

    def baseline_scores(self, split: str = "test", tokenize: bool = True, meteor: bool = True) -> dict[str, float]:
        """Caption metrics of the nearest-caption baseline on ``split`` (all references of each video)."""
        from zoo.metrics.captioning import caption_scores

        caps = self.nearest_caption(split)
        refs = {k: list(self.corpus.captions[v]) for k, v in enumerate(self.corpus.split_videos[split])}
        return caption_scores(refs, {k: [c] for k, c in caps.items()}, tokenize=tokenize, meteor=meteor)

    def teardown(self, stage: str | None = None) -> None:
        for ds in self.sets.values():
            if ds.files._files is not None:
                for f in ds.files._files:
                    f.close()
                ds.files._files = None


# ================================================================================================ zoo predict input
class VideoFramesDataModule(LightningDataModule):
    """Videos to extract features from (``zoo predict``): every ``pattern`` file under ``video_dir`` decoded with PyAV
    (``zoo.data_modules.video.decode_frames``), ``max_frames`` frames evenly spread (the release: at most 60), or
    ``root=None``-style synthetic moving digits (``video_dir: null``): ``digits`` clips, or with ``digits_sizes``
    (train, val, test) the caption set of :func:`digits_corpus` (the clips ``CaptionFeaturesDataModule(root=None)``
    makes; ``digits_colour_zipf``: its long-tailed colour variant), whose corpus is written to ``corpus`` (a
    ``videodatainfo.json`` path) when given. Videos whose key is already in ``skip_done`` (the appearance HDF5 file
    being written) are skipped, so a rerun resumes. Batches: ``ids``, ``frames`` (lists; one video per item; a file
    that cannot be decoded gives its ``DecodeError`` instead of frames)."""

    def __init__(
        self,
        video_dir: str | None = None,
        pattern: str = "*.mp4",
        max_frames: int = 60,
        skip_done: str | None = None,
        digits: int = 16,
        digits_frames: int = 8,
        digits_size: int = 32,
        digits_sizes: Sequence[int] | None = None,
        digits_colour_zipf: float | None = None,
        corpus: str | None = None,
        seed: int = 0,
        batch_size: int = 1,
        num_workers: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        if digits_sizes is not None and (len(digits_sizes) != 3 or min(digits_sizes) < 1):
            raise UserError(f"digits_sizes={list(digits_sizes)}: (train, val, test) clip counts, each >= 1")
        if corpus is not None and (video_dir is not None or digits_sizes is None):
            raise UserError("corpus: the synthetic caption set's videodatainfo.json; set it with digits_sizes only")
        _check_colour_zipf(digits_colour_zipf, "VideoFramesDataModule")
        if digits_colour_zipf is not None and (video_dir is not None or digits_sizes is None):
            raise UserError("digits_colour_zipf: a variant of the synthetic caption set; set it with digits_sizes only")
        self.items: list[tuple[str, object]] = []

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if hp.video_dir is None and hp.digits_sizes is not None:
            videos, sentences, items = digits_corpus(
                hp.digits_sizes, hp.digits_frames, hp.digits_size, hp.seed, hp.digits_colour_zipf
            )
            if hp.corpus:
                write_videodatainfo(hp.corpus, videos, sentences)
                log.info("VideoFramesDataModule: %d captioned clips %s -> %s", len(videos), hp.digits_sizes, hp.corpus)
        elif hp.video_dir is None:
            clips, _, _ = moving_digits(hp.digits, hp.digits_frames, hp.digits_size, hp.seed)
            items = [(f"video{k}", c) for k, c in enumerate(clips)]
        else:
            root = Path(hp.video_dir).expanduser()
            files = sorted(root.glob(hp.pattern)) if root.is_dir() else []
            if not files:
                raise DataNotFoundError(f"no {hp.pattern} videos under {root}")
            items = [(p.stem, p) for p in files]
        done = done_keys(hp.skip_done) if hp.skip_done else set()
        self.items = [(v, x) for v, x in items if feature_key(v) not in done]
        log.info(
            "VideoFramesDataModule: %d videos to extract, %d already done",
            len(self.items),
            len(items) - len(self.items),
        )

    def predict_dataloader(self):
        return DataLoader(
            _Frames(self.items, self.hparams.max_frames),
            batch_size=self.hparams.batch_size,
            num_workers=self.hparams.num_workers,
            collate_fn=lambda s: {"ids": [x[0] for x in s], "frames": [x[1] for x in s]},
        )


class _Frames(Dataset):
    def __init__(self, items, max_frames: int):
        self.items, self.max_frames = items, max_frames

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        from zoo.data_modules.video import DecodeError, decode_frames

        vid, x = self.items[i]
        if isinstance(x, np.ndarray):
            return vid, torch.from_numpy(x)
        m = self.max_frames
        try:
            frames = decode_frames(x, lambda n: np.linspace(0, n - 1, min(n, m)).round().astype(np.int64))
        except DecodeError as e:  # passed on: FeatureExtractionModule skips the video with a counted warning
            return vid, e
        return vid, torch.from_numpy(frames)
