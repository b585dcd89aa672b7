"""``zoo test|validate|predict --ckpt_path``: the checkpoint's hyper-parameters rebuild the trained model, but init
args set explicitly on the command line win (Lightning alone silently drops them: an eval-time switch such as CMT's
``drop_modality`` was ignored)."""
import torch
from lightning.pytorch import LightningDataModule, LightningModule
from torch.utils.data import DataLoader, TensorDataset

from zoo.cli import _explicit_model_args, run_lightning


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
    argv = ["--config", "c.yaml", "--model.init_args.flag=b", "--model.width", "3", "--model.class_path=x.Y",
            "--trainer.max_steps=1", "--model.init_args.drop_modality", "camera"]
    assert _explicit_model_args(argv) == ["flag", "width", "drop_modality"]


def test_command_line_init_args_win_over_the_checkpoint(tmp_path):
    common = ["--model", f"{__name__}.Toy", "--data", f"{__name__}.ToyData", "--trainer.logger=false",
              "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
              f"--trainer.default_root_dir={tmp_path}"]  # the saved config.yaml goes there too
    run_lightning(["fit", *common, "--model.init_args.width=4", "--trainer.max_steps=1"])
    (ckpt,) = tmp_path.rglob("*.ckpt")
    # the architecture comes from the checkpoint (width 4, the YAML default 2 would not load) ...
    cli = run_lightning(["test", *common, f"--ckpt_path={ckpt}", "--model.init_args.flag=b"])
    assert cli.model.hparams.width == 4 and cli.model.lin.out_features == 4
    # ... and the explicit eval-time switch is honoured
    assert cli.model.hparams.flag == "b"
    cli = run_lightning(["test", *common, f"--ckpt_path={ckpt}"])
    assert cli.model.hparams.flag == "a"
