"""The `zoo` command, in-process: LightningCLI subcommands and the tools."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from zoo.cli import main

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "configs").rglob("*.yaml"))


def test_list_prints_a_table(capsys):
    assert main(["list", "emo*"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["name", "params", "GFLOPs", "input"]
    assert any(line.startswith("emo-1m") and "1.36M" in line and "71.5" in line for line in out)


def test_card_prints_metadata_and_paper_numbers(capsys):
    assert main(["card", "emo-1m"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("---") and "library_name: zoo" in out and "model-index" in out and "71.5" in out


def test_unknown_name_is_a_clear_error(capsys):
    assert main(["card", "emo-1n"]) == 2
    assert "emo-1m" in capsys.readouterr().err


def test_env_reports_kernels(capsys):
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "CUDA available" in out and "relation_kl" in out


@pytest.mark.parametrize("config", CONFIGS)
def test_every_config_parses(config, capsys):
    """--print_config resolves every class_path and type in the shipped configs (no training)."""
    with pytest.raises(SystemExit) as e:
        main(["fit", "--config", str(REPO / config), "--print_config"])
    assert e.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith("zoo.")


def test_config_typo_is_lightningclis_clear_message(tmp_path, capsys):
    cfg = yaml.safe_load((REPO / "configs/demo/emo.yaml").read_text())
    cfg["model"]["init_args"]["num_clases"] = 10
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    assert main(["fit", "--config", str(bad)]) == 2  # one line (tests/test_cli_errors.py)
    assert "num_clases" in capsys.readouterr().err


def test_unknown_class_path_is_an_error(tmp_path, capsys):
    cfg = yaml.safe_load((REPO / "configs/demo/emo.yaml").read_text())
    cfg["model"]["class_path"] = "zoo.models.emo.module.NoSuchModule"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    assert main(["fit", "--config", str(bad)]) == 2  # one line (tests/test_cli_errors.py)
    assert "NoSuchModule" in capsys.readouterr().err


def test_fit_demo_then_export_checkpoint_then_load(tmp_path):
    """`zoo fit` on the demo config (shortened), then `zoo export CKPT DIR`, then zoo.load of that folder."""
    import torch

    import zoo

    root = tmp_path / "run"
    cfg = yaml.safe_load((REPO / "configs/demo/emo.yaml").read_text())
    # the demo's own output folders, moved under tmp_path (the config is used as shipped otherwise)
    for cb in cfg["trainer"].get("callbacks") or []:
        if "dirpath" in cb.get("init_args", {}):
            cb["init_args"]["dirpath"] = str(root / "ckpt")
    loggers = cfg["trainer"].get("logger")
    for lg in loggers if isinstance(loggers, list) else [loggers] if isinstance(loggers, dict) else []:
        lg.setdefault("init_args", {})["save_dir"] = str(root / "logs")
    assert any("ModelCheckpoint" in cb["class_path"] for cb in cfg["trainer"]["callbacks"])
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(cfg))
    main(
        [
            "fit",
            "--config",
            str(tmp_path / "demo.yaml"),
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=3",
            "--trainer.limit_val_batches=2",
            f"--trainer.default_root_dir={root}",
        ]
    )
    ckpts = sorted((root / "ckpt").glob("*.ckpt"))
    assert ckpts, "fit wrote no checkpoint"
    assert main(["export", str(ckpts[-1]), str(tmp_path / "hub")]) == 0
    cfg = json.loads((tmp_path / "hub" / "config.json").read_text())
    assert cfg["module"] == "zoo.models.emo.module.EMOModule"
    m = zoo.load(f"local-dir:{tmp_path / 'hub'}")
    x = torch.randn(2, 3, cfg["init_args"]["img_size"], cfg["init_args"]["img_size"])
    assert m(x).shape == (2, cfg["init_args"]["num_classes"])


def test_readme_model_table_lists_every_registered_model():
    """README's table is `zoo list --markdown`; a model added to the registry must appear in it."""
    from zoo import registry

    readme = (REPO / "README.md").read_text()
    table = readme.split("<!-- models-table -->")[1].split("<!-- /models-table -->")[0]
    missing = [n for n in registry.list_models() if f"| {n} |" not in table]
    assert not missing, f"README model table lacks {missing}: paste `zoo list --markdown` into it"


def test_readme_demo_table_is_the_committed_demo_rows(capsys):
    """README's demo table is `zoo list --demos --markdown` of results/demo/*.csv: the figures it shows are rows a
    fresh `zoo reproduce --config ... --record` wrote, never typed in."""
    from zoo.cli import main

    assert main(["list", "--demos", "--markdown"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[2:]
    readme = (REPO / "README.md").read_text()
    table = readme.split("<!-- demos-table -->")[1].split("<!-- /demos-table -->")[0].strip().splitlines()[2:]
    assert table == lines, "README's demo table differs from `zoo list --demos --markdown`: paste its output"
