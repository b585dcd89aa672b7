"""The demos write only under trainer.default_root_dir: with --trainer.default_root_dir TMP nothing appears in the
repository (logs, checkpoints, config.yaml), and the TinyMIM fine-tune demo finds the distillation demo's checkpoint
under the same root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from zoo.cli import main

REPO = Path(__file__).resolve().parents[1]
DEMOS = sorted((REPO / "configs" / "demo").glob("*.yaml"))
_SKIP_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache"}
# demo configs that are a step of another demo's chain -> that demo
STEP_OF = {"rsfd-cnn": "rsfd", "tinymim-teacher": "tinymim", "tinymim-feature": "tinymim-finetune"}
ONE_STEP = [
    "--trainer.max_epochs=1",
    "--trainer.max_steps=1",
    "--trainer.limit_val_batches=1",
    "--trainer.num_sanity_val_steps=0",
    "--trainer.log_every_n_steps=1",
]


def _outputs_in_repo() -> set[str]:
    """Files in the repository tree that a run could have written (sources being edited are not outputs)."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(REPO):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and not d.endswith(".egg-info")]
        found.update(os.path.join(dirpath, f) for f in filenames if not f.endswith((".py", ".md", ".pyc")))
    return found


@pytest.fixture
def in_repo(monkeypatch):
    """Run from the repository root (where relative output paths would land) and list what appeared there."""
    monkeypatch.chdir(REPO)
    before = _outputs_in_repo()
    yield lambda: sorted(_outputs_in_repo() - before)


@pytest.mark.parametrize("config", DEMOS, ids=lambda p: p.stem)
def test_no_demo_hard_codes_an_output_path(config):
    """Every output path of a demo is default_root_dir or derived from it (${trainer.default_root_dir})."""
    trainer = yaml.safe_load(config.read_text())["trainer"]
    logger = trainer.get("logger")
    for lg in logger if isinstance(logger, list) else [logger] if isinstance(logger, dict) else []:
        assert lg["init_args"].get("save_dir") in (None, "${trainer.default_root_dir}"), config.name
    for cb in trainer.get("callbacks") or []:
        dirpath = (cb.get("init_args") or {}).get("dirpath")
        assert dirpath is None or dirpath.startswith("${trainer.default_root_dir}"), config.name
    pretrained = str((yaml.safe_load(config.read_text())["model"].get("init_args") or {}).get("pretrained") or "")
    assert not pretrained.startswith("runs/"), config.name


def test_emo_demo_fit_and_test_write_only_under_default_root_dir(tmp_path, in_repo):
    root = tmp_path / "emo"
    cfg = ["--config", "configs/demo/emo.yaml", f"--trainer.default_root_dir={root}"]
    main(["fit", *cfg, *ONE_STEP])
    assert (root / "checkpoints" / "last.ckpt").is_file()
    assert list(root.glob("logs/version_*/metrics.csv")) and list(root.glob("logs/version_*/config.yaml"))
    main(["test", *cfg, f"--ckpt_path={root / 'checkpoints' / 'last.ckpt'}", "--trainer.limit_test_batches=1"])
    assert in_repo() == []


def test_tinymim_finetune_demo_reads_the_distillation_under_the_same_root(tmp_path, in_repo, caplog):
    root = tmp_path / "tinymim"
    main(["fit", "--config", "configs/demo/tinymim-teacher.yaml", f"--trainer.default_root_dir={root}", *ONE_STEP])
    main(["fit", "--config", "configs/demo/tinymim.yaml", f"--trainer.default_root_dir={root}", *ONE_STEP])
    distilled = root / "distill" / "checkpoints" / "last.ckpt"
    assert distilled.is_file()
    with caplog.at_level("INFO", logger="zoo"):
        main(["fit", "--config", "configs/demo/tinymim-finetune.yaml", f"--trainer.default_root_dir={root}", *ONE_STEP])
    assert f"fine-tuning from {distilled}" in caplog.text
    assert (root / "finetune" / "checkpoints" / "last.ckpt").is_file()
    assert in_repo() == []


def test_rsfd_demo_steps_chain_under_the_same_root(tmp_path, in_repo):
    """RSFD: the CNN (zoo fit), then features + corpus (zoo predict, reading the CNN's checkpoint), then the captioner
    reading what the predict step wrote, all under one default_root_dir."""
    root = tmp_path / "rsfd"
    at = f"--trainer.default_root_dir={root}"
    main(["fit", "--config", "configs/demo/rsfd-cnn.yaml", at, *ONE_STEP])
    assert (root / "cnn" / "checkpoints" / "last.ckpt").is_file()
    small = "--data.init_args.digits_sizes=[8,4,4]"
    assert main(["predict", "--config", "configs/demo/rsfd-features.yaml", at, small]) == 0
    feats = root / "features"
    assert {p.name for p in feats.iterdir()} == {"image_digits.hdf5", "motion_digits.hdf5", "videodatainfo.json"}
    main(["fit", "--config", "configs/demo/rsfd.yaml", at, *ONE_STEP, "--data.init_args.batch_size=8"])
    assert (root / "checkpoints" / "last.ckpt").is_file()
    assert in_repo() == []


@pytest.mark.parametrize("config", DEMOS, ids=lambda p: p.stem)
def test_demo_configs_state_no_measured_figures_and_fit_demos_keep_last_ckpt(config):
    """A demo's figures are rows of results/demo/<stem>.csv (zoo reproduce --config ... --record), never config
    comments; every training demo keeps last.ckpt, so `zoo test` / `zoo export` can be run on it."""
    text = config.read_text()
    comments = [ln for ln in text.splitlines() if ln.lstrip().startswith("#")]
    assert not [ln for ln in comments if "Measured" in ln or "measured (" in ln.lower()], config.name
    cfg = yaml.safe_load(text)
    if "predict" in config.stem or "features" in config.stem:
        return
    # a step of another demo (RSFD's CNN pre-training) records no figures: it names the demo whose figures it feeds
    assert f"results/demo/{STEP_OF.get(config.stem, config.stem)}.csv" in text, config.name
    callbacks = cfg["trainer"].get("callbacks") or []
    assert cfg["trainer"].get("enable_checkpointing", True) is not False, config.name
    assert any(
        cb["class_path"].endswith("ModelCheckpoint")
        and (cb.get("init_args", {}).get("save_last") or cb.get("init_args", {}).get("filename") == "last")
        for cb in callbacks
    ), config.name
