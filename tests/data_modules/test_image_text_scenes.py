"""ImageTextDataModule's cluttered digit scenes (``digits_layout="cluttered"``): the canvas is the image size, the
described digit is whole inside its box and alone there, the caption names it, the scenes follow the seed, the
held-out scenes are built from held-out scans, and evaluation batches carry the digit's box."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from zoo.data_modules.image_text import DIGIT_NAMES, ImageTextDataModule, cluttered_digit_scene
from zoo.errors import UserError


def _setup(seed=0, **kw):
    args = dict(root=None, image_size=24, context_length=16, batch_size=8, digits_layout="cluttered", scene_copies=1)
    dm = ImageTextDataModule(seed=seed, **{**args, **kw})
    dm.setup("fit")
    return dm


def _pixels(row) -> np.ndarray:
    return np.asarray(row[0]())


def test_scene_places_the_whole_target_in_its_box_and_the_distractors_outside():
    rng = np.random.default_rng(0)
    target = np.zeros((8, 8), np.uint8)
    target[1:7, 3:5] = 255  # a "one"
    pool = np.full((3, 8, 8), 200, np.uint8)  # all ink: every window is a stroke
    for _ in range(50):
        scene, (top, left, h, w) = cluttered_digit_scene(target, pool, 40, 16, 6, rng)
        assert scene.shape == (40, 40) and scene.dtype == np.uint8 and (h, w) == (16, 16)
        assert 0 <= top <= 24 and 0 <= left <= 24
        want = np.asarray(Image.fromarray(target, mode="L").resize((16, 16), Image.BICUBIC))
        assert np.array_equal(scene[top : top + 16, left : left + 16], want)  # whole, nothing drawn over it
        outside = scene.copy()
        outside[top : top + 16, left : left + 16] = 0
        assert outside.max() > 0  # clutter was drawn, and only outside the target's box
    empty, _ = cluttered_digit_scene(target, pool, 40, 16, 0, rng)
    assert (empty > 0).sum() == (want > 0).sum()  # no distractors asked for: the target alone


def test_cluttered_digits_canvas_captions_boxes_and_split():
    dm = _setup()
    assert len(dm.train_set) == 1437 and len(dm.val_sets[0]) == 360
    assert dm.classnames == list(DIGIT_NAMES)
    for ds in (dm.train_set, dm.val_sets[0]):
        for row in ds.rows[:50]:
            _, caps, label, (top, left, h, w) = row
            px = _pixels(row)
            assert px.shape == (24, 24) and (h, w) == (12, 12)  # the canvas is the image; the digit half its side
            assert top + h <= 24 and left + w <= 24 and px[top : top + h, left : left + w].max() > 128
            assert all(DIGIT_NAMES[label] in c for c in caps)  # every caption names the described digit
            assert (px[top : top + h, left : left + w] > 0).sum() < (px > 0).sum()  # clutter outside the box
    # the held-out scenes show held-out scans: their digits are not among the training scenes' digits
    crop = lambda row: _pixels(row)[row[3][0] : row[3][0] + 12, row[3][1] : row[3][1] + 12].tobytes()  # noqa: E731
    train = {crop(r) for r in dm.train_set.rows}
    assert sum(crop(r) in train for r in dm.val_sets[0].rows) < 5  # (a handful of scans are duplicates)
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (8, 3, 24, 24) and val["target_box"].shape == (8, 4)
    assert val["target_box"].tolist() == [list(r[3]) for r in dm.val_sets[0].rows[:8]]
    tr = next(iter(dm.train_dataloader()))
    assert tr["view1"].shape == (8, 3, 24, 24) and "target_box" not in tr


def test_cluttered_scenes_are_deterministic_per_seed_and_copies_differ():
    a, b, c = _setup(0), _setup(0), _setup(1)
    first = [_pixels(r).tobytes() for r in a.val_sets[0].rows[:20]]
    assert first == [_pixels(r).tobytes() for r in b.val_sets[0].rows[:20]]
    assert [r[3] for r in a.train_set.rows] == [r[3] for r in b.train_set.rows]
    assert first != [_pixels(r).tobytes() for r in c.val_sets[0].rows[:20]]
    two = _setup(0, scene_copies=2)
    n = len(a.train_set)
    assert len(two.train_set) == 2 * n
    assert [r[2] for r in two.train_set.rows[:n]] == [r[2] for r in two.train_set.rows[n:]]  # same scans ...
    assert [r[3] for r in two.train_set.rows[:n]] != [r[3] for r in two.train_set.rows[n:]]  # ... new scenes


def test_frame_layout_is_the_default_and_bad_scene_arguments_are_user_errors():
    dm = ImageTextDataModule(root=None, image_size=24, context_length=16, batch_size=8)
    dm.setup("fit")
    assert len(dm.val_sets[0].rows[0]) == 3 and "target_box" not in next(iter(dm.val_dataloader()))
    with pytest.raises(UserError, match="digits_layout"):
        ImageTextDataModule(digits_layout="clutered")
    with pytest.raises(UserError, match="scene_digit_fraction"):
        ImageTextDataModule(digits_layout="cluttered", scene_digit_fraction=1.5)
    with pytest.raises(UserError, match="scene_distractors"):
        ImageTextDataModule(scene_distractors=-1)
    with pytest.raises(UserError, match="scene_copies"):
        ImageTextDataModule(scene_copies=0)
