"""xDeepInt LightningModule: objective, combined FTRL optimisation and CTR metrics (Yan & Li, DLP-KDD 2020,
arXiv 2301.01089; paper §3.3-3.4, official xdeepint/experiment/criteo/nn1.py).

- Objective: sigmoid binary cross-entropy, **summed** over the batch (the reference estimator's loss; the FTRL
  learning rates below were tuned for it). ``loss_reduction="mean"`` is available for Adam users.
- Optimisation (``optimizer="ftrl"``, the paper's "combined optimization"):
  :class:`~zoo.models.xdeepint.optim.GroupFTRL` on the embedding table (a group = one feature value's row -> feature
  selection) and :class:`~zoo.models.xdeepint.optim.FTRLProximal` on the PIN matrices and the output layer
  (-> interaction selection), both stepped every batch (manual optimisation). ``optimizer="adam"`` trains
  everything with Adam.
- Metrics on the evaluation split: AUC (torchmetrics ``BinaryAUROC``), LogLoss and NCE = LogLoss / H(p), with p the
  evaluation split's click rate (so predicting the base rate gives NCE = 1), and the sparsity ratios of the
  reference's ``analysis.py``: share of embedding rows that are exactly zero (feature sparsity; the padding row is not
  counted) and share of PIN weights that are exactly zero (interaction sparsity).

The network's arguments come from a size of ``sizes.py`` (``criteo``, ``avazu``) updated with ``net``. Without
``net.vocab_sizes`` (the registry entries and paper configs) the embedding tables are sized from the data module's
vocabulary in ``setup`` and the sizes are written back into the hyper-parameters (``net.vocab_sizes``), so
checkpoints and exported folders rebuild the same network.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import BinaryAUROC

from zoo.errors import UserError, check_choice, check_positive, data_attribute
from zoo.models.xdeepint.model import XDeepInt
from zoo.models.xdeepint.optim import FTRLProximal, GroupFTRL
from zoo.models.xdeepint.sizes import DEFAULT, SIZES
from zoo.sizes import net_args

__all__ = ["XDeepIntModule", "CTRLoss", "sparsity"]


class CTRLoss(Metric):
    """LogLoss and normalised cross-entropy (NCE = LogLoss / entropy of the evaluation set's click rate)."""

    full_state_update = False

    def __init__(self, eps: float = 1e-7, **kw):
        super().__init__(**kw)
        self.eps = eps
        self.add_state("loss_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("positives", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor, target: torch.Tensor) -> None:
        p = probs.double().clamp(self.eps, 1 - self.eps)
        t = target.double()
        self.loss_sum += -(t * p.log() + (1 - t) * (1 - p).log()).sum()
        self.positives += t.sum()
        self.count += t.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        logloss = self.loss_sum / self.count
        ctr = (self.positives / self.count).clamp(self.eps, 1 - self.eps)
        entropy = -(ctr * ctr.log() + (1 - ctr) * (1 - ctr).log())
        return {"logloss": logloss.float(), "nce": (logloss / entropy).float()}


@torch.no_grad()
def sparsity(model: XDeepInt) -> dict[str, float]:
    """Feature sparsity (share of embedding rows with L2 norm exactly 0, padding row excluded) and interaction
    sparsity (share of exactly-zero PIN weights), as the reference's analysis.py."""
    out = {}
    if model.embedding is not None:
        rows = model.embedding.table.weight[1:]
        out["feature_sparsity"] = float((rows.norm(dim=1) == 0).float().mean()) if len(rows) else 0.0
    w = [layer.linear.weight for layer in model.pin]
    if w:
        out["interaction_sparsity"] = float(sum(int((x == 0).sum()) for x in w) / sum(x.numel() for x in w))
    return out


class XDeepIntModule(LightningModule):
    """xDeepInt for CTR prediction. ``forward(ids)`` -> click probabilities (B,).

    Args:
        size: ``criteo`` (the reference: F 38, K 16, L 4, h 16) or ``avazu`` (F 23); see ``sizes.py``.
        net: overrides of :class:`~zoo.models.xdeepint.model.XDeepInt`'s arguments: ``vocab_sizes`` (kept values per
            field; unset -> taken from the data module in ``setup``), ``num_fields``, ``embed_dim``, ``num_layers``,
            ``num_subspaces`` (F, K, L, h), ``activation``, ``dropout`` (of the PIN aggregation; reference None / 0).
        optimizer: ``"ftrl"`` (G-FTRL on embeddings + FTRL-Proximal on PIN/output, the paper) or ``"adam"``.
        gftrl_*: G-FTRL alpha, beta, lambda1, lambda2 (reference 0.02, 1, 10, 10).
        ftrl_*: FTRL-Proximal lr, lr_power, l1, l2, initial_accumulator (reference 0.02, -0.5, 0.1, 0.1, 0.1).
        adam_lr, adam_weight_decay: for ``optimizer="adam"``.
        loss_reduction: ``"sum"`` (reference) or ``"mean"``.
        sparse_embedding_grad: sparse gradients for the embedding table under FTRL (same result, faster on large
            vocabularies). Under DDP (``ddp``, ``ddp_spawn``, ``zoo_ddp``, ...) the gradients are dense whatever this
            says: DDP all-reduces dense buckets, and G-FTRL gives the same result on dense gradients (a row whose
            gradient is zero does not move). FSDP / DeepSpeed shard the table into flat pieces that G-FTRL's row groups
            cannot work on: with ``optimizer="ftrl"`` they are refused in ``setup``.
        auroc_thresholds: None = exact AUC (keeps all scores of the evaluation split); an int = binned AUC with
            constant memory (for the full 9M-row Criteo test split on small machines).
    """

    def __init__(
        self,
        size: str = DEFAULT,
        net: dict[str, Any] | None = None,
        optimizer: str = "ftrl",
        gftrl_alpha: float = 0.02,
        gftrl_beta: float = 1.0,
        gftrl_lambda1: float = 10.0,
        gftrl_lambda2: float = 10.0,
        ftrl_lr: float = 0.02,
        ftrl_lr_power: float = -0.5,
        ftrl_l1: float = 0.1,
        ftrl_l2: float = 0.1,
        ftrl_initial_accumulator: float = 0.1,
        adam_lr: float = 1e-3,
        adam_weight_decay: float = 0.0,
        loss_reduction: str = "sum",
        sparse_embedding_grad: bool = True,
        auroc_thresholds: int | None = None,
    ):
        super().__init__()
        where = "XDeepIntModule"
        check_choice("optimizer", optimizer, ("ftrl", "adam"), where=where)  # ftrl: the paper's G-FTRL + FTRL-Proximal
        check_choice("loss_reduction", loss_reduction, ("sum", "mean"), where=where)
        args = net_args(SIZES, size, net, where=where, allowed=set(inspect.signature(XDeepInt).parameters))
        args.setdefault("vocab_sizes", None)
        for name in ("num_fields", "embed_dim", "num_subspaces"):
            check_positive(f"net.{name}", args[name], where=where)
        check_positive("net.num_layers", args["num_layers"], minimum=0, where=where)
        if args["embed_dim"] % args["num_subspaces"]:
            raise UserError(
                f"{where}: net.num_subspaces={args['num_subspaces']} must divide net.embed_dim={args['embed_dim']} "
                "(each subspace takes embed_dim / num_subspaces coordinates); e.g. embed_dim 16 with num_subspaces 16."
            )
        vocab_sizes = args["vocab_sizes"]
        if vocab_sizes is not None and len(vocab_sizes) != args["num_fields"]:
            raise UserError(
                f"{where}: net.vocab_sizes has {len(vocab_sizes)} entries but net.num_fields={args['num_fields']}; "
                "give one size per field, or leave net.vocab_sizes unset to take them from the data module."
            )
        self.save_hyperparameters()
        self.automatic_optimization = False  # two optimisers stepped on every batch
        self.net_args = args
        self.model = XDeepInt(**args)
        self._example_input(vocab_sizes if vocab_sizes is not None else [0] * args["num_fields"])
        self.metrics = nn.ModuleDict(
            {
                s: nn.ModuleDict({"auc": BinaryAUROC(thresholds=auroc_thresholds), "loss": CTRLoss()})
                for s in ("val", "test")
            }
        )

    # -- network ------------------------------------------------------------------------------------------------
    def _example_input(self, vocab_sizes) -> None:
        g = torch.Generator().manual_seed(0)
        self.example_input_array = torch.stack([torch.randint(0, v + 1, (4,), generator=g) for v in vocab_sizes], 1)

    def setup(self, stage: str) -> None:
        sizes = data_attribute(self, "vocab_sizes")
        data_sizes = list(sizes) if sizes is not None else None
        num_fields = self.net_args["num_fields"]
        if data_sizes is not None and len(data_sizes) != num_fields:
            raise UserError(
                f"the data has {len(data_sizes)} fields but XDeepIntModule was built with "
                f"num_fields={num_fields}; set model.init_args.net.num_fields={len(data_sizes)}"
            )
        if self.model.embedding is None:
            if data_sizes is None:
                raise UserError(
                    "XDeepIntModule without net.vocab_sizes needs a data module with `vocab_sizes` "
                    "(e.g. CTRDataModule) or explicit model.init_args.net.vocab_sizes=[...]"
                )
            self.model.build_embedding(data_sizes)
            self.net_args["vocab_sizes"] = data_sizes
            # saved in checkpoints / exported configs, so they rebuild the same tables
            self.hparams["net"] = {**(self.hparams.get("net") or {}), "vocab_sizes": data_sizes}
            self._example_input(data_sizes)
        elif data_sizes is not None and data_sizes != self.model.embedding.vocab_sizes:
            ours = self.model.embedding.vocab_sizes
            f = next(i for i, (a, b) in enumerate(zip(ours, data_sizes)) if a != b)
            raise UserError(
                f"XDeepIntModule's vocab_sizes differ from the data module's (field {f}: {ours[f]} values "
                f"in the model, {data_sizes[f]} in the data): the vocabulary was built with other "
                "preprocessing options or data; leave net.vocab_sizes unset to size the model from the data"
            )
        # decided before the strategy wraps the model: DDP fixes at wrap time which parameters have sparse gradients
        self.model.embedding.table.sparse = self._sparse_embedding_grad()

    def _sparse_embedding_grad(self) -> bool:
        """Sparse embedding gradients only for G-FTRL on one device; dense under DDP (see ``sparse_embedding_grad``).
        Raises for strategies that shard the table (FSDP, DeepSpeed, ...) with G-FTRL."""
        hp = self.hparams
        if hp.optimizer != "ftrl":
            return False
        strategy = getattr(self._trainer, "strategy", None) if self._trainer is not None else None
        from lightning.pytorch.strategies import DDPStrategy, ParallelStrategy

        if isinstance(strategy, DDPStrategy):
            return False
        if isinstance(strategy, ParallelStrategy):
            raise UserError(
                f"XDeepIntModule(optimizer='ftrl') cannot run under {type(strategy).__name__}: it shards the embedding "
                "table, and G-FTRL's groups are whole rows. Use trainer.strategy auto (one device), ddp, ddp_spawn or "
                "zoo_ddp, or optimizer='adam'."
            )
        return bool(hp.sparse_embedding_grad)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(ids))

    # -- objective ----------------------------------------------------------------------------------------------
    def _loss(self, logits, y):
        return F.binary_cross_entropy_with_logits(logits, y, reduction=self.hparams.loss_reduction)

    def training_step(self, batch, batch_idx):
        ids, y = batch
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        for opt in opts:
            opt.zero_grad()
        loss = self._loss(self.model(ids), y)
        self.manual_backward(loss)
        for opt in opts:
            opt.step()
        per_example = loss / len(y) if self.hparams.loss_reduction == "sum" else loss
        self.log("train/logloss", per_example, prog_bar=True)
        return loss

    def _eval_step(self, stage, batch):
        ids, y = batch
        probs = self(ids)
        m = self.metrics[stage]
        m["auc"].update(probs, y.long())
        m["loss"].update(probs, y)

    def validation_step(self, batch, batch_idx):
        self._eval_step("val", batch)

    def test_step(self, batch, batch_idx):
        self._eval_step("test", batch)

    def _eval_epoch_end(self, stage):
        m = self.metrics[stage]
        out = {"auc": m["auc"].compute(), **m["loss"].compute()}
        out.update({k: torch.tensor(v) for k, v in sparsity(self.model).items()})
        self.log_dict({f"{stage}/{k}": v for k, v in out.items()}, prog_bar=stage == "val")
        m["auc"].reset()
        m["loss"].reset()

    def on_validation_epoch_end(self):
        self._eval_epoch_end("val")

    def on_test_epoch_end(self):
        self._eval_epoch_end("test")

    # -- optimisers ---------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        if self.model.embedding is None:
            raise RuntimeError("the embedding tables are not built yet (vocab_sizes unknown); see setup()")
        self.model.embedding.table.sparse = self._sparse_embedding_grad()  # as set in setup (a strategy may wrap)
        if hp.optimizer == "adam":
            return torch.optim.Adam(self.model.parameters(), lr=hp.adam_lr, weight_decay=hp.adam_weight_decay)
        emb = GroupFTRL(
            [self.model.embedding.table.weight],
            alpha=hp.gftrl_alpha,
            beta=hp.gftrl_beta,
            lambda1=hp.gftrl_lambda1,
            lambda2=hp.gftrl_lambda2,
        )
        rest = [p for n, p in self.model.named_parameters() if not n.startswith("embedding.")]
        pin = FTRLProximal(
            rest,
            lr=hp.ftrl_lr,
            lr_power=hp.ftrl_lr_power,
            l1=hp.ftrl_l1,
            l2=hp.ftrl_l2,
            initial_accumulator=hp.ftrl_initial_accumulator,
        )
        return [emb, pin]

    def sparsity(self) -> dict[str, float]:
        return sparsity(self.model)
