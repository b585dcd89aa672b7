"""``zoo test|validate|predict --ckpt_path``: the checkpoint's hyper-parameters rebuild the trained model, but init
args set explicitly on the command line win (Lightning alone silently drops them: an eval-time switch such as CMT's
``drop_modality`` was ignored)."""

import functools
import sys

import pytest
import torch
from lightning.pytorch import LightningDataModule, LightningModule
from torch.utils.data import DataLoader, TensorDataset

from zoo.errors import UserError
from zoo.lightning_cli import _explicit_model_args, run_lightning


class Toy(LightningModule):
    def __init__(self, width: int = 2, flag: str = "a"):
        super().__init__()
        self.save_hyperparameters()
        self.lin = torch.nn.Linear(3, width)

    def training_step(self, batch, batch_idx):
        return self.lin(batch[0]).sum()

    def test_step(self, batch, batch_idx):
        self.lin(batch[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class ToyData(LightningDataModule):
    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(4, 3)), batch_size=2)

    test_dataloader = train_dataloader


def test_explicit_model_args_are_read_off_the_command_line():
    argv = [
        "--config",
        "c.yaml",
        "--model.init_args.flag=b",
        "--model.width",
        "3",
        "--model.class_path=x.Y",
        "--trainer.max_steps=1",
        "--model.init_args.drop_modality",
        "camera",
    ]
    assert _explicit_model_args(argv) == ["flag", "width", "drop_modality"]


def test_command_line_init_args_win_over_the_checkpoint(tmp_path):
    common = [
        "--model",
        f"{__name__}.Toy",
        "--data",
        f"{__name__}.ToyData",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={tmp_path}",
    ]  # the saved config.yaml goes there too
    run_lightning(["fit", *common, "--model.init_args.width=4", "--trainer.max_steps=1"])
    (ckpt,) = tmp_path.rglob("*.ckpt")
    # the architecture comes from the checkpoint (width 4, the YAML default 2 would not load) ...
    cli = run_lightning(["test", *common, f"--ckpt_path={ckpt}", "--model.init_args.flag=b"])
    assert cli.model.hparams.width == 4 and cli.model.lin.out_features == 4
    # ... and the explicit eval-time switch is honoured
    assert cli.model.hparams.flag == "b"
    cli = run_lightning(["test", *common, f"--ckpt_path={ckpt}"])
    assert cli.model.hparams.flag == "a"


# ------------------------------------------------------------------------------------ issue 23: check before import
def _fit_toy(tmp_path):
    common = [
        "--model",
        f"{__name__}.Toy",
        "--data",
        f"{__name__}.ToyData",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={tmp_path}",
    ]
    run_lightning(["fit", *common, "--trainer.max_steps=1"])
    (ckpt,) = tmp_path.rglob("*.ckpt")
    return common, ckpt


def _with_hparams(ckpt, path, **hparams):
    c = torch.load(ckpt, weights_only=True)
    c["hyper_parameters"].update(hparams)
    torch.save(c, path)
    return path


def test_a_checkpoint_naming_a_crafted_class_imports_nothing(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    (tmp_path / "evilpkg_ckpt.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass M: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    common, ckpt = _fit_toy(tmp_path / "run")
    evil = _with_hparams(ckpt, tmp_path / "evil.ckpt", _class_path="evilpkg_ckpt.M")
    with pytest.raises(UserError, match="a checkpoint of evilpkg_ckpt.M, but the config's model is .*Toy"):
        run_lightning(["test", *common, f"--ckpt_path={evil}"])
    assert not marker.exists() and "evilpkg_ckpt" not in sys.modules


def test_a_checkpoint_of_another_zoo_class_is_refused_not_swapped_in(tmp_path):
    common, ckpt = _fit_toy(tmp_path / "run")
    other = _with_hparams(ckpt, tmp_path / "emo.ckpt", _class_path="zoo.models.emo.module.EMOModule")
    with pytest.raises(UserError, match="EMOModule.*refusing to swap in another model class"):
        run_lightning(["test", *common, f"--ckpt_path={other}"])


def test_a_checkpoint_init_arg_naming_a_file_needs_the_command_line(tmp_path, monkeypatch):
    from zoo import hub

    monkeypatch.setitem(hub.EXTERNAL_INIT_ARGS, f"{__name__}.Toy", {"flag": "a file to open"})
    common, ckpt = _fit_toy(tmp_path / "run")
    crafted = _with_hparams(ckpt, tmp_path / "crafted.ckpt", flag="/etc/passwd")
    with pytest.raises(UserError, match="flag='/etc/passwd'.*--model.init_args.flag=VALUE"):
        run_lightning(["test", *common, f"--ckpt_path={crafted}"])
    cli = run_lightning(["test", *common, f"--ckpt_path={crafted}", "--model.init_args.flag=/etc/passwd"])
    assert cli.model.hparams.flag == "/etc/passwd"  # the user's own choice


def test_checkpoints_are_read_weights_only(tmp_path, monkeypatch):
    from lightning.pytorch import Trainer

    seen, test = {}, Trainer.test

    @functools.wraps(test)  # LightningCLI reads the signature
    def spy(self, *a, **kw):
        seen.update(kw)
        return test(self, *a, **kw)

    monkeypatch.setattr(Trainer, "test", spy)
    common, ckpt = _fit_toy(tmp_path / "run")
    run_lightning(["test", *common, f"--ckpt_path={ckpt}"])
    assert seen["weights_only"] is True and seen["ckpt_path"] == str(ckpt)
