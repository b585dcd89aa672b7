"""User errors through `zoo` end in one `zoo CMD: error: ...` line (the problem and the fix), exit status 2, no
traceback; `--debug` / ZOO_DEBUG=1 give the traceback. Model/data mismatches are caught at setup, both numbers named."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch  # noqa: F401  imported at collection: its console handler binds the real stderr, not a test's
import pytest
import torch

from zoo.cli import main
from zoo.errors import UserError, check_choice, check_positive, user_error_message

REPO = Path(__file__).resolve().parents[1]
EMO = ["fit", "--config", str(REPO / "configs/demo/emo.yaml")]


@pytest.fixture(autouse=True)
def _console_handler_per_test():
    """`zoo fit` adds a console handler to the "zoo" logger once per process, bound to the sys.stderr of that moment:
    under capsys that stream is closed after the test, so each test starts without it."""
    logger = logging.getLogger("zoo")
    saved = list(logger.handlers)
    for h in saved:
        logger.removeHandler(h)
    yield
    for h in list(logger.handlers):
        logger.removeHandler(h)
    for h in saved:
        logger.addHandler(h)


def _one_error_line(capsys, cmd: str, *needles: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith(f"zoo {cmd}: error: ")]
    assert len(lines) == 1, err[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "args, needles",
    [
        (
            ["--model.init_args.num_classes", "0"],
            ["num_classes must be >= 1, got 0", "set model.init_args.num_classes"],
        ),
        (["--model.init_args.size", "emo_3m"], ["unknown size 'emo_3m'", "choose one of", "emo_1m"]),
        (["--data.init_args.root", "/nonexistent/imagenet"], ["/nonexistent/imagenet does not exist", "root=None"]),
        (["--data.init_args.batch_size", "0"], ["batch_size must be >= 1, got 0"]),
    ],
)
def test_bad_arguments_are_one_line(args, needles, capsys, tmp_path):
    assert main([*EMO, *args, f"--trainer.default_root_dir={tmp_path}"]) == 2
    _one_error_line(capsys, "fit", *needles)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_one_line(capsys, tmp_path):
    assert main([*EMO, "--trainer.accelerator", "cuda", f"--trainer.default_root_dir={tmp_path}"]) == 2
    _one_error_line(capsys, "fit", "CUDA", "accelerator")


def test_debug_anywhere_shows_the_traceback(monkeypatch):
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        main(["--debug", *EMO, "--model.init_args.num_classes", "0"])
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        main([*EMO, "--model.init_args.num_classes", "0", "--debug"])
    monkeypatch.setenv("ZOO_DEBUG", "1")
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        main([*EMO, "--model.init_args.num_classes", "0"])


def test_a_bug_keeps_its_traceback():
    """Only user errors are shortened: an error from inside the code propagates (here a RuntimeError)."""
    assert user_error_message(RuntimeError("shape mismatch in a kernel")) is None
    try:
        try:
            raise UserError("num_classes must be >= 1, got 0;\n  set it")
        except UserError as inner:
            raise ValueError("Does not validate against any of the Union subtypes") from inner
    except ValueError as outer:
        assert user_error_message(outer) == "num_classes must be >= 1, got 0; set it"


# ---------------------------------------------------------------------------------------------- model vs data
def test_num_classes_below_the_datas_classes_is_caught_at_setup(capsys, tmp_path):
    assert main([*EMO, "--model.init_args.num_classes", "5", f"--trainer.default_root_dir={tmp_path}"]) == 2
    _one_error_line(capsys, "fit", "num_classes=5", "10 classes", "set model.init_args.num_classes to at least 10")


def test_tinymim_finetune_num_classes_is_checked(capsys, tmp_path):
    assert (
        main(
            [
                "fit",
                "--config",
                str(REPO / "configs/demo/tinymim-finetune.yaml"),
                "--model.init_args.pretrained",
                "null",
                "--model.init_args.num_classes",
                "3",
                f"--trainer.default_root_dir={tmp_path}",
            ]
        )
        == 2
    )
    _one_error_line(capsys, "fit", "ViTFinetuneModule", "num_classes=3", "10 classes")


def test_ccgc_in_features_must_match_the_graph(capsys, tmp_path):
    assert (
        main(
            [
                "fit",
                "--config",
                str(REPO / "configs/demo/ccgc.yaml"),
                "--model.init_args.net.in_features",
                "30",
                f"--trainer.default_root_dir={tmp_path}",
            ]
        )
        == 2
    )
    _one_error_line(
        capsys, "fit", "in_features=30", "34 attributes per node", "set model.init_args.net.in_features to 34"
    )


def test_reliant_in_features_must_match_the_graph(capsys, tmp_path):
    assert (
        main(
            [
                "fit",
                "--config",
                str(REPO / "configs/demo/reliant.yaml"),
                "--model.init_args.net.in_features",
                "12",
                f"--trainer.default_root_dir={tmp_path}",
            ]
        )
        == 2
    )
    _one_error_line(capsys, "fit", "12 features", "1000 x 16", "in_features")


def test_reliant_teacher_in_features_must_match_the_graph():
    from types import SimpleNamespace

    from zoo.data_modules import FairGraphDataModule
    from zoo.models.reliant.module import GNNTeacherModule

    dm = FairGraphDataModule("synthetic", synthetic_nodes=50)
    t = GNNTeacherModule("gcn.bail", {"in_features": 10})
    t._trainer = SimpleNamespace(datamodule=dm)
    with pytest.raises(UserError, match=r"net.in_features=10 but the data \(FairGraphDataModule\) has 16 features"):
        t.setup("fit")


def test_xdeepint_num_fields_must_match_the_data(capsys, tmp_path):
    assert (
        main(
            [
                "fit",
                "--config",
                str(REPO / "configs/demo/xdeepint.yaml"),
                "--model.init_args.net.num_fields",
                "30",
                "--data.init_args.synthetic_rows",
                "300",
                f"--data.init_args.cache_dir={tmp_path / 'cache'}",
                f"--trainer.default_root_dir={tmp_path}",
            ]
        )
        == 2
    )
    _one_error_line(capsys, "fit", "the data has 38 fields", "num_fields=30", "set model.init_args.net.num_fields=38")


# ---------------------------------------------------------------------------------------------- shared checks
def test_tools_errors_are_one_line_too(capsys):
    assert main(["card", "emo-1n"]) == 2
    _one_error_line(capsys, "card", "unknown model name 'emo-1n'", "emo-1m")
    with pytest.raises(KeyError):  # --debug is taken off the tools' command lines too, and gives the traceback
        main(["card", "--debug", "emo-1n"])


def test_bench_unknown_timm_name_is_one_line(capsys):
    assert main(["bench", "timm:nosuchnet", "--device", "cpu", "--steps", "1"]) == 2
    _one_error_line(capsys, "bench", "nosuchnet", "timm")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_bench_cuda_without_a_gpu_is_one_line(capsys):
    assert main(["bench", "emo-1m", "--device", "cuda", "--steps", "1"]) == 2
    _one_error_line(capsys, "bench", "--device cuda", "cpu")


def test_argument_checks_name_the_argument_the_value_and_the_fix():
    with pytest.raises(UserError, match=r"^M: batch_size must be >= 1, got 0; set batch_size to a value >= 1\.$"):
        check_positive("batch_size", 0, where="M")
    with pytest.raises(
        UserError, match=r"unknown variant 'emo_2n' \(did you mean 'emo_2m'\?\); choose one of 'emo_1m', "
    ):
        check_choice("variant", "emo_2n", ["emo_1m", "emo_2m"])


# ---------------------------------------------------------------------------------------------- config errors
@pytest.mark.parametrize(
    "edit, needles",
    [
        (
            {"model.init_args.num_clases": 10},
            ["config key model (class_path zoo.models.emo.module.EMOModule)", "'num_clases' is not accepted"],
        ),
        ({"model.init_args.num_classes": "ten"}, ["-> num_classes: Expected a <class 'int'>. Got value: ten"]),
        ({"model.class_path": "zoo.models.emo.module.NoSuchModule"}, ["NoSuchModule"]),
        ({"trainer.max_epochs": "x"}, ["config key trainer.max_epochs: Expected a <class 'int'> (given: x)"]),
    ],
)
def test_config_errors_are_one_line(edit, needles, capsys, tmp_path):
    """jsonargparse's report (usage + a nested 'Does not validate against any of the Union subtypes' block, 50-60
    lines) becomes one line: the key path, the problem, the value, where to look."""
    import yaml

    cfg = yaml.safe_load((REPO / "configs/demo/emo.yaml").read_text())
    for dotted, value in edit.items():
        *parents, leaf = dotted.split(".")
        node = cfg
        for key in parents:
            node = node[key]
        node[leaf] = value
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    assert main(["fit", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "usage:" not in err and "Subtypes" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("zoo fit: error: ")]
    assert len(lines) == 1 and "`zoo fit --help` lists the accepted keys" in lines[0], err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("text, needle", [("model: [\n", "Problems parsing config"), (None, "File does not exist")])
def test_unreadable_config_file_is_one_line(text, needle, capsys, tmp_path):
    path = tmp_path / "cfg.yaml"
    if text is not None:
        path.write_text(text)
    assert main(["validate", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("zoo validate: error: ")]
    assert "usage:" not in err and len(lines) == 1, err
    assert needle in lines[0] and "`zoo validate --help`" in lines[0], lines[0]


def test_config_error_with_debug_keeps_the_traceback(tmp_path):
    import argparse

    with pytest.raises(argparse.ArgumentError, match="Option 'nosuch' is not accepted"):
        main([*EMO, "--model.init_args.nosuch=1", "--debug"])


# ---------------------------------------------------------------------------------------------- worker errors
class _FailingItems(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        raise UserError(f"frame {i}: all 6 points are NaN;\n re-extract it")


def test_an_error_in_a_dataloader_worker_is_its_own_message():
    """PyTorch re-raises a worker's exception with the worker's traceback as its message (1,138 characters on one
    line before); the user sees the original message and the worker."""
    with pytest.raises(UserError) as e:
        next(iter(torch.utils.data.DataLoader(_FailingItems(), num_workers=1)))
    assert "Original Traceback" in str(e.value)
    assert (
        user_error_message(e.value) == "frame 0: all 6 points are NaN; re-extract it (in DataLoader worker process 0)"
    )
    keyerror = KeyError(
        "Caught KeyError in DataLoader worker process 1.\nOriginal Traceback (most recent call last):\n"
        "  File \"x.py\", line 1, in f\nKeyError: 'lidar_points'\n"
    )
    assert user_error_message(keyerror, broad=True) == "lidar_points (in DataLoader worker process 1)"
    assert (
        user_error_message(RuntimeError("Caught RuntimeError in DataLoader worker process 0.\nOriginal Traceback"))
        is None
    )  # a bug stays a traceback


def _fit_args(method: str, tmp_path) -> list[str]:
    """`zoo fit` of a demo config, one step, writing nothing outside tmp_path."""
    return [
        "fit",
        "--config",
        str(REPO / f"configs/demo/{method}.yaml"),
        "--trainer.max_steps=1",
        "--trainer.limit_val_batches=0",
        "--trainer.logger=false",
        "--trainer.enable_checkpointing=false",
        "--trainer.callbacks=[]",
        f"--trainer.default_root_dir={tmp_path}",
    ]


def test_worker_error_through_zoo_fit_is_one_line(capsys, tmp_path):
    """A-CLIP on webdataset shards without a usable sample, read by a worker process: one line, the worker named."""
    import io
    import tarfile

    with tarfile.open(tmp_path / "00000.tar", "w") as tar:
        for name, data in (("a.jpg", b"junk"), ("a.txt", b"a red box")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert (
        main(
            [
                *_fit_args("aclip", tmp_path),
                f"--data.init_args.root={tmp_path}",
                "--data.init_args.num_workers=1",
                "--data.init_args.webdataset_length=4",
            ]
        )
        == 2
    )
    line = _one_error_line(capsys, "fit", "no usable sample in 1 shard(s)", "(in DataLoader worker process 0)")
    assert "Original Traceback" not in line and len(line) < 400, line


def test_aclip_images_all_corrupt_is_one_line_not_zero_steps(capsys, tmp_path):
    """Before: every batch empty, zero training steps, exit status 0."""
    from tests.data_modules.test_bad_input import write_corrupt_pairs

    csv = write_corrupt_pairs(tmp_path / "data", n=6)
    assert main([*_fit_args("aclip", tmp_path), f"--data.init_args.root={csv}"]) == 2
    _one_error_line(capsys, "fit", "none of 6 images sampled across its 6 rows decodes")


# ---------------------------------------------------------------------------------------------- 3D data through `zoo`
def _nan_kitti(shared_data, tmp_path):
    """The shared KITTI frames (symlinked) with every point cloud replaced by NaNs of the right size."""
    import numpy as np

    root = tmp_path / "kitti"
    for sub in ("calib", "image_2", "label_2", "velodyne"):
        (root / sub).mkdir(parents=True)
        for f in (shared_data / "kitti_frames" / sub).iterdir():
            if sub == "velodyne":
                np.full((f.stat().st_size // 4,), np.nan, np.float32).tofile(root / sub / f.name)
            else:
                (root / sub / f.name).symlink_to(f)
    return root


@pytest.mark.parametrize("case", ["ssda3d-no-lidar-points", "ssda3d-all-nan", "lwsis-no-lidar-points"])
def test_3d_data_errors_through_zoo_fit_are_one_line(case, shared_data, capsys, tmp_path):
    from tests.data_modules.test_bad_input import _nuscenes_without_lidar

    method = case.split("-")[0]
    args = _fit_args(method, tmp_path)
    if case == "ssda3d-all-nan":
        args += [
            f"--data.init_args.source.init_args.root={_nan_kitti(shared_data, tmp_path)}",
            f"--data.init_args.target.init_args.root={shared_data / 'nuscenes_demo'}",
        ]
        needles = ["all", "points are NaN or infinite", "re-extract it"]
    else:
        root = _nuscenes_without_lidar(shared_data, tmp_path)
        args += (
            [
                f"--data.init_args.source.init_args.root={shared_data / 'kitti_frames'}",
                f"--data.init_args.target.init_args.root={root}",
            ]
            if method == "ssda3d"
            else [f"--data.init_args.root={root}", "--data.init_args.cameras=[CAM_FRONT]"]
        )
        needles = ["has no lidar_points.lidar_path", "tools/create_data.py"]
    assert main(args) == 2
    _one_error_line(capsys, "fit", *needles)


# ---------------------------------------------------------------------------------------------- files through `zoo`
def test_csv_and_coco_errors_through_zoo_fit_are_one_line(shared_data, capsys, tmp_path):
    """A non-UTF-8 A-CLIP CSV, a WebVid CSV with a short row, a COCO nuInsSeg export with a non-numeric polygon."""
    from tests.data_modules.test_bad_input import _coco

    (tmp_path / "pairs.csv").write_bytes("filepath,title\na.jpg,cr\u00e8me\n".encode("latin-1"))
    assert main([*_fit_args("aclip", tmp_path), f"--data.init_args.root={tmp_path / 'pairs.csv'}"]) == 2
    _one_error_line(capsys, "fit", "pairs.csv: not UTF-8 text (byte 0xe8", "iconv")

    webvid = tmp_path / "webvid"
    webvid.mkdir()
    (webvid / "results_2M_train.csv").write_text("videoid,contentUrl,duration,page_dir,name\n1,http://x\n")
    assert (
        main([*_fit_args("simvtp", tmp_path), f"--data.init_args.root={webvid}", "--data.init_args.layout=webvid"]) == 2
    )
    _one_error_line(capsys, "fit", "line 2 has 2 of the header's 5 fields", "re-download it or fix that row")

    coco = _coco(tmp_path, [[[10, 10, "x", 10, 50, 40]]])
    assert (
        main(
            [
                *_fit_args("lwsis", tmp_path),
                f"--data.init_args.root={shared_data / 'nuscenes_demo'}",
                f"--data.init_args.nuinsseg={coco}",
                "--data.init_args.cameras=[CAM_FRONT]",
            ]
        )
        == 2
    )
    _one_error_line(capsys, "fit", "coco.json: annotation 0: polygon 0 must be a flat list of numeric")


def test_the_console_script_prints_a_config_error_as_one_line(tmp_path):
    """`zoo fit --config BAD` as a process (the console script path, LightningCLI reads sys.argv): one stderr line."""
    import os
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  class_path: zoo.models.emo.module.EMOModule\n  init_args:\n    num_classes: ten\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("ZOO_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "zoo.cli", "fit", "--config", str(bad)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("zoo fit: error: config key model"), proc.stderr[-2000:]
    assert "num_classes: Expected a <class 'int'>. Got value: ten" in lines[0]
