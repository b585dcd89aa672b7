"""Export never destroys user data; loading never imports or calls a class a file names unless it is a zoo
LightningModule (or the user allowed it); `zoo export --name` is checked against the model (issue 19)."""
from __future__ import annotations

import json
import sys

import pytest
import torch
from lightning.pytorch import LightningModule

import zoo
from zoo import hub, registry
from zoo.cli import main


def tiny(name="emo-1m", **kw):
    torch.manual_seed(0)
    return zoo.create(name, **{**registry.get(name).tiny_overrides, **kw})


def lightning_ckpt(path, module, class_path=None, **extra_hparams):
    """A checkpoint laid out as LightningCLI writes it: ``model.*`` weights, hparams with ``_class_path``."""
    hp = {"_class_path": class_path or hub.class_path(module), **dict(module.hparams), **extra_hparams}
    state = {f"model.{k}": v for k, v in module.model.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": hp}, path)
    return path


class Affine(LightningModule):
    """A LightningModule outside zoo.*: only loadable when the user allows it."""

    def __init__(self, dim: int = 3):
        super().__init__()
        self.save_hyperparameters()
        self.model = torch.nn.Linear(dim, dim)


# ------------------------------------------------------------------------------------ export targets
def test_export_refuses_a_folder_with_user_files(tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "thesis.tex").write_text("years of work")
    with pytest.raises(ValueError, match="not a zoo export.*thesis.tex.*refusing"):
        hub.export(tiny(), target, name="emo-1m")
    assert (target / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"], "no temporary folder left behind"


def test_zoo_export_into_the_current_folder_is_refused(tmp_path, monkeypatch, capsys):
    ckpt = lightning_ckpt(tmp_path / "run.ckpt", tiny())
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("keep me")
    monkeypatch.chdir(work)
    assert main(["export", str(ckpt), "."]) == 2
    assert "current folder" in capsys.readouterr().err
    assert [p.name for p in work.iterdir()] == ["notes.txt"]


def test_export_refuses_a_file_target_and_leaves_no_hidden_leftover(tmp_path, capsys):
    ckpt = lightning_ckpt(tmp_path / "run.ckpt", tiny())
    target = tmp_path / "out"
    target.write_text("a file")
    assert main(["export", str(ckpt), str(target)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert target.read_text() == "a file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "run.ckpt"]


def test_replacing_an_export_needs_overwrite_and_stays_atomic(tmp_path, capsys):
    ckpt = lightning_ckpt(tmp_path / "run.ckpt", tiny())
    out = tmp_path / "export"
    assert main(["export", str(ckpt), str(out)]) == 0
    first = (out / "model.safetensors").read_bytes()
    assert main(["export", str(ckpt), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    torch.manual_seed(1)  # the same architecture, other weights
    other = zoo.create("emo-1m", **registry.get("emo-1m").tiny_overrides)
    lightning_ckpt(ckpt, other)
    assert main(["export", str(ckpt), str(out), "--overwrite"]) == 0
    assert (out / "model.safetensors").read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "run.ckpt"]
    # an export that also holds a file zoo did not write is not replaced, even with --overwrite
    (out / "my_eval.csv").write_text("1,2")
    assert main(["export", str(ckpt), str(out), "--overwrite"]) == 2
    assert "my_eval.csv" in capsys.readouterr().err and (out / "my_eval.csv").exists()


def test_an_empty_folder_is_a_fine_target(tmp_path):
    (tmp_path / "empty").mkdir()
    out = hub.export(tiny(), tmp_path / "empty", name="emo-1m")
    assert hub.is_export(out)


# ------------------------------------------------------------------------------------ code execution
def _folder_naming(tmp_path, module_path, init_args):
    folder = hub.export(tiny(), tmp_path / "export", name="emo-1m")
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(module=module_path, init_args=init_args)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def test_config_json_naming_subprocess_run_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    folder = _folder_naming(tmp_path, "subprocess.run", {"args": ["touch", str(marker)]})
    with pytest.raises(hub.UntrustedClassError, match="subprocess.run.*not a zoo LightningModule"):
        zoo.load(f"local-dir:{folder}")
    assert not marker.exists()


def test_class_path_is_checked_before_import(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "sneaky_mod.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass M: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    folder = _folder_naming(tmp_path, "sneaky_mod.M", {})
    with pytest.raises(hub.UntrustedClassError):
        zoo.load(f"local-dir:{folder}")
    assert not marker.exists() and "sneaky_mod" not in sys.modules


def test_a_zoo_name_that_is_not_a_lightning_module_is_not_called(tmp_path):
    folder = _folder_naming(tmp_path, "zoo.convert.fetch", {"url": "http://127.0.0.1:9/x", "dest": "x"})
    with pytest.raises(hub.UntrustedClassError, match="not a LightningModule subclass"):
        zoo.load(f"local-dir:{folder}")


def test_a_class_the_user_allows_loads(tmp_path):
    m = Affine()
    folder = hub.export(m, tmp_path / "affine")
    with pytest.raises(hub.UntrustedClassError, match="allowed_modules"):
        zoo.load(f"local-dir:{folder}")
    loaded = zoo.load(f"local-dir:{folder}", allowed_modules=[hub.class_path(m)])
    torch.testing.assert_close(loaded.model.weight, m.model.weight)


def test_zoo_export_of_a_checkpoint_naming_os_system_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"_class_path": "os.system",
                                                        "command": f"touch {marker}"}}, ckpt)
    assert main(["export", str(ckpt), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "os.system" in err and "--module" in err
    assert not marker.exists() and not (tmp_path / "out").exists()
    # naming it explicitly does not help: it is not a LightningModule, so it is never called
    assert main(["export", str(ckpt), str(tmp_path / "out"), "--module", "os.system"]) == 2
    assert "not a LightningModule" in capsys.readouterr().err and not marker.exists()


# ------------------------------------------------------------------------------------ zoo export --name
def test_export_name_of_another_class_is_refused(tmp_path, capsys):
    vit = tiny("tinymim-tiny.in1k-ft")
    ckpt = lightning_ckpt(tmp_path / "vit.ckpt", vit)
    assert main(["export", str(ckpt), str(tmp_path / "out"), "--name", "emo-1m"]) == 2
    err = capsys.readouterr().err
    assert "ViTFinetuneModule" in err and "EMOModule" in err and not (tmp_path / "out").exists()


def test_export_name_with_other_init_args_or_shapes_is_refused(tmp_path, capsys):
    ckpt = lightning_ckpt(tmp_path / "emo.ckpt", tiny())  # num_classes 10: not emo-1m's 1000-way head
    assert main(["export", str(ckpt), str(tmp_path / "out"), "--name", "emo-1m"]) == 2
    assert "num_classes: 10 (entry: 1000)" in capsys.readouterr().err
    e = registry.get("tinymim-tiny.in1k-ft")
    vit = zoo.create(e.name, img_size=32)  # the entry's init args, another input size: other pos_embed
    lightning_ckpt(ckpt, vit)
    assert main(["export", str(ckpt), str(tmp_path / "out"), "--name", e.name]) == 2
    assert "pos_embed" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_export_name_that_matches_is_accepted(tmp_path):
    m = zoo.create("emo-1m")
    ckpt = lightning_ckpt(tmp_path / "emo.ckpt", m)
    assert main(["export", str(ckpt), str(tmp_path / "out"), "--name", "emo-1m"]) == 0
    assert json.loads((tmp_path / "out" / "config.json").read_text())["name"] == "emo-1m"


def test_exporting_a_registry_name_without_weights_is_refused(tmp_path, capsys):
    assert main(["export", "tinymim-small", str(tmp_path / "out")]) == 2
    assert "no weights to export" in capsys.readouterr().err
    assert main(["export", "tinymim-base", str(tmp_path / "out")]) == 2  # pending: says how to convert
    assert "python -m zoo.models.tinymim.convert" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
