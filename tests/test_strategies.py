"""zoo.strategies: registration with Lightning's StrategyRegistry, FSDP block policies, and a 2-process DDP fit on
the CPU (gloo) through the zoo CLI with ``trainer.strategy: zoo_ddp`` that ends at the same weights as a 1-process
fit with the doubled batch."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import lightning.pytorch as pl
import pytest
import torch

import zoo.strategies as zs

# A tiny model and data module, written to a temporary folder so the CLI (and DDP's second process) can import
# them by class path. The head's loss is a zoo.ops module, so zoo_ddp switches it to the Triton kernel (run here in
# Triton's interpreter: TRITON_INTERPRET=1 in the DDP processes) while the 1-process baseline runs the reference.
PROBE = textwrap.dedent("""
    import lightning.pytorch as pl
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    from zoo.ops import LinearCrossEntropyLoss


    class TinyClassifier(pl.LightningModule):
        def __init__(self, out: str = "", lr: float = 0.1):
            super().__init__()
            self.save_hyperparameters()
            g = torch.Generator().manual_seed(0)
            self.model = nn.ModuleDict({"enc": nn.Linear(8, 16), "head": nn.Linear(16, 5)})
            for p in self.model.parameters():
                nn.init.normal_(p, std=0.3, generator=g)
            self.loss = LinearCrossEntropyLoss()
            self.impls = set()

        def training_step(self, batch, _):
            x, y = batch
            self.impls.add(self.loss.impl)
            h = self.model["enc"](x).tanh()
            return self.loss(h, self.model["head"].weight, self.model["head"].bias, y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)

        def on_fit_end(self):
            if self.trainer.is_global_zero and self.hparams.out:
                torch.save({"state": self.model.state_dict(), "impls": sorted(self.impls),
                            "world": self.trainer.world_size}, self.hparams.out)


    class TinyData(pl.LightningDataModule):
        def __init__(self, batch_size: int = 8):
            super().__init__()
            g = torch.Generator().manual_seed(1)
            self.data = TensorDataset(torch.randn(32, 8, generator=g), torch.randint(0, 5, (32,), generator=g))
            self.batch_size = batch_size

        def train_dataloader(self):
            # Rank r takes samples r, r + world, ... in order (the trainer's own sampler shuffles in training), so
            # the two ranks' batches together are the 1-process batch of twice the size.
            world, rank = self.trainer.world_size, self.trainer.global_rank
            sampler = DistributedSampler(self.data, num_replicas=world, rank=rank, shuffle=False)
            return DataLoader(self.data, batch_size=self.batch_size, sampler=sampler)
""")


def test_registered_names_build_zoo_strategies():
    names = pl.strategies.StrategyRegistry.available_strategies()
    for name in (
        "zoo_ddp",
        "zoo_ddp_spawn",
        "zoo_ddp_find_unused_parameters_true",
        "zoo_fsdp",
        "zoo_fsdp_checkpointed",
    ):
        assert name in names
    s = pl.strategies.StrategyRegistry.get("zoo_ddp_spawn")
    assert isinstance(s, zs.ZooDDPStrategy) and isinstance(s, pl.strategies.DDPStrategy)
    assert s._start_method == "spawn" and s._ddp_kwargs["gradient_as_bucket_view"] is True
    unused = pl.strategies.StrategyRegistry.get("zoo_ddp_find_unused_parameters_true")
    assert isinstance(unused, zs.ZooDDPStrategy) and unused._ddp_kwargs["find_unused_parameters"] is True
    fsdp = pl.strategies.StrategyRegistry.get("zoo_fsdp_checkpointed")
    assert isinstance(fsdp, pl.strategies.FSDPStrategy) and fsdp.checkpoint_blocks
    trainer = pl.Trainer(strategy="zoo_ddp", accelerator="cpu", devices=1, logger=False)
    assert isinstance(trainer.strategy, zs.ZooDDPStrategy)
    zs.register()  # idempotent


def test_fsdp_blocks_are_read_from_the_model_and_skip_unknown_names():
    import timm
    from timm.models.vision_transformer import Block
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    from zoo.models.tinymim.model import TinyMIMViT

    vit = TinyMIMViT(img_size=32, patch_size=8, embed_dim=24, depth=2, num_heads=2, last_heads=4)
    assert zs.fsdp_block_classes(vit) == {Block}  # declared by the model (fsdp_blocks)
    wrapped = torch.nn.ModuleDict({"model": vit, "loss": torch.nn.Identity()})  # found anywhere in the tree
    assert zs.fsdp_block_classes(wrapped) == {Block}
    # a model that declares nothing: the strategy's block_classes name its blocks (class name or import path);
    # names that no module of the model has are skipped
    plain = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2, img_size=32, num_classes=3)
    assert zs.fsdp_block_classes(plain) == set()
    assert zs.fsdp_block_classes(
        plain, ["timm.models.vision_transformer.Block", "NoSuchBlock", "zoo.models.not_written_yet.Block"]
    ) == {Block}
    assert zs.fsdp_block_classes(torch.nn.Linear(2, 2)) == set()
    strategy = zs.ZooFSDPStrategy(checkpoint_blocks=True)
    assert strategy.configure_block_policies(vit) == {Block}
    assert isinstance(strategy.kwargs["auto_wrap_policy"], ModuleWrapPolicy)
    assert isinstance(strategy._activation_checkpointing_kwargs["auto_wrap_policy"], ModuleWrapPolicy)
    assert zs.ZooFSDPStrategy(block_classes=["Block"]).configure_block_policies(plain) == {Block}
    # an explicit policy wins over the declared blocks
    explicit = zs.ZooFSDPStrategy(auto_wrap_policy={torch.nn.Linear})
    explicit.configure_block_policies(vit)
    assert explicit.kwargs["auto_wrap_policy"]._module_classes == {torch.nn.Linear}
    bad = torch.nn.Linear(2, 2)
    bad.fsdp_blocks = (3,)
    with pytest.raises(TypeError, match="fsdp_blocks"):
        zs.fsdp_block_classes(bad)


def test_zoo_models_declare_their_blocks():
    """Each zoo network with repeated blocks names them: EMO's iRMB, TinyMIM's ViT blocks, MMC's BERT layers."""
    from timm.models.vision_transformer import Block

    from zoo.models.emo.model import EMO, iRMB
    from zoo.models.mmc_coref.model import CorefModel, build_encoder
    from zoo.models.tinymim.model import TinyMIMStarViT

    assert zs.fsdp_block_classes(
        EMO(depths=[1, 1, 1, 1], embed_dims=[8, 8, 8, 8], dim_heads=[4, 4, 4, 4], stem_dim=8, num_classes=2)
    ) == {iRMB}
    assert zs.fsdp_block_classes(
        TinyMIMStarViT(img_size=32, patch_size=8, embed_dim=24, depth=1, num_heads=2, neck_dim=32, num_classes=2)
    ) == {Block}
    encoder = build_encoder(
        {
            "model_type": "bert",
            "vocab_size": 50,
            "hidden_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 32,
        }
    )
    coref = CorefModel(encoder, hidden_size=16, feature_emb_size=4, ffnn_size=8)
    assert {c.__name__ for c in zs.fsdp_block_classes(coref)} == {"BertLayer"}


def test_ddp_two_processes_equal_one_process_with_doubled_batch(tmp_path, monkeypatch):
    (tmp_path / "zoo_ddp_probe.py").write_text(PROBE)
    out = tmp_path / "ddp.pt"
    config = tmp_path / "ddp.yaml"
    config.write_text(
        textwrap.dedent(f"""
        seed_everything: 0
        trainer:
          accelerator: cpu
          devices: 2
          strategy: zoo_ddp
          use_distributed_sampler: false
          max_epochs: 1
          logger: false
          enable_checkpointing: false
          enable_progress_bar: false
          enable_model_summary: false
          default_root_dir: {tmp_path / "ddp_run"}
        model:
          class_path: zoo_ddp_probe.TinyClassifier
          init_args: {{out: {out}}}
        data:
          class_path: zoo_ddp_probe.TinyData
          init_args: {{batch_size: 8}}
    """)
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "TRITON_INTERPRET": "1",
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "zoo.cli", "fit", "--config", str(config)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "fused_linear_cross_entropy: Triton kernel in 1 module(s): loss" in proc.stdout + proc.stderr
    ddp = torch.load(out, weights_only=True)
    assert ddp["world"] == 2 and ddp["impls"] == ["triton"]

    monkeypatch.syspath_prepend(str(tmp_path))
    import zoo_ddp_probe

    pl.seed_everything(0)
    single = zoo_ddp_probe.TinyClassifier()
    before = {k: v.clone() for k, v in single.model.state_dict().items()}
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        use_distributed_sampler=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path / "one",
    )
    trainer.fit(single, zoo_ddp_probe.TinyData(batch_size=16))
    assert single.impls == {"reference"} and trainer.global_step == 2
    for name, value in single.model.state_dict().items():
        assert not torch.allclose(value, before[name])  # it trained
        torch.testing.assert_close(ddp["state"][name], value, atol=1e-6, rtol=1e-5, msg=lambda m: f"{name}: {m}")
