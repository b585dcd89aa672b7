"""zoo.callbacks.FusedKernels: the per-instance, reversible switch of a model's op modules (``impl``), and its log.

The fit-with-kernels-equals-fit-without test runs the kernels in Triton's interpreter, so it lives in
tests/ops/test_fused_kernels_fit.py (whose conftest provides the interpreter)."""

from __future__ import annotations

import logging

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from zoo.callbacks import FusedKernels
from zoo.callbacks.fused_kernels import apply_fused_kernels
from zoo.ops import GraphPropagation, LinearCrossEntropyLoss, RelationKLLoss


class Probe(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.model = nn.ModuleDict(
            {
                "enc": nn.Linear(4, 4),
                "head": nn.Linear(4, 3),
                "ce": LinearCrossEntropyLoss(),
                "prop": GraphPropagation(hops=2),
                "aux_ce": LinearCrossEntropyLoss(impl="auto"),  # set from YAML, as TinyMIM's relation_impl
            }
        )
        self.seen = []

    def training_step(self, batch, _):
        x, y = batch
        # what is switched on while training (the loss itself is computed without the op modules here: the
        # kernels are faked as runnable in this test, see below)
        self.seen.append((self.model["ce"].impl, self.model["aux_ce"].impl, self.model["prop"].impl))
        return nn.functional.cross_entropy(self.model["head"](self.model["enc"](x)), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(module, callbacks):
    data = TensorDataset(torch.randn(8, 4), torch.randint(0, 3, (8,)))
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    trainer.fit(module, DataLoader(data, batch_size=4))
    return trainer


def test_switches_during_fit_and_restores_after(monkeypatch, caplog):
    # Pretend the kernels can run on this CPU so that the switch happens; forward does not call the ops here.
    monkeypatch.setattr("zoo.ops._dispatch.kernel_error", lambda device: None)
    module = Probe()
    other = LinearCrossEntropyLoss()
    params_before = [id(p) for p in module.parameters()]
    with caplog.at_level(logging.INFO):
        _fit(module, [FusedKernels(ops="all")])
    assert module.seen and all(s == ("triton", "triton", "triton") for s in module.seen)
    # restored: each module's own setting is back (the YAML choice "auto" too), the same parameters
    assert module.model["ce"].impl == "reference" and module.model["aux_ce"].impl == "auto"
    assert module.model["prop"].impl == "reference"
    assert [id(p) for p in module.parameters()] == params_before
    assert other.impl == "reference"  # other instances are never touched
    text = caplog.text
    assert "fused_linear_cross_entropy: Triton kernel in 2 module(s): model.ce, model.aux_ce" in text
    assert "graph_propagate: Triton kernel in 1 module(s): model.prop" in text
    assert "relation_kl: not used by this model" in text


def test_keeps_reference_and_says_why_when_kernels_cannot_run(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    module = Probe()
    cb = FusedKernels(ops=["graph_propagate"])
    _fit(module, [cb])
    assert all(s == ("reference", "auto", "reference") for s in module.seen)
    switch = apply_fused_kernels(module, ["graph_propagate"], "cpu")
    assert len(switch.report) == 1 and "graph_propagate: reference kept in 1 module(s)" in switch.report[0]
    assert "TRITON_INTERPRET" in switch.report[0]
    with pytest.raises(RuntimeError, match="strict=True"):
        apply_fused_kernels(module, ["graph_propagate"], "cpu", strict=True)
    assert module.model["prop"].impl == "reference"


def test_ops_selection_and_bad_names(monkeypatch):
    monkeypatch.setattr("zoo.ops._dispatch.kernel_error", lambda device: None)
    net = nn.Sequential(RelationKLLoss(1.0, 1.0), GraphPropagation())
    switch = apply_fused_kernels(net, ["relation_kl"], "cuda")
    assert net[0].impl == "triton" and net[1].impl == "reference"
    switch.restore()
    assert net[0].impl == "reference"
    with pytest.raises(ValueError, match="unknown op"):
        FusedKernels(ops=["flash_attention"])
    with pytest.raises(ValueError, match="impl must be one of"):
        GraphPropagation(impl="cuda")  # a bad YAML value fails when the model is built


def test_two_switches_restore_in_either_order(monkeypatch):
    """The callback and a zoo_* strategy may both switch one model: whichever undoes first, the modules end with
    their own setting (the second switch leaves modules it finds on "triton" to the first)."""
    monkeypatch.setattr("zoo.ops._dispatch.kernel_error", lambda device: None)
    for first_restored in (0, 1):
        loss = LinearCrossEntropyLoss(impl="auto")
        net = nn.Sequential(loss)
        switches = [apply_fused_kernels(net, "all", "cuda"), apply_fused_kernels(net, "all", "cuda")]
        assert loss.impl == "triton" and switches[1].running == {"fused_linear_cross_entropy": ["0"]}
        switches[first_restored].restore()
        switches[1 - first_restored].restore()
        assert loss.impl == "auto"


def test_reaches_reliants_sparse_products(monkeypatch):
    """RELIANT's teachers and students run their sparse products through GraphPropagation modules, so the switch
    finds them (it reported "not used" while the model called the function directly)."""
    from zoo.models.reliant.module import GNNTeacherModule, ReliantModule

    monkeypatch.setattr("zoo.ops._dispatch.kernel_error", lambda device: None)
    teacher = GNNTeacherModule("sage.bail", {"in_features": 6}, propagate_impl="reference")
    for module, where in (
        (teacher, "model.propagate"),
        (ReliantModule("cpf.bail", {"in_features": 6, "num_nodes": 10}), "model.student.propagate"),
        (ReliantModule("graphakd.bail", {"in_features": 6, "num_nodes": 10}), "model.student.propagate"),
    ):
        switch = apply_fused_kernels(module, ops=["graph_propagate"], device="cuda")
        assert switch.running == {"graph_propagate": [where]}, switch.report
        switch.restore()
    assert teacher.model.propagate.impl == "reference"  # the YAML choice is back
