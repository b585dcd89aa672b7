"""Caption corpora + HDF5 features for RSFD: the readers on the shared MSVD / MSR-VTT captions, the vocabulary and
FAD frequency table, batches, and the clear errors (corrupt HDF5 entry, a caption file naming an unknown video)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from zoo.data_modules.captioning import (
    BOS,
    EOS,
    PAD,
    UNK,
    CaptionFeaturesDataModule,
    build_vocab,
    encode,
    frequency_table,
    read_msvd_lists,
    words,
)
from zoo.errors import DataNotFoundError, UserError

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
MSVD = DATA / "msvd_captions"
MSRVTT = DATA / "msrvtt_captions" / "MSRVTT_JSFUSION_test.csv"


def test_msvd_caption_list_reader_on_the_shared_val_split():
    corpus = read_msvd_lists(MSVD, {"val": "MSVD_val.tsv"})
    vids = corpus.split_videos["val"]
    assert len(vids) == 100 and corpus.num_captions("val") == 4290  # SOURCE.md: 100 clips, 4,290 captions
    assert vids[0] == "bQJQGoJF7_k_162_169" and vids[-1] == "eyMYc-37Sk4_0_10"
    assert corpus.categories is None
    caps = [c for v in vids for c in corpus.captions[v]]
    assert len({w for c in caps for w in words(c)}) == 2224  # SOURCE.md: 2,224 distinct tokens
    assert all(not c.endswith("\r") for c in caps)


def test_vocabulary_and_frequency_table_on_real_captions():
    from zoo.data_modules.video import read_msrvtt_test

    caps = [c for _, c, _ in read_msrvtt_test(MSRVTT, Path("videos"))]
    assert len(caps) == 1000
    itow = build_vocab(caps, count_threshold=1)
    assert itow[:6] == ["<pad>", "<unk>", "<bos>", "<eos>", "<mask>", "<vis>"]
    counts = {w: sum(words(c).count(w) for c in caps) for w in itow[6:9]}
    assert itow[6] == "a" and list(counts.values()) == sorted(counts.values(), reverse=True)
    assert all(sum(words(c).count(w) for c in caps) > 1 for w in itow[-5:])  # singletons dropped
    wtoi = {w: i for i, w in enumerate(itow)}
    table = frequency_table(caps, wtoi, len(itow))
    assert table[BOS] == table[EOS] == 1000  # once per caption, as the release's table
    assert table[wtoi["a"]] == sum(words(c).count("a") for c in caps)
    n_tokens = sum(len(words(c)) for c in caps)
    assert table[6:].sum() + table[UNK] == n_tokens  # every word counted once, OOV as <unk>
    assert encode("a zzzunseen man", wtoi, 4) == [BOS, wtoi["a"], UNK, EOS]  # cut to max_len, <eos> kept


# ------------------------------------------------------------------------------------------------ a tiny corpus
def _write_msrvtt(root: Path, n=(6, 2, 2), dims=(5, 3), extra_sentence=None, corrupt=None):
    rng = np.random.default_rng(0)
    videos, sentences = [], []
    k = 0
    for split, m in zip(("train", "validate", "test"), n):
        for _ in range(m):
            vid = f"video{k}"
            videos.append({"video_id": vid, "category": k % 3, "split": split})
            sentences += [
                {"video_id": vid, "caption": f"a man number {k % 4} is running"},
                {"video_id": vid, "caption": "someone runs"},
            ]
            k += 1
    if extra_sentence:
        sentences.append({"video_id": extra_sentence, "caption": "a ghost"})
    (root / "videodatainfo.json").write_text(json.dumps({"videos": videos, "sentences": sentences}))
    for name, d, steps in (("image.hdf5", dims[0], 11), ("motion.hdf5", dims[1], 4)):
        with h5py.File(root / name, "w") as f:
            for v in videos:
                f[v["video_id"]] = rng.standard_normal((steps, d)).astype(np.float32)
            if corrupt and name == "motion.hdf5":
                del f[corrupt]
                f[corrupt] = np.zeros(7, dtype=np.float32)
    return videos


def _dm(root, **kw):
    return CaptionFeaturesDataModule(
        layout="msrvtt",
        root=str(root),
        features=["image.hdf5", "motion.hdf5"],
        count_threshold=0,
        max_len=6,
        n_steps=4,
        batch_size=4,
        **kw,
    )


def test_msrvtt_layout_batches_vocabulary_and_frequencies(tmp_path):
    _write_msrvtt(tmp_path)
    dm = _dm(tmp_path)
    dm.setup("fit")
    assert dm.feature_dims == [5, 3] and dm.num_categories == 3
    assert [len(dm.corpus.split_videos[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    assert len(dm.sets["train"]) == 12 and len(dm.sets["val"]) == 2  # one sample per caption / per video
    torch.manual_seed(0)  # the shuffle draws from the global generator: the first batch must not depend on test order
    b = next(iter(dm.train_dataloader()))
    assert {k: f.shape for k, f in b["feats"].items()} == {"m0": (4, 4, 5), "m1": (4, 4, 3)}
    assert b["tokens"][:, 0].eq(BOS).all() and b["tokens"].shape[1] <= 6 and b["category"].shape == (4,)
    assert ((b["tokens"] == EOS).sum(1) == 1).all() and (b["tokens"] == PAD).any()  # padded to the longest
    v = next(iter(dm.val_dataloader()))
    assert v["refs"][0] == ["a man number 2 is running", "someone runs"] and "tokens" not in v
    # evaluation reads segment centres: deterministic
    v2 = next(iter(dm.val_dataloader()))
    assert torch.equal(v["feats"]["m0"], v2["feats"]["m0"])
    assert dm.token_counts[BOS] == 12  # train-only by default
    all_dm = _dm(tmp_path, frequencies="all")
    all_dm.setup("fit")
    assert all_dm.token_counts[BOS] == 20 and all_dm.itow == dm.itow  # vocabulary stays train-only


def test_corrupt_hdf5_entry_and_unknown_videos_are_clear_errors(tmp_path):
    (tmp_path / "a").mkdir()
    _write_msrvtt(tmp_path / "a", corrupt="video3")
    with pytest.raises(UserError, match=r"motion.hdf5: entry 'video3' has shape \(7,\).*corrupt"):
        _dm(tmp_path / "a").setup("fit")
    (tmp_path / "b").mkdir()
    _write_msrvtt(tmp_path / "b", extra_sentence="video999")
    with pytest.raises(UserError, match="video999"):
        _dm(tmp_path / "b").setup("fit")
    (tmp_path / "c").mkdir()
    videos = _write_msrvtt(tmp_path / "c")
    with h5py.File(tmp_path / "c" / "image.hdf5", "a") as f:
        del f[videos[-1]["video_id"]]
    with pytest.raises(UserError, match="has no entry 'video9'.*names a video that the features lack"):
        _dm(tmp_path / "c").setup("fit")
    with pytest.raises(DataNotFoundError, match="does not exist"):
        _dm(tmp_path / "missing").setup("fit")


def test_msvd_layout_reads_shared_caption_lists_with_features(tmp_path):
    lines = (MSVD / "MSVD_val.tsv").read_bytes().split(b"\r\n")[:6]
    for name, part in (("MSVD_train.tsv", lines[:4]), ("MSVD_val.tsv", lines[4:5]), ("MSVD_test.tsv", lines[5:6])):
        (tmp_path / name).write_bytes(b"\r\n".join(part) + b"\r\n")
    corpus = read_msvd_lists(tmp_path, {"train": "MSVD_train.tsv", "val": "MSVD_val.tsv", "test": "MSVD_test.tsv"})
    with h5py.File(tmp_path / "image.hdf5", "w") as fi, h5py.File(tmp_path / "motion.hdf5", "w") as fm:
        for vids in corpus.split_videos.values():
            for v in vids:
                fi[f"video{v}"] = np.ones((9, 4), np.float32)
                fm[f"video{v}"] = np.ones((2, 2), np.float32)
    dm = CaptionFeaturesDataModule(
        layout="msvd", root=str(tmp_path), features=["image.hdf5", "motion.hdf5"], max_len=20, batch_size=8
    )
    dm.setup("fit")
    assert dm.num_categories == 0 and "category" not in next(iter(dm.train_dataloader()))
    assert len(dm.sets["train"]) == corpus.num_captions("train") and len(dm.sets["test"]) == 1


def test_feature_files_are_shared_and_the_caption_data_module_imports_no_method(tmp_path):
    """The HDF5 feature machinery lives in zoo.video_features, which the caption data module and
    zoo.models.rsfd.features both import: neither imports the other."""
    import subprocess
    import sys

    code = (
        "import sys, zoo.data_modules.captioning as c; "
        "print(sorted(m for m in sys.modules if m.startswith('zoo.models')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
    from zoo import video_features
    from zoo.models.rsfd import features

    assert features.VideoFeatureExtractor is video_features.VideoFeatureExtractor
    path = tmp_path / "f.hdf5"
    video_features.write_video(path, video_features.feature_key("7"), np.ones((3, 2)))
    assert video_features.done_keys(path) == {"video7"}
    assert video_features.FeatureFiles([str(path)]).check(["7"]) == [2]


def test_synthetic_digits_feature_step_writes_the_corpus_of_the_caption_module(tmp_path):
    """VideoFramesDataModule(digits_sizes) (the demo's zoo predict step) yields the clips of
    CaptionFeaturesDataModule(root=None) and writes their corpus, which the caption module reads with root; root=None
    itself trains nothing (no pre-training argument) and makes the same corpus."""
    import inspect

    from zoo.data_modules.captioning import VideoFramesDataModule, digits_corpus, read_videodatainfo

    assert "image_pretrain_steps" not in inspect.signature(CaptionFeaturesDataModule).parameters
    corpus = tmp_path / "features" / "videodatainfo.json"
    dm = VideoFramesDataModule(digits_sizes=[3, 2, 2], corpus=str(corpus))
    dm.setup("predict")
    videos, sentences, clips = digits_corpus([3, 2, 2], 8, 32, 0)
    assert [v for v, _ in dm.items] == [v for v, _ in clips] == [f"video{k}" for k in range(7)]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(dm.items, clips))
    c = read_videodatainfo(corpus)
    assert [len(c.split_videos[s]) for s in ("train", "val", "test")] == [3, 2, 2]
    assert c.captions["video0"] == [s["caption"] for s in sentences[:4]]
    synth = CaptionFeaturesDataModule(root=None, digits_sizes=[3, 2, 2], cache_dir=str(tmp_path / "cache"), max_len=12)
    synth.prepare_data()
    assert read_videodatainfo(tmp_path / "cache" / "videodatainfo.json").captions == c.captions
    with pytest.raises(UserError, match="digits_sizes"):
        VideoFramesDataModule(corpus=str(corpus))


# ------------------------------------------------------------------------------------------------ long-tailed colours
def test_zipf_quota_follows_the_exponent_sums_to_n_and_keeps_every_colour():
    from zoo.data_modules.captioning import zipf_quota

    q = zipf_quota(320, 8, 2.0)
    assert q.tolist() == [211, 52, 23, 13, 8, 6, 4, 3]  # round(320 r^-2 / sum), remainder to rank 1
    assert zipf_quota(320, 8, 1.0).tolist()[-1] == 15 and zipf_quota(80, 8, 0.0).tolist() == [10] * 8
    for n, s in ((8, 3.0), (50, 2.0), (1000, 1.2)):
        q = zipf_quota(n, 8, s)
        assert q.sum() == n and q.min() >= 1 and (np.diff(q) <= 0).all()
    with pytest.raises(UserError, match="at least 8"):
        zipf_quota(5, 8, 2.0)


def test_long_tailed_digits_zipf_train_balanced_test_deterministic_and_colour_in_the_pixels():
    from collections import Counter

    from zoo.data_modules.captioning import COLOURS, digits_corpus, zipf_quota

    sizes = [40, 8, 16]
    videos, sentences, clips = digits_corpus(sizes, 4, 32, 0, colour_zipf=2.0)
    again = digits_corpus(sizes, 4, 32, 0, colour_zipf=2.0)
    assert again[0] == videos and again[1] == sentences
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(again[2], clips))
    names = list(COLOURS)
    train = Counter(v["colour"] for v in videos if v["split"] == "train")
    assert [train[c] for c in names] == zipf_quota(40, 8, 2.0).tolist()
    assert set(Counter(v["colour"] for v in videos if v["split"] == "test").values()) == {2}  # balanced
    assert Counter(v["colour"] for v in videos if v["split"] == "validate") == Counter(names)
    # the same digits, motions and scans as the colourless set: a white clip is the grey clip, any other is tinted
    plain_videos, plain_sentences, plain = digits_corpus(sizes, 4, 32, 0)
    assert "colour" not in plain_videos[0] and [v["digit"] for v in plain_videos] == [v["digit"] for v in videos]
    for v, (_, clip), (_, grey) in zip(videos, clips, plain):
        rgb = np.asarray(COLOURS[v["colour"]], dtype=np.float32)
        on = grey[..., 0] > 100  # the digit's bright strokes
        assert (clip[~on] == (grey[~on] * rgb).round()).all()
        ratio = clip[on].astype(np.float64).mean(0) / grey[on][:, 0].mean()
        np.testing.assert_allclose(ratio, rgb, atol=0.01)  # the colour is in the pixels
        nearest = min(names, key=lambda c: np.abs(np.asarray(COLOURS[c]) - ratio).sum())
        assert nearest == v["colour"]
        caps = [s["caption"] for s in sentences if s["video_id"] == v["video_id"]]
        assert len(caps) == 4 and all(v["colour"] in words(c) for c in caps)
    assert sentences[0]["caption"].replace(f"{videos[0]['colour']} ", "", 1) == plain_sentences[0]["caption"]
    with pytest.raises(UserError, match="digits_colour_zipf"):
        CaptionFeaturesDataModule(root=None, digits_colour_zipf=-1.0)
    from zoo.data_modules.captioning import VideoFramesDataModule

    with pytest.raises(UserError, match="digits_colour_zipf"):
        VideoFramesDataModule(digits_colour_zipf=2.0)  # the variant of the caption set only


def test_long_tailed_feature_step_and_synthetic_caption_module_make_the_same_corpus(tmp_path):
    from zoo.data_modules.captioning import VideoFramesDataModule, digits_corpus, read_videodatainfo

    corpus = tmp_path / "features" / "videodatainfo.json"
    dm = VideoFramesDataModule(digits_sizes=[8, 8, 8], corpus=str(corpus), digits_colour_zipf=1.0)
    dm.setup("predict")
    _, _, clips = digits_corpus([8, 8, 8], 8, 32, 0, colour_zipf=1.0)
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(dm.items, clips))
    synth = CaptionFeaturesDataModule(
        root=None, digits_sizes=[8, 8, 8], digits_colour_zipf=1.0, cache_dir=str(tmp_path / "c"), max_len=12
    )
    synth.prepare_data()
    assert read_videodatainfo(tmp_path / "c" / "videodatainfo.json").captions == read_videodatainfo(corpus).captions


def test_frequency_profile_of_the_real_corpora_stated_by_the_long_tailed_digits():
    """The figures digits_corpus's docstring and RSFD's CLAIM state to justify Zipf exponent 2."""
    from zoo.data_modules.captioning import digits_corpus, frequency_profile
    from zoo.data_modules.video import read_msrvtt_test

    corpus = read_msvd_lists(MSVD, {"val": "MSVD_val.tsv"})
    msvd = frequency_profile([c for v in corpus.split_videos["val"] for c in corpus.captions[v]])
    msrvtt = frequency_profile([c for _, c, _ in read_msrvtt_test(MSRVTT, Path("videos"))])
    assert (
        msvd["vocabulary"] == 2224 and round(msvd["rare_share"], 2) == 0.74 and round(msvd["zipf_exponent"], 2) == 1.25
    )
    assert msrvtt["vocabulary"] == 2008 and round(msrvtt["rare_share"], 2) == 0.88
    assert round(msrvtt["zipf_exponent"], 2) == 0.89
    videos, sentences, _ = digits_corpus([320, 1, 1], 2, 16, 0, colour_zipf=2.0)
    train = {v["video_id"] for v in videos if v["split"] == "train"}
    mini = frequency_profile([s["caption"] for s in sentences if s["video_id"] in train], rare_below=40)
    assert mini["vocabulary"] == 35 and 0.9 < mini["zipf_exponent"] < 1.1
    assert mini["rare_share"] == pytest.approx(4 / 35)  # yellow, pink, purple, orange
    assert frequency_profile(["a a b"], rare_below=2) == {"vocabulary": 2.0, "rare_share": 0.5, "zipf_exponent": 1.0}
