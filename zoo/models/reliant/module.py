"""RELIANT LightningModules (Dong et al., SDM 2023, arXiv 2301.01150; official code yushundong/RELIANT).

- :class:`GNNTeacherModule`: trains a GCN / GraphSAGE teacher on a fairness graph (cross-entropy on the training
  nodes, Adam, full batch) and exports it like any zoo model.
- :class:`ReliantModule`: loads a trained teacher (registry name, ``local-dir:PATH`` or a folder) lazily in ``setup``,
  computes its soft labels / logits / embeddings once, and distils them into a CPF (PLP + MLP) or GraphAKD (SGC)
  student. With ``proxy=0`` it is the plain host KD; with ``proxy=2`` RELIANT's learnable proxy and the bias penalty
  are added (``proxy=1``: the fixed one-hot sensitive attribute as the proxy). Spec §3.3-3.5 of
  the official yushundong/RELIANT code. One ``training_step`` is one full-batch epoch with manual optimisation:

  1. student step (student optimiser): input = features with the proxy's node-mean in the proxy slot;
     L = L_KD + alpha * R(I)       (R = R_SP or R_EO, the Legendre-surrogate group gap, eq. of §3.3)
  2. proxy step (proxy optimiser, ``proxy=2``): input = features with the per-node proxy; L = -alpha * R(I)
     (the proxy is pushed to the values that maximise the student's group disparity).

  CPF: L_KD = ||P_student - P_teacher||_F over non-training nodes, I = non-training nodes, alpha = 1e3.
  GraphAKD: L_KD = CE(train) + 0.5 (CE of the logit discriminator's class head + adversarial BCE) + L1(logits)/N
  (the teacher side of the logit terms is its log-probabilities, as the official knowledge file stores them) +
  local/global embedding adversarial terms; a discriminator step first; I = training nodes (student step) and all
  nodes (proxy step); alpha = 100 for SP, 10 for EO; the student's learning rate is lr / 10.

Metrics (validation and test masks): accuracy, AUC (torchmetrics), ΔSP and ΔEO from torchmetrics'
``BinaryGroupStatRates`` (see :class:`FairnessGaps`: torchmetrics' ``BinaryFairness`` reports the *ratio* min/max of the
group rates, not the absolute difference RELIANT reports, so it is not used for the numbers). ``val/select`` is the
model-selection score of the official code: validation accuracy (CPF) or minus the validation loss (GraphAKD).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics.classification import BinaryGroupStatRates

from zoo.errors import UserError, check_choice, check_fits_data, check_positive
from zoo.models.reliant.model import (
    SAGE_AGGREGATORS,
    TEACHER_EMBEDDINGS,
    FairStudent,
    GlobalEmbDiscriminator,
    LocalEmbDiscriminator,
    LogitsDiscriminator,
    PLPStudent,
    SGCStudent,
    bias_penalty,
    build_teacher,
    teacher_embedding,
)
from zoo.models.reliant.sizes import DEFAULT, SIZES, TEACHER_DEFAULT, TEACHER_SIZES
from zoo.sizes import net_args

log = logging.getLogger(__name__)


class FairnessGaps(BinaryGroupStatRates):
    """ΔSP = |P(ŷ=1|s=0) - P(ŷ=1|s=1)| and ΔEO = |P(ŷ=1|y=1,s=0) - P(ŷ=1|y=1,s=1)| (paper §3), from torchmetrics'
    per-group [tp, fp, tn, fn] rates (each normalised by the group size): positive rate = tp + fp, TPR = tp/(tp+fn)."""

    def __init__(self, **kw):
        super().__init__(num_groups=2, **kw)

    def compute(self):
        r = super().compute()
        r0, r1 = r["group_0"], r["group_1"]
        sp = ((r0[0] + r0[1]) - (r1[0] + r1[1])).abs()
        eo = (r0[0] / (r0[0] + r0[3]) - r1[0] / (r1[0] + r1[3])).abs()
        return {"sp": sp, "eo": eo}


def _check_rates(where: str, **values) -> None:
    """Dropout probabilities in [0, 1), learning rates / weight decay / alpha >= 0 (``None``: the default)."""
    for name, value in values.items():
        if value is None:
            continue
        if "drop" in name and not 0 <= value < 1:
            raise UserError(
                f"{where}: {name} must be in [0, 1), got {value!r}; set model.init_args.{name} to a "
                "dropout probability."
            )
        if "drop" not in name and value < 0:
            raise UserError(
                f"{where}: {name} must be >= 0, got {value!r}; set model.init_args.{name} to a non-negative value."
            )


def _ring(n: int) -> torch.Tensor:
    i = torch.arange(n)
    return torch.stack([torch.cat([i, (i + 1) % n]), torch.cat([(i + 1) % n, i])])


class _FairGraphEval(LightningModule):
    """Shared evaluation: accuracy, AUC, ΔSP, ΔEO on a node mask, logged as ``<stage>/<name>``."""

    def _make_metrics(self):
        from torchmetrics.classification import BinaryAccuracy, BinaryAUROC

        self.metrics = nn.ModuleDict(
            {
                f"{st}_{k}": m
                for st in ("val", "test")
                for k, m in (("acc", BinaryAccuracy()), ("auc", BinaryAUROC()), ("fair", FairnessGaps()))
            }
        )

    def _evaluate(self, logits, data, stage: str):
        mask = data.val_mask if stage == "val" else data.test_mask
        prob1 = logits.softmax(-1)[:, 1][mask]
        y, s = data.y[mask], data.sens[mask]
        pred = (logits.argmax(-1)[mask]).long()
        out = {}
        for k in ("acc", "auc", "fair"):
            m = self.metrics[f"{stage}_{k}"]
            m.reset()
            if k == "fair":
                m.update(pred, y, s)
                out.update(m.compute())
            else:
                m.update(prob1, y)
                out[k] = m.compute()
        out["loss"] = F.cross_entropy(logits[mask], data.y[mask])
        # a one-class predictor has ΔSP = ΔEO = 0, which says nothing about fairness: the results count such runs
        out["one_class"] = (pred.unique().numel() == 1) * torch.ones((), device=logits.device)
        # the share of nodes given the most-predicted class (1: one class; near 1: almost constant)
        out["pred_share"] = torch.bincount(pred, minlength=logits.shape[-1]).max() / max(pred.numel(), 1)
        for k, v in out.items():
            self.log(f"{stage}/{k}", v, batch_size=1, prog_bar=k in ("acc", "sp"))
        return out


# =========================================================================================== teacher
# CPF's train.conf.yaml weight decay per teacher arch (the default of ``GNNTeacherModule(weight_decay=None)``)
_TEACHER_WEIGHT_DECAY = {"gcn": 1e-3, "sage": 5e-4}


class GNNTeacherModule(_FairGraphEval):
    """A GCN (3 x 64) or GraphSAGE (4 x 128) teacher trained with cross-entropy on the training nodes.

    Args: size (``sizes.TEACHER_SIZES``: ``<arch>.<graph>``, e.g. ``gcn.bail``), net (overrides of its ``arch`` ("gcn"
    | "sage"), ``in_features``, ``num_classes``, ``hidden``, ``num_layers``, ``dropout``), lr, weight_decay (None: CPF's
    train.conf: GCN 0.01 / 1e-3, SAGE 0.01 / 5e-4), propagate_impl (the
    ``zoo.ops.graph_propagate`` implementation of the sparse products: "auto" | "triton" | "reference";
    ``zoo.callbacks.FusedKernels`` switches it for a run), sage_aggregator ("dgl_gcn", default: the release's DGL
    "gcn" aggregator on its graph with self-loops, the node counted twice; "mean": zoo's earlier mean over the
    neighbours and the node, see :class:`SAGETeacher`)."""

    def __init__(
        self,
        size: str = TEACHER_DEFAULT,
        net: dict[str, Any] | None = None,
        lr: float = 0.01,
        weight_decay: float | None = None,
        example_nodes: int = 8,
        propagate_impl: str = "auto",
        sage_aggregator: str = "dgl_gcn",
    ):
        super().__init__()
        self.save_hyperparameters()
        where = "GNNTeacherModule"
        check_choice("sage_aggregator", sage_aggregator, SAGE_AGGREGATORS, where=where)
        args = net_args(TEACHER_SIZES, size, net, where=where, allowed=set(TEACHER_SIZES[TEACHER_DEFAULT]))
        check_choice("net.arch", args["arch"], _TEACHER_WEIGHT_DECAY, where=where)
        check_positive("net.in_features", args["in_features"], where=where)
        check_positive("net.num_classes", args["num_classes"], minimum=2, where=where)
        check_positive("net.hidden", args["hidden"], where=where)
        check_positive("net.num_layers", args["num_layers"], minimum=2, where=where)
        _check_rates(where, dropout=args["dropout"], lr=lr, weight_decay=weight_decay)
        self.net_args = args
        self.weight_decay = _TEACHER_WEIGHT_DECAY[args["arch"]] if weight_decay is None else weight_decay
        extra = {"aggregator": sage_aggregator} if args["arch"] == "sage" else {}
        self.model = build_teacher(**args, propagate_impl=propagate_impl, **extra)
        self._make_metrics()
        self.example_input_array = (torch.randn(example_nodes, args["in_features"]), _ring(example_nodes))

    def setup(self, stage: str | None = None):
        # the first layer is sized by in_features and the head by num_classes: refuse another graph before a step
        args = self.net_args
        check_fits_data(self, "net.in_features", args["in_features"], "num_features", what="features per node")
        check_fits_data(self, "net.num_classes", args["num_classes"], "num_classes", exact=False)

    def forward(self, x, edge_index):
        return self.model(x, edge_index)

    def training_step(self, data, batch_idx):
        logits = self.model(data.x, data.edge_index)
        loss = F.cross_entropy(logits[data.train_mask], data.y[data.train_mask])
        self.log("train/loss", loss, batch_size=1, prog_bar=True)
        return loss

    def validation_step(self, data, batch_idx):
        out = self._evaluate(self.model(data.x, data.edge_index), data, "val")
        self.log("val/select", out["acc"], batch_size=1)

    def test_step(self, data, batch_idx):
        self._evaluate(self.model(data.x, data.edge_index), data, "test")

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.hparams.lr, weight_decay=self.weight_decay)

    @torch.no_grad()
    def knowledge(self, x, edge_index, embedding: str = "first_layer"):
        """Teacher outputs used for distillation (eval mode): logits (N, C) and the embedding GraphAKD distils
        (``"first_layer"``, the release's ``emb``, or ``"penultimate"``; :func:`teacher_embedding`)."""
        was = self.training
        self.eval()
        logits = self.model(x, edge_index)
        emb = teacher_embedding(self.model, x, edge_index, embedding)
        self.train(was)
        return logits, emb


def fit_teacher(arch: str, data, epochs: int = 200, seed: int = 0) -> GNNTeacherModule:
    """A teacher trained here, full batch, keeping the best-validation-accuracy weights (ties to the later epoch, as
    the release's ``if acc_val >= best``), for demos and tests, where no exported teacher exists. Same objective and
    optimiser as GNNTeacherModule under a Trainer; ``seed`` seeds its initialisation and dropout (the caller's random
    state is left as it was)."""
    import copy

    log.info("RELIANT: training a %s teacher for %d epochs (teacher='fit:%s')", arch, epochs, arch)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        # the paper's teacher of this arch (its bail size) on this graph's features and classes
        net = {"in_features": data.num_features, "num_classes": int(data.y.max()) + 1}
        t = GNNTeacherModule(f"{arch}.bail", net).to(data.x.device)
        opt = t.configure_optimizers()
        best, state = -1.0, None
        for _ in range(epochs):
            t.train()
            loss = F.cross_entropy(t(data.x, data.edge_index)[data.train_mask], data.y[data.train_mask])
            opt.zero_grad()
            loss.backward()
            opt.step()
            t.eval()
            with torch.no_grad():
                acc = (t(data.x, data.edge_index).argmax(-1) == data.y)[data.val_mask].float().mean().item()
            if acc >= best:
                best, state = acc, copy.deepcopy(t.model.state_dict())
        t.model.load_state_dict(state)
    return t.eval()


# =========================================================================================== RELIANT
class ReliantModule(_FairGraphEval):
    """RELIANT fair distillation of a GNN teacher into a CPF or GraphAKD student (see the module docstring).

    Args:
        size: ``<framework>.<graph>`` of ``sizes.SIZES`` (``cpf.bail``, ``graphakd.german``, ...): the framework
            (``cpf``: PLP + MLP student; ``graphakd``: SGC student with adversarial KD), the graph's sizes and the
            framework's student architecture.
        net: overrides of the size's student arguments: ``in_features``, ``num_nodes``, ``num_classes`` (the graph's
            sizes; the CPF student has one gate per node) and, for CPF, ``num_layers``, ``emb_dim``, ``mlp_layers``,
            ``feat_drop``, ``attn_drop`` (pre.conf.yaml: 10, 64, 2, 0.8, 0.2); for GraphAKD ``hidden``, ``sgc_k``,
            ``dropout`` (64, 1, 0.5).
        teacher: what ``zoo.load`` accepts (registry name, ``local-dir:PATH``, a folder) or the ``.ckpt`` a teacher
            fit wrote, holding a :class:`GNNTeacherModule`; loaded in ``setup``. ``None``: teacher outputs must be
            given with :meth:`set_teacher_outputs` before training.
        metric: "sp" or "eo", the targeted bias (R_SP or R_EO).
        proxy: 0 plain KD (no proxy, no penalty); 1 fixed one-hot sensitive proxy; 2 learnable proxy (RELIANT).
        alpha: penalty weight; None -> 1e3 (CPF), 100 (GraphAKD, SP) or 10 (GraphAKD, EO).
        lr, weight_decay: None -> CPF 0.01 / 0.01; GraphAKD 1e-3 / 5e-4 (student uses lr / 10, proxy and
            discriminators lr).
        teacher_epochs: epochs of the quick teacher trained in ``setup`` when ``teacher="fit:gcn|sage"`` (demos).
        propagate_impl: the student's ``zoo.ops.graph_propagate`` implementation ("auto" | "triton" | "reference");
            ``zoo.callbacks.FusedKernels`` switches it for a run.
        teacher_embedding: the teacher embedding GraphAKD's discriminators see: "first_layer" (default, the
            release's ``emb``: the first layer's output, train_dgl.py saves it) or "penultimate" (zoo's earlier).
        local_self_loops: GraphAKD's local discriminator scores the self-loop edges too (default: the release's
            graph holds them); False = the graph's edges only (zoo's earlier).
        teacher_seed: the seed of a ``fit:`` teacher (default 0: one teacher for every run); None: the run's seed
            (``torch.initial_seed()`` when ``setup`` runs, i.e. ``seed_everything``), so each seed distils its own
            teacher and two arms run with the same seed distil the same one.
        select_best: keep the student of the best validation score ``val/select`` during ``fit``, as the release's
            loops do (CPF ``distill_dgl.py``: validation accuracy, ties to the later epoch, ``if acc_val >= best``;
            GraphAKD ``stu-gcn/train.py``: validation loss, ties to the earlier, ``if val_loss < best_val_loss``), and
            load it (with its proxy) back when training ends, so that ``trainer.test(model)`` after ``fit`` tests the
            selected student, and rewrite the checkpoint callbacks' ``last.ckpt`` with it (``save_last``: testing or
            exporting that file gives the same student); ``val/selected_epoch`` logs the epoch kept. False (default):
            the weights of the last
            epoch stay (the paper configs select through their checkpoint callback and test its best checkpoint).
    """

    @classmethod
    def bench_init_args(cls, init_args: dict, demo_init_args: dict) -> tuple[dict, str]:
        """``zoo bench --train``: the teacher is an input of the training step and must fit the demo graph; the
        demo's ``teacher: fit:gcn`` trains one in ``setup`` (outside the timed steps)."""
        teacher = str(demo_init_args.get("teacher", ""))
        if not teacher.startswith("fit:") or init_args.get("teacher") == teacher:
            return {}, ""
        args = {k: demo_init_args[k] for k in ("teacher", "teacher_epochs") if k in demo_init_args}
        return args, f"teacher {teacher} trained in setup on the demo graph"

    def __init__(
        self,
        size: str = DEFAULT,
        net: dict[str, Any] | None = None,
        teacher: str | None = None,
        metric: str = "sp",
        proxy: int = 2,
        alpha: float | None = None,
        lr: float | None = None,
        weight_decay: float | None = None,
        teacher_epochs: int = 200,
        propagate_impl: str = "auto",
        teacher_embedding: str = "first_layer",
        local_self_loops: bool = True,
        teacher_seed: int | None = 0,
        select_best: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        where = "ReliantModule"
        check_choice("teacher_embedding", teacher_embedding, TEACHER_EMBEDDINGS, where=where)
        # the size names the framework; net overrides the graph's sizes and that framework's student arguments
        allowed = set(SIZES[size]) - {"framework"} if size in SIZES else None
        args = net_args(SIZES, size, net, where=where, allowed=allowed)
        framework = args["framework"]
        in_features, num_nodes, num_classes = args["in_features"], args["num_nodes"], args["num_classes"]
        check_choice("metric", metric, ("sp", "eo"), where=where)
        if proxy not in (0, 1, 2):
            raise UserError(
                f"{where}: proxy must be 0 (plain KD), 1 (fixed sensitive one-hot) or 2 (learnable), got "
                f"{proxy!r}; set model.init_args.proxy to one of them."
            )
        if framework == "cpf" and proxy and in_features < 3:
            raise UserError(
                f"{where}: the CPF variant replaces the last two feature columns with the proxy, so it "
                f"needs >= 3 features, got net.in_features={in_features}; use proxy=0 or a graph with more "
                "features."
            )
        minimum = {"num_classes": 2, "num_layers": 2}
        for name in (
            "in_features",
            "num_nodes",
            "num_classes",
            "num_layers",
            "emb_dim",
            "mlp_layers",
            "hidden",
            "sgc_k",
        ):
            if name in args:
                check_positive(f"net.{name}", args[name], minimum=minimum.get(name, 1), where=where)
        check_positive("teacher_epochs", teacher_epochs, where=where)
        drops = {f"net.{k}": args[k] for k in ("feat_drop", "attn_drop", "dropout") if k in args}
        _check_rates(where, **drops, lr=lr, weight_decay=weight_decay, alpha=alpha)
        self.net_args = args
        self.framework = framework
        self.automatic_optimization = False
        if alpha is None:
            alpha = 1e3 if framework == "cpf" else (100.0 if metric == "sp" else 10.0)
        self.alpha = float(alpha)
        self.lr = lr if lr is not None else (0.01 if framework == "cpf" else 1e-3)
        self.weight_decay = weight_decay if weight_decay is not None else (0.01 if framework == "cpf" else 5e-4)

        if framework == "cpf":
            student = PLPStudent(
                in_features,
                num_nodes,
                num_classes,
                args["num_layers"],
                args["emb_dim"],
                args["mlp_layers"],
                args["feat_drop"],
                args["attn_drop"],
                propagate_impl,
            )
            slot = "replace" if proxy else "none"
        else:
            hidden = args["hidden"]
            student = SGCStudent(
                in_features + (2 if proxy else 0), hidden, num_classes, args["sgc_k"], args["dropout"], propagate_impl
            )
            slot = "append" if proxy else "none"
            self.discriminators = nn.ModuleDict(
                {
                    "logits": LogitsDiscriminator(num_classes),
                    "local": LocalEmbDiscriminator(hidden, self_loops=local_self_loops),
                    "global": GlobalEmbDiscriminator(hidden),
                }
            )
        self.model = FairStudent(student, slot)
        # The bias proxy P (N, 2), U[0, 1) as in the code; a training device, so it lives outside `model` (the
        # student only keeps its node-mean, `model.proxy_mean`).
        self.proxy = nn.Parameter(torch.rand(num_nodes, 2), requires_grad=proxy == 2) if proxy else None
        for name in ("teacher_probs", "teacher_logits", "teacher_emb"):
            self.register_buffer(name, None, persistent=False)
        self._make_metrics()
        self.example_input_array = (torch.randn(num_nodes, in_features), _ring(num_nodes))
        self._best: tuple[float, int, dict] | None = None  # select_best: (val/select, epoch, state) of the kept student

    # ----------------------------------------------------------------------------------------- teacher
    def setup(self, stage: str | None = None):
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        data = getattr(dm, "data", None)
        if data is not None:
            self._prepare(data)

    @torch.no_grad()
    def set_teacher_outputs(self, logits: torch.Tensor, emb: torch.Tensor | None = None):
        # The official teacher script stores log_softmax(logits) as the GraphAKD knowledge's "logits": the student's
        # L1 term and the logit discriminator see the teacher's log-probabilities (CPF gets the probabilities).
        self.teacher_logits = logits.float().log_softmax(-1)
        self.teacher_probs = logits.float().softmax(-1)
        if emb is not None and self.framework == "graphakd":
            emb = emb.float()
            h = self.net_args["hidden"]
            if emb.shape[1] != h:
                # GraphAKD's embedding discriminators compare teacher and student embeddings in one space; a
                # GraphSAGE teacher has 128-d states, the SGC student 64: project on the teacher's top-h principal
                # directions (a fixed, data-derived map; our choice, the official code only pairs equal sizes).
                c = emb - emb.mean(0)
                _, _, v = torch.linalg.svd(c, full_matrices=False)
                emb = c @ v[:h].T
            self.teacher_emb = emb

    def _prepare(self, data):
        hp = self.hparams
        args = self.net_args
        if data.num_nodes != args["num_nodes"] or data.num_features != args["in_features"]:
            raise UserError(
                f"ReliantModule was built for {args['num_nodes']} nodes x {args['in_features']} features, the graph "
                f"has {data.num_nodes} x {data.num_features}: set model.init_args.net.num_nodes / net.in_features "
                "to match the data."
            )
        data_classes = int(data.y.max()) + 1
        if args["num_classes"] < data_classes:
            raise UserError(
                f"ReliantModule was built with num_classes={args['num_classes']} but the graph's labels have "
                f"{data_classes} classes; set model.init_args.net.num_classes to {data_classes}."
            )
        data = data.to(self.device)
        if isinstance(self.model.student, PLPStudent):
            self.model.student.set_labels(data.y, data.train_mask)
        if hp.proxy == 1:
            with torch.no_grad():
                self.proxy.copy_(torch.stack([data.sens, 1 - data.sens], 1).float())
        if self.teacher_logits is None:
            if hp.teacher is None:
                raise UserError(
                    "ReliantModule needs a teacher: pass teacher='local-dir:PATH' (an exported "
                    "GNNTeacherModule), a registry name, 'fit:gcn' / 'fit:sage' (train one here), or "
                    "call set_teacher_outputs(logits, emb)."
                )
            if hp.teacher.startswith("fit:"):
                seed = torch.initial_seed() if hp.teacher_seed is None else hp.teacher_seed
                teacher = fit_teacher(hp.teacher[4:], data, hp.teacher_epochs, seed=seed)
            else:
                import zoo

                log.info("RELIANT: loading teacher %s", hp.teacher)
                if str(hp.teacher).endswith(".ckpt"):  # the checkpoint a teacher fit wrote (zoo reproduce's chain)
                    from zoo.hub import module_from_checkpoint

                    teacher = module_from_checkpoint(hp.teacher)[0]
                else:
                    teacher = zoo.load(hp.teacher)
            if not isinstance(teacher, GNNTeacherModule):
                raise UserError(
                    f"{hp.teacher} is a {type(teacher).__name__}, not a GNNTeacherModule; pass a teacher "
                    "exported from GNNTeacherModule (reliant-teacher-<arch>.<dataset>)."
                )
            if teacher.net_args["in_features"] != data.num_features:
                raise UserError(
                    f"the teacher {hp.teacher} was trained on {teacher.net_args['in_features']} features, this graph "
                    f"has {data.num_features}: use the teacher trained on this dataset "
                    "(reliant-teacher-<arch>.<dataset>)"
                )
            teacher = teacher.to(self.device)
            self.set_teacher_outputs(*teacher.knowledge(data.x, data.edge_index, hp.teacher_embedding))
        if self.hparams.proxy and self.proxy is not None:
            with torch.no_grad():
                self.model.proxy_mean.copy_(self.proxy.mean(0))
        self._prepared = True

    # ----------------------------------------------------------------------------------------- objective
    def forward(self, x, edge_index):
        return self.model(x, edge_index)

    def _penalty(self, logits, data, mask):
        return bias_penalty(logits.softmax(-1), data.sens, mask, data.y, self.hparams.metric)

    def training_step(self, data, batch_idx):
        if not getattr(self, "_prepared", False):
            self._prepare(data)
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        hp = self.hparams
        p_mean = self.proxy.detach().mean(0) if self.proxy is not None else None
        if self.framework == "cpf":
            loss, penalty = self._cpf_student_step(data, opts[0], p_mean)
            mask_proxy = ~data.train_mask
        else:
            loss, penalty = self._akd_student_step(data, opts[0], opts[1], p_mean)
            mask_proxy = torch.ones_like(data.train_mask)
        if hp.proxy == 2:
            # proxy step: the per-node proxy is moved to maximise the student's group disparity (L = -alpha R)
            opt_p = opts[-1]
            logits = self.model(data.x, data.edge_index, proxy=self.proxy)
            loss_p = -self.alpha * self._penalty(logits, data, mask_proxy)
            opt_p.zero_grad()
            self.manual_backward(loss_p)
            opt_p.step()
            self.log("train/proxy_loss", loss_p, batch_size=1)
        if self.proxy is not None:
            with torch.no_grad():
                self.model.proxy_mean.copy_(self.proxy.mean(0))
        self.log("train/loss", loss, batch_size=1, prog_bar=True)
        self.log("train/penalty", penalty, batch_size=1)

    def _cpf_student_step(self, data, opt, p_mean):
        no_train = ~data.train_mask
        probs = self.model(data.x, data.edge_index, proxy=p_mean).log_softmax(-1).exp()
        loss = torch.linalg.norm(probs[no_train] - self.teacher_probs[no_train])  # Frobenius, not squared
        penalty = bias_penalty(probs, data.sens, no_train, data.y, self.hparams.metric)
        if self.hparams.proxy:
            loss = loss + self.alpha * penalty
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        return loss.detach(), penalty.detach()

    def _akd_student_step(self, data, opt, opt_d, p_mean):
        """GraphAKD (He et al., NeurIPS'22) generator/discriminator losses as in RELIANT's stu-gcn/train.py."""
        tr, y, ei = data.train_mask, data.y, data.edge_index
        D = self.discriminators
        t_logits, t_emb = self.teacher_logits, self.teacher_emb
        logits, emb = self.model.forward_with_embedding(data.x, ei, proxy=p_mean)
        bce = F.binary_cross_entropy_with_logits
        ce = F.cross_entropy

        def real_fake(pos, neg):
            return bce(pos, torch.ones_like(pos)) + bce(neg, torch.zeros_like(neg))

        # discriminator step (student outputs detached)
        s_logits, s_emb = logits.detach(), emb.detach()
        pos_z, neg_z = D["logits"](t_logits), D["logits"](s_logits)
        loss_d = 0.5 * (real_fake(pos_z[:, -1], neg_z[:, -1]) + ce(pos_z[tr, :-1], y[tr]) + ce(neg_z[tr, :-1], y[tr]))
        loss_d = loss_d + real_fake(D["local"](t_emb, ei), D["local"](s_emb, ei))
        t_sum = torch.sigmoid(t_emb.mean(0)).unsqueeze(-1)
        loss_d = loss_d + real_fake(D["global"](t_emb, t_sum), D["global"](s_emb, t_sum))
        s_sum = torch.sigmoid(s_emb.mean(0)).unsqueeze(-1)
        loss_d = loss_d + real_fake(D["global"](s_emb, s_sum), D["global"](t_emb, s_sum))
        opt_d.zero_grad()
        self.manual_backward(loss_d)
        opt_d.step()

        # generator (student) step; discriminators only provide gradients
        for p in D.parameters():
            p.requires_grad_(False)
        neg_z = D["logits"](logits)
        loss = ce(logits[tr], y[tr])
        loss = loss + 0.5 * (ce(neg_z[tr, :-1], y[tr]) + bce(neg_z[:, -1], torch.ones_like(neg_z[:, -1])))
        loss = loss + (logits - t_logits).abs().sum() / logits.shape[0]
        le = D["local"](emb, ei)
        loss = loss + bce(le, torch.ones_like(le))
        ge = D["global"](emb, t_sum)
        loss = loss + bce(ge, torch.ones_like(ge))
        s_sum = torch.sigmoid(emb.mean(0)).unsqueeze(-1)
        loss = loss + real_fake(D["global"](emb, s_sum), D["global"](t_emb, s_sum))
        penalty = self._penalty(logits, data, tr)
        if self.hparams.proxy == 2:  # the official AKD variant adds the penalty only with the learnable proxy
            loss = loss + self.alpha * penalty
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        for p in D.parameters():
            p.requires_grad_(True)
        self.log("train/loss_d", loss_d.detach(), batch_size=1)
        return loss.detach(), penalty.detach()

    # ----------------------------------------------------------------------------------------- evaluation
    def validation_step(self, data, batch_idx):
        if not getattr(self, "_prepared", False):
            self._prepare(data)
        out = self._evaluate(self.model(data.x, data.edge_index), data, "val")
        select = out["acc"] if self.framework == "cpf" else -out["loss"]
        self.log("val/select", select, batch_size=1)
        trainer = self._trainer
        if (
            self.hparams.select_best
            and trainer is not None
            and trainer.state.fn == "fit"
            and not trainer.sanity_checking
        ):
            self.keep_if_best(float(select), self.current_epoch)
            self.log("val/selected_epoch", float(self._best[1]), batch_size=1)

    def keep_if_best(self, score: float, epoch: int) -> bool:
        """The release's selection rule on ``val/select`` (see ``select_best``): CPF keeps a score >= the best (ties go
        to the later epoch), GraphAKD one > the best (minus the loss: ties keep the earlier). Keeps a copy of the
        student, its proxy (and the discriminators) when it wins; returns whether it did."""
        best = self._best
        if best is not None and not (score > best[0] or (score == best[0] and self.framework == "cpf")):
            return False
        self._best = (score, epoch, {k: v.detach().clone() for k, v in self.state_dict().items()})
        return True

    def on_fit_start(self):
        self._best = None

    def on_train_end(self):
        if self.hparams.select_best and self._best is not None:
            score, epoch, state = self._best
            log.info("RELIANT: keeping the student of epoch %d (val/select %.4f)", epoch, score)
            self.load_state_dict(state)
            # the fit's last checkpoint holds the kept student too, so that `zoo test --ckpt_path .../last.ckpt` and
            # `zoo export` give what the fit tested (it was written at the last epoch, before this selection)
            trainer = self._trainer
            for cb in trainer.checkpoint_callbacks if trainer is not None else ():
                if getattr(cb, "last_model_path", ""):
                    trainer.save_checkpoint(cb.last_model_path)

    def test_step(self, data, batch_idx):
        if not getattr(self, "_prepared", False):
            self._prepare(data)
        self._evaluate(self.model(data.x, data.edge_index), data, "test")

    def configure_optimizers(self):
        hp = self.hparams
        student_lr = self.lr if self.framework == "cpf" else self.lr / 10
        opts = [torch.optim.Adam(self.model.parameters(), lr=student_lr, weight_decay=self.weight_decay)]
        if self.framework == "graphakd":
            opts.append(torch.optim.Adam(self.discriminators.parameters(), lr=self.lr, weight_decay=self.weight_decay))
        if hp.proxy == 2:
            opts.append(torch.optim.Adam([self.proxy], lr=self.lr, weight_decay=self.weight_decay))
        return opts
