"""ImageNetDataModule: the bundled digits, an ImageFolder tree, a saved Hugging Face dataset, and bad layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from zoo.data_modules import ImageNetDataModule

FAST = dict(image_size=32, batch_size=4, num_workers=0, auto_augment=None, color_jitter=None, re_prob=0.0)


def _tree(root, classes=("n01", "n02"), per_class=3, splits=("train", "val")):
    rng = np.random.default_rng(0)
    for split in splits:
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


def test_bundled_digits_are_real_and_split():
    dm = ImageNetDataModule(None, **FAST)
    dm.setup("fit")
    assert dm.num_classes == 10 and len(dm.train_set) + len(dm.val_set) == 1797
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long
    labels = {int(dm.val_set[i][1]) for i in range(len(dm.val_set))}
    assert labels == set(range(10)), "stratified split keeps every class in val"


def test_image_folder_layout(tmp_path):
    dm = ImageNetDataModule(str(_tree(tmp_path)), **FAST)
    dm.setup("fit")
    assert dm.num_classes == 2 and len(dm.train_set) == 6
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (4, 3, 32, 32) and set(y.tolist()) <= {0, 1}


def test_saved_hugging_face_dataset(tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features
    from datasets import Image as HFImage

    rng = np.random.default_rng(0)
    feats = Features({"image": HFImage(), "label": ClassLabel(names=["a", "b", "c"])})
    imgs = [Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)) for _ in range(6)]
    ds = Dataset.from_dict({"image": imgs, "label": [0, 1, 2, 0, 1, 2]}, features=feats)
    DatasetDict({"train": ds, "validation": ds}).save_to_disk(str(tmp_path / "hf"))
    dm = ImageNetDataModule(str(tmp_path / "hf"), **FAST)
    dm.setup("fit")
    assert dm.num_classes == 3
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32)


def test_missing_folder_names_the_expected_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist.*train/<class>.*root=None"):
        ImageNetDataModule(str(tmp_path / "imagenet"), **FAST)


def test_loose_images_without_class_folders(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "train" / "x.png")
    with pytest.raises(FileNotFoundError, match="no class sub-folders.*one folder per class"):
        ImageNetDataModule(str(tmp_path), **FAST)


def test_missing_val_split(tmp_path):
    _tree(tmp_path, splits=("train",))
    with pytest.raises(FileNotFoundError, match="no 'val/' folder"):
        ImageNetDataModule(str(tmp_path), **FAST)


def test_digits_test_split_is_held_out_of_training():
    """With test_split set, the digits' test images are neither training nor validation images."""
    plain = ImageNetDataModule(None, **FAST)
    plain.setup("fit")
    dm = ImageNetDataModule(None, test_split="test", **FAST)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (1077, 360, 360)
    key = lambda ds, i: ds.getitem(i)[0].tobytes()  # noqa: E731  the raw 8x8 scan
    val = {key(dm.val_set, i) for i in range(len(dm.val_set))}
    assert val == {key(plain.val_set, i) for i in range(len(plain.val_set))}, "val is unchanged"
    train = {key(dm.train_set, i) for i in range(len(dm.train_set))}
    test = [key(dm.test_set, i) for i in range(len(dm.test_set))]
    assert not any(t in train or t in val for t in test)  # digits has a few duplicate scans; none crosses splits here
    assert {int(dm.test_set[i][1]) for i in range(len(dm.test_set))} == set(range(10))
    assert dm.test_dataloader().dataset is dm.test_set
    assert plain.test_dataloader().dataset is plain.val_set, "no test_split: the ImageNet convention (test on val)"


def test_image_folder_test_split(tmp_path):
    _tree(tmp_path, splits=("train", "val", "test"), per_class=2)
    dm = ImageNetDataModule(str(tmp_path), test_split="test", **FAST)
    dm.setup("test")
    assert len(dm.test_set) == 4 and dm.test_set.root.endswith("test")
    with pytest.raises(FileNotFoundError, match="no 'holdout/' folder"):
        ImageNetDataModule(str(tmp_path), test_split="holdout", **FAST)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(batch_size=0), "batch_size must be >= 1, got 0"),
        (dict(num_workers=-1), "num_workers must be >= 0"),
        (dict(image_size=0), "image_size must be >= 1"),
    ],
)
def test_bad_arguments_are_user_errors(bad, match):
    from zoo.errors import UserError

    with pytest.raises(UserError, match=match):
        ImageNetDataModule(None, **{**FAST, **bad})


def _attach(dm, module):
    """What a Trainer does before ``setup``, without one: the data module sees the LightningModule."""
    from types import SimpleNamespace

    dm.trainer = SimpleNamespace(lightning_module=module)
    return dm


def test_image_size_follows_the_attached_model():
    from zoo.errors import UserError
    from zoo.models.emo.module import EMOModule

    model = EMOModule(num_classes=10, img_size=48)
    dm = _attach(ImageNetDataModule(None, **{**FAST, "image_size": None}), model)
    dm.setup("fit")
    assert dm.image_size == 48 and dm.hparams.image_size is None
    assert dm.train_set[0][0].shape == (3, 48, 48) and dm.val_set[0][0].shape == (3, 48, 48)

    same = _attach(ImageNetDataModule(None, **{**FAST, "image_size": 48}), model)
    same.setup("fit")  # an explicit value that agrees is fine
    with pytest.raises(
        UserError, match=r"^ImageNetDataModule: data.init_args.image_size is 32 but the model was built"
    ):
        _attach(ImageNetDataModule(None, **FAST), model).setup("fit")
    with pytest.raises(UserError, match="image_size is not set and no attached model fixes it; set data.init_args"):
        ImageNetDataModule(None, **{**FAST, "image_size": None}).setup("fit")


def test_image_size_follows_a_model_through_a_trainer(tmp_path):
    """The same through Lightning: the demo's data section has no image_size, the module's img_size decides."""
    import lightning.pytorch as pl

    from zoo.models.tinymim.module import ViTFinetuneModule

    net = {"img_size": 16, "patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2}
    model = ViTFinetuneModule("tiny", net=net, num_classes=10, mixup=0.0, cutmix=0.0, lr=1e-3)
    dm = ImageNetDataModule(None, **{**FAST, "image_size": None})
    trainer = pl.Trainer(
        accelerator="cpu",
        fast_dev_run=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, dm)
    assert dm.image_size == 16 and dm.train_set[0][0].shape == (3, 16, 16)
