"""ImageTextDataModule: CSV/TSV, webdataset shards, captioned folders and the captioned digits; A-CLIP's three views
and their boxes; bad rows (missing file, empty caption, undecodable image) are counted skips, not crashes."""

from __future__ import annotations

import io
import random
import tarfile

import pytest
import torch
from PIL import Image

from zoo.data_modules.image_text import (
    DIGIT_NAMES,
    ImageTextDataModule,
    ThreeViews,
    collate_skipping,
    three_boxes,
)
from zoo.errors import DataNotFoundError, UserError

EOT = 49407


def _img(mode="RGB", size=(40, 30), color=None):
    return Image.new(mode, size, color if color is not None else (10 if mode in ("L", "P") else (200, 30, 30)))


def _write_pairs(tmp_path, sep=","):
    (tmp_path / "imgs").mkdir()
    _img().save(tmp_path / "imgs" / "a.jpg")
    _img("L").save(tmp_path / "imgs" / "gray.png")  # wrong mode -> converted
    _img("RGBA", color=(0, 0, 255, 128)).save(tmp_path / "imgs" / "rgba.png")
    _img("P").save(tmp_path / "imgs" / "pal.png")
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"not a jpeg at all")  # undecodable -> skipped when read
    long_caption = " ".join(["a very long caption"] * 40)  # longer than the context -> truncated
    rows = [
        ("imgs/a.jpg", "a red rectangle"),
        ("imgs/gray.png", long_caption),
        ("imgs/rgba.png", "blue"),
        ("imgs/pal.png", "a palette image"),
        ("imgs/missing.jpg", "no file"),
        ("imgs/a.jpg", "  "),
        ("imgs/broken.jpg", "broken"),
    ]
    path = tmp_path / ("pairs.csv" if sep == "," else "pairs.tsv")
    path.write_text("filepath" + sep + "title\n" + "".join(f"{a}{sep}{b}\n" for a, b in rows))
    return path


def test_csv_pairs_skip_bad_rows_convert_modes_and_truncate_long_captions(tmp_path, caplog):
    path = _write_pairs(tmp_path)
    dm = ImageTextDataModule(root=str(path), image_size=32, context_length=16, batch_size=5)
    with caplog.at_level("WARNING"):
        dm.setup("fit")
    assert dm.skips.counts == {"a missing image file": 1, "an empty caption": 1}
    assert "missing.jpg" in caplog.text and "empty caption" in caplog.text
    assert len(dm.train_set) == 5
    batch = next(iter(dm.train_dataloader()))  # the undecodable image is dropped from its batch, not a crash
    assert batch["view1"].shape == (4, 3, 32, 32) and batch["view3"].shape == (4, 3, 32, 32)
    assert batch["boxes"].shape == (4, 3, 4) and batch["text"].shape == (4, 16)
    assert dm.skips.counts["an undecodable image"] == 1
    texts = batch["text"]
    assert (texts.argmax(dim=1) <= 15).all() and (texts == EOT).sum(1).eq(1).all()
    assert (texts[:, -1] == EOT).any()  # the long caption: truncated, EOT kept as its last token


def test_tsv_and_column_errors(tmp_path):
    path = _write_pairs(tmp_path, sep="\t")
    dm = ImageTextDataModule(root=str(path), image_size=32, context_length=16)
    dm.setup("fit")
    assert len(dm.train_set) == 5
    with pytest.raises(UserError, match="caption_key"):
        ImageTextDataModule(root=str(path), caption_key="caption", image_size=32, context_length=16).setup("fit")
    with pytest.raises(DataNotFoundError, match="webdataset"):
        ImageTextDataModule(root=str(tmp_path / "nowhere.parquet"), image_size=32, context_length=16).setup("fit")


def test_captioned_folder_reads_same_stem_captions(tmp_path):
    for i in range(3):
        _img().save(tmp_path / f"{i}.jpg")
        (tmp_path / f"{i}.txt").write_text(f"picture number {i}\n")
    _img().save(tmp_path / "nocap.jpg")
    dm = ImageTextDataModule(root=str(tmp_path), val_root=str(tmp_path), image_size=32, context_length=16, batch_size=2)
    dm.setup("fit")
    assert len(dm.train_set) == 3 and dm.skips.counts == {"no or an empty caption file": 1}
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (2, 3, 32, 32) and val["label"].tolist() == [-1, -1]
    assert val["index"].tolist() == [0, 1]


def test_webdataset_shards_stream_pairs_and_skip_bad_samples(tmp_path):
    def add(tar, name, data: bytes):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    for shard in range(2):
        with tarfile.open(tmp_path / f"{shard:05d}.tar", "w") as tar:
            for i in range(3):
                key = f"{shard}{i:03d}"
                buf = io.BytesIO()
                _img().save(buf, format="JPEG")
                add(tar, f"{key}.jpg", buf.getvalue() if (shard, i) != (1, 2) else b"garbage")
                add(tar, f"{key}.txt", b"a red box" if (shard, i) != (0, 1) else b"")
    dm = ImageTextDataModule(root=str(tmp_path / "{00000..00001}.tar"), image_size=32, context_length=16, batch_size=2)
    dm.setup("fit")
    items = list(dm.train_set)
    assert len(items) == 4 and all(x["view1"].shape == (3, 32, 32) for x in items)
    assert dm.skips.counts == {"an empty caption": 1, "an undecodable image": 1}
    folder = ImageTextDataModule(
        root=str(tmp_path), image_size=32, context_length=16, batch_size=2, webdataset_length=3
    )
    folder.setup("fit")
    batches = list(folder.train_dataloader())
    assert sum(b["text"].shape[0] for b in batches) == 3


def test_three_views_boxes_contain_the_union_and_the_release_bug_flag():
    rng = random.Random(0)
    for _ in range(300):
        b1, b2, b3 = three_boxes(120, 90, (0.5, 1.0), (3 / 4, 4 / 3), rng=rng)
        for b in (b1, b2):
            assert b3[0] <= b[0] and b3[1] <= b[1]
            assert b3[0] + b3[2] >= b[0] + b[2] and b3[1] + b3[3] >= b[1] + b[3]
        assert b3[0] + b3[2] <= 120 and b3[1] + b3[3] <= 90
    # the released draw: left = min(left1, height2) (then a random shrink towards 0), which can exceed left1
    rng = random.Random(1)
    lefts = []
    for _ in range(300):
        b1, b2, b3 = three_boxes(300, 300, (0.05, 0.1), (1.0, 1.0), release_bug=True, rng=rng)
        lefts.append((b3[1], b1[1], b2[1], b2[2]))
    assert any(l3 > min(l1, l2) for l3, l1, l2, _ in lefts)  # the bug lets v3 miss the views' left edge
    assert all(l3 <= min(l1, h2) for l3, l1, _, h2 in lefts)

    views = ThreeViews(32)(_img("L", (50, 40)))
    assert [v.shape for v in views[:3]] == [(3, 32, 32)] * 3 and views[3].shape == (3, 4)


def test_digits_are_captioned_split_by_image_and_carry_zero_shot_names():
    dm = ImageTextDataModule(root=None, image_size=24, context_length=16, batch_size=16)
    dm.setup("fit")
    assert len(dm.train_set) == 1437 and len(dm.val_sets[0]) == 360
    assert dm.classnames == list(DIGIT_NAMES) and all("{}" in t for t in dm.templates)
    # split by image: no scan is in both parts
    train_px = {bytes(r[0]().tobytes()) for r in dm.train_set.rows}
    val_px = [bytes(r[0]().tobytes()) for r in dm.val_sets[0].rows]
    assert sum(p in train_px for p in val_px) < 5  # (a handful of digits scans are pixel-identical duplicates)
    _, caps, label = dm.val_sets[0].rows[0]
    assert all(DIGIT_NAMES[label] in c for c in caps)
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (16, 3, 24, 24) and (val["label"] >= 0).all() and (val["index"] >= 0).all()
    tr = next(iter(dm.train_dataloader()))
    assert tr["view1"].shape == (16, 3, 24, 24) and not torch.equal(tr["view1"], tr["view2"])


def test_collate_drops_failed_items_and_bad_arguments_are_user_errors():
    assert collate_skipping([None, None]) is None
    out = collate_skipping([None, {"x": torch.ones(2)}])
    assert out["x"].shape == (1, 2)
    with pytest.raises(UserError, match="scale"):
        ImageTextDataModule(scale=(0.0, 1.0))
    with pytest.raises(UserError):
        ImageTextDataModule(batch_size=0)


def test_zeroshot_folder_gives_labels_class_names_and_no_retrieval_pairs(tmp_path):
    for cls in ("golden_retriever", "tabby_cat"):
        (tmp_path / "zs" / cls).mkdir(parents=True)
        for i in range(2):
            _img().save(tmp_path / "zs" / cls / f"{i}.png")
    for i in range(2):
        _img().save(tmp_path / f"{i}.jpg")
        (tmp_path / f"{i}.txt").write_text("a caption")
    dm = ImageTextDataModule(
        root=str(tmp_path),
        zeroshot_root=str(tmp_path / "zs"),
        templates=["a photo of a {}."],
        image_size=32,
        context_length=16,
        batch_size=4,
    )
    dm.setup("fit")
    assert dm.classnames == ["golden retriever", "tabby cat"]
    zs = next(iter(dm.val_dataloader()))
    assert zs["label"].tolist() == [0, 0, 1, 1] and zs["index"].tolist() == [-1] * 4  # zero-shot only
    with pytest.raises(UserError, match="classnames"):
        ImageTextDataModule(
            root=str(tmp_path), zeroshot_root=str(tmp_path / "zs"), classnames=["one"], image_size=32, context_length=16
        ).setup("fit")


def test_image_size_and_context_length_follow_the_attached_model():
    from types import SimpleNamespace

    from zoo.models.aclip.module import ACLIPModule

    net = dict(img_size=24, patch_size=4, vision_width=16, vision_depth=1, vision_heads=2, embed_dim=8)
    model = ACLIPModule(net={**net, "context_length": 12, "text_width": 16, "text_heads": 2, "text_layers": 1})

    def attached(**kw):
        dm = ImageTextDataModule(root=None, batch_size=4, **kw)
        dm.trainer = SimpleNamespace(lightning_module=model)  # what a Trainer gives the data module
        return dm

    dm = attached()
    dm.setup("fit")
    assert (dm.image_size, dm.context_length) == (24, 12) and dm.hparams.image_size is None
    item = dm.train_set[0]
    assert item["view1"].shape == (3, 24, 24) and item["text"].shape == (12,)
    attached(image_size=24, context_length=12).setup("fit")  # explicit values that agree
    with pytest.raises(UserError, match=r"^ImageTextDataModule: data.init_args.context_length is 16 but the model"):
        attached(context_length=16).setup("fit")
    with pytest.raises(UserError, match=r"^ImageTextDataModule: data.init_args.image_size is 32 but the model was"):
        attached(image_size=32).setup("fit")
    with pytest.raises(UserError, match="image_size is not set and no attached model fixes it"):
        ImageTextDataModule(root=None, batch_size=4).setup("fit")
