"""zoo.callbacks.EMA and zoo.callbacks.HubExport on a small real fit."""

from __future__ import annotations

import json

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from torch.utils.data import DataLoader, TensorDataset

from zoo.callbacks import EMA, HubExport


class Linear(LightningModule):
    def __init__(self, dim: int = 4):
        super().__init__()
        self.save_hyperparameters()
        self.model = torch.nn.Linear(dim, 1)
        self.example_input_array = torch.zeros(2, dim)

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.mse_loss(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)


def _trainer(tmp_path, callbacks, steps=8):
    return Trainer(
        max_steps=steps,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )


def test_ema_weights_are_the_exponential_average(tmp_path):
    torch.manual_seed(0)
    decay = 0.5
    m = Linear()
    history = []

    from lightning.pytorch.callbacks import Callback

    class Snap(Callback):
        def on_train_batch_end(self, trainer, pl_module, *a):
            history.append(pl_module.model.weight.detach().clone())

    ema = EMA(decay=decay)
    _trainer(tmp_path, [Snap(), ema], steps=5).fit(m, _loader())
    # AveragedModel: first update copies, then avg = decay * avg + (1 - decay) * w
    expected = history[0]
    for w in history[1:]:
        expected = decay * expected + (1 - decay) * w
    torch.testing.assert_close(m.model.weight.detach(), expected)
    assert not torch.allclose(expected, history[-1])


def test_ema_rejects_a_bad_decay():
    with pytest.raises(ValueError, match="decay"):
        EMA(decay=1.5)


def test_hub_export_writes_a_loadable_folder(tmp_path):
    import zoo

    m = Linear()
    cb = HubExport(dirpath=str(tmp_path / "hub"), which="last")
    _trainer(tmp_path, [cb]).fit(m, _loader())
    cfg = json.loads((tmp_path / "hub" / "config.json").read_text())
    assert cfg["module"].endswith("test_callbacks.Linear") and cfg["init_args"] == {"dim": 4}
    loaded = zoo.load(f"local-dir:{tmp_path / 'hub'}", allowed_modules=[cfg["module"]])  # a class outside zoo.*
    torch.testing.assert_close(loaded.model.weight, m.model.weight)


class _Scores(LightningModule):
    """Logs a scripted validation score per epoch."""

    def __init__(self, scores):
        super().__init__()
        self.scores = scores
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.w - 1).pow(2).sum()

    def validation_step(self, batch, batch_idx):
        self.log("val/select", float(self.scores[self.current_epoch]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize(
    "mode,scores,best_epoch_latest,best_epoch_lightning",
    [
        ("max", [0.7, 0.7, 0.6, 0.7, 0.5], 3, 0),  # ties keep the later epoch (``>=``), Lightning keeps epoch 0
        ("max", [0.5, 0.7, 0.8, 0.6, 0.8], 4, 2),
        ("min", [0.3, 0.2, 0.2, 0.4, 0.9], 2, 1),
    ],
)
def test_latest_best_checkpoint_breaks_ties_towards_the_later_epoch(
    tmp_path, mode, scores, best_epoch_latest, best_epoch_lightning
):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from zoo.callbacks import LatestBestCheckpoint

    data = DataLoader(TensorDataset(torch.zeros(2, 1)), batch_size=2)
    for cls, expected in ((LatestBestCheckpoint, best_epoch_latest), (ModelCheckpoint, best_epoch_lightning)):
        ckpt = cls(dirpath=tmp_path / cls.__name__, monitor="val/select", mode=mode, save_top_k=1, filename="{epoch}")
        Trainer(
            max_epochs=len(scores),
            logger=False,
            callbacks=[ckpt],
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        ).fit(_Scores(scores), data, data)
        assert ckpt.best_model_path.endswith(f"epoch={expected}.ckpt"), (cls.__name__, ckpt.best_model_path)
        assert len(list((tmp_path / cls.__name__).glob("*.ckpt"))) == 1
