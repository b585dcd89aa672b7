"""RSFD LightningModule: video captioning with frequency-aware diffusion (FAD) and the divergent semantic supervisor
(DSS) (Zhong et al., AAAI 2023, arXiv 2211.15076; official code lzp870/RSFD, method ``ARB``).

Objective (the release's ``misc/crit.py``; the DSS term as in its compiled ``misc/__pycache__/crit.cpython-39.pyc``,
the only runnable DSS loss the authors left, see ``model.DivergentSemanticSupervisor``):

    L = L_CE + lambda * (1 / 2w) * sum_{o in -w..-1, +1..+w} L_o

- L_CE: NLL of the next word (teacher forcing: inputs tokens[:, :-1], targets tokens[:, 1:]), summed over non-pad
  targets and divided by the batch size (the release's ``LanguageGeneration``); FAD acts on the input embeddings.
- L_o: the same NLL for the DSS head of offset o, predicting y_{t+o} from the state at t (``model.shifted_targets``);
  lambda = ``dss_weight`` (0.3), w = ``dss_window`` (2 as released; 3 in the paper's figure). ``dss=False`` drops it.

Evaluation: beam search (``beam_size`` 5, ``length_alpha`` 1.0, ``beam_rule`` "release": the released
``models/Beam.py`` termination, see ``model.beam_decode``; ``decode_cache`` keeps a key/value cache) per video,
BLEU-1..4 / METEOR / ROUGE-L / CIDEr through pycocoevalcap against all references of the video
(``zoo.metrics.captioning``), logged as ``val/*`` and ``test/*`` (fractions). Model selection as the release's
``standard`` rule (``misc/logger.py``): an epoch replaces the kept one when sum_k m_k / kept_k > K over
``selection_metrics`` (BLEU-4, METEOR, CIDEr); ``val/kept_epoch`` (the epoch of the kept evaluation, + 1) rises
exactly when it does, so ``ModelCheckpoint(monitor="val/kept_epoch", mode="max")``
keeps the release's choice; ``val/kept_*`` hold its metrics. With ``rare_threshold`` set, ``val/rare_recall`` and
``test/rare_recall`` (:func:`rare_word_recall`) measure what the paper argues FAD and DSS improve: how often the
captions contain the rare words (training count below the threshold) that the clip's references use.

Optimiser: Adam (lr 5e-4, weight decay 5e-4), lr <- max(5e-5, 0.9 lr) per epoch; gradient clipping by value 5 is
the Trainer's (``gradient_clip_val: 5``, ``gradient_clip_algorithm: value`` in the configs).
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info

from zoo.errors import UserError, check_positive
from zoo.models.rsfd.model import (
    BEAM_RULES,
    EOS,
    PAD,
    RSFD,
    DivergentSemanticSupervisor,
    beam_search,
)
from zoo.models.rsfd.sizes import DEFAULT, SIZES
from zoo.sizes import net_args

log = logging.getLogger(__name__)


def modalities(feats) -> list[torch.Tensor]:
    """A batch's ``feats``: a mapping modality -> (B, T, d) (the data module's, in file order) or a list."""
    return list(feats.values()) if isinstance(feats, dict) else list(feats)


def release_selection(
    scores: dict[str, float], kept: dict[str, float] | None, keys: Sequence[str]
) -> tuple[bool, float]:
    """The release's ``standard`` model selection: (replace the kept evaluation?, sum_k m_k / kept_k). The first
    evaluation is always kept; a kept metric of 0 counts a positive new value as a ratio of 2 (and 0 as 1)."""
    if kept is None:
        return True, float(len(keys))
    ratio = sum(scores[k] / kept[k] if kept[k] > 0 else (2.0 if scores[k] > 0 else 1.0) for k in keys)
    return ratio > len(keys), ratio


def rare_word_recall(
    references: dict[Any, Sequence[str]], candidates: dict[Any, Sequence[str]], rare: set[str]
) -> tuple[float, int]:
    """Recall of rare words: over every (item, rare word used by any of the item's references) pair, the fraction
    whose generated caption (``candidates[item][0]``) contains the word -> (recall, number of pairs; recall is NaN
    without pairs). Words are the lower-cased runs of letters, digits and apostrophes (the captions' vocabulary
    rule). Neither pycocoevalcap nor torchmetrics has this count; CIDEr weights rare n-grams by IDF, but over the
    evaluated references, not by the training frequency the paper's argument is about."""

    def tokens(text: str) -> set[str]:
        return set(re.findall(r"[a-z0-9']+", text.lower()))

    hits = pairs = 0
    for k, refs in references.items():
        wanted = rare & set().union(*map(tokens, refs))
        pairs += len(wanted)
        hits += len(wanted & tokens(candidates[k][0]))
    return (hits / pairs if pairs else float("nan")), pairs


def ids_to_text(ids: Sequence[int], itow: Sequence[str]) -> str:
    """Token ids (after ``<bos>``) -> the caption: words up to the first ``<eos>``/``<pad>``, specials dropped."""
    words = []
    for i in ids:
        if i in (EOS, PAD):
            break
        if i >= 6:
            words.append(itow[i] if i < len(itow) else "<unk>")
    return " ".join(words)


class RSFDModule(LightningModule):
    """See the module docstring. ``forward(feats, category=None)`` -> ``{"tokens": (B, n), "scores": (B,)}`` (beam
    search); ``feats`` holds one (B, T_m, in_features[m]) tensor per modality (appearance, motion): a list, or the
    data module's mapping ``{"m0": ..., "m1": ...}``. ``size``: ``msrvtt`` or ``msvd`` (``sizes.py``); ``net``:
    overrides of :class:`~zoo.models.rsfd.model.RSFD`'s arguments (the feature sizes and vocabulary of other data,
    ``fad`` / ``fad_threshold`` / ``fad_at_inference``, dropout, ``ffn_residual_dropout``, a small demo's width)."""

    def __init__(
        self,
        size: str = DEFAULT,
        net: dict[str, Any] | None = None,
        dss: bool = True,
        dss_window: int = 2,
        dss_weight: float = 0.3,
        dss_shared_vocab_proj: bool = True,
        beam_size: int = 5,
        length_alpha: float = 1.0,
        beam_rule: str = "release",
        decode_cache: bool = True,
        lr: float = 5e-4,
        weight_decay: float = 5e-4,
        lr_decay: float = 0.9,
        min_lr: float = 5e-5,
        selection_metrics: list[str] = ("bleu4", "meteor", "cider"),
        tokenize: bool = True,
        meteor: bool = True,
        example_steps: int = 8,
        log_baseline: bool = False,
        rare_threshold: float | None = None,
    ):
        super().__init__()
        defaults = {k: p.default for k, p in inspect.signature(RSFD).parameters.items()}
        arch = net_args(SIZES, size, net, where="RSFDModule", allowed=set(defaults))
        arch["in_features"] = [int(d) for d in arch["in_features"]]
        self.arch = {**defaults, **arch}  # every argument of the network, defaults included
        a = self.arch
        for name, v in (
            ("net.vocab_size", a["vocab_size"]),
            ("net.max_len", a["max_len"]),
            ("net.d_model", a["d_model"]),
            ("net.num_heads", a["num_heads"]),
            ("net.ffn_dim", a["ffn_dim"]),
            ("net.num_layers", a["num_layers"]),
            ("beam_size", beam_size),
            ("example_steps", example_steps),
        ):
            check_positive(name, v, where="RSFDModule")
        if not lr > 0 or not 0 < min_lr <= lr or not 0 < lr_decay <= 1:
            raise UserError(
                f"lr={lr}, min_lr={min_lr}, lr_decay={lr_decay}: need 0 < min_lr <= lr and 0 < lr_decay "
                "<= 1 (the release: 5e-4, 5e-5, 0.9)"
            )
        if not a["in_features"] or any(d < 1 for d in a["in_features"]):
            raise UserError(
                f"net.in_features={a['in_features']}: one positive feature size per modality, e.g. [2048, 2048]"
            )
        if a["vocab_size"] <= 6:
            raise UserError(
                f"net.vocab_size={a['vocab_size']}: the vocabulary holds 6 specials plus words; use the data "
                "module's vocab_size"
            )
        if a["d_model"] % a["num_heads"]:
            raise UserError(f"net.d_model={a['d_model']} is not divisible by net.num_heads={a['num_heads']}")
        if a["max_len"] < 3:
            raise UserError(
                f"net.max_len={a['max_len']}: a caption needs <bos>, a word and <eos>; use size msrvtt (30) or "
                "msvd (20)"
            )
        if beam_rule not in BEAM_RULES:
            raise UserError(
                f"beam_rule={beam_rule!r}: one of {', '.join(BEAM_RULES)} (release: the released "
                "models/Beam.py; top_eos: stop when the best hypothesis ends)"
            )
        if rare_threshold is not None and not rare_threshold > 0:
            raise UserError(
                f"rare_threshold={rare_threshold}: a training count (words seen fewer times are rare), > 0, or null"
            )
        if a["num_categories"] < 0 or dss_window < 1 or dss_weight < 0:
            raise UserError("net.num_categories must be >= 0, dss_window >= 1 and dss_weight >= 0")
        from zoo.metrics.captioning import METRIC_KEYS

        bad = [m for m in selection_metrics if m not in METRIC_KEYS or (m == "meteor" and not meteor)]
        if bad or not selection_metrics:
            raise UserError(
                f"selection_metrics={list(selection_metrics)}: choose among {', '.join(METRIC_KEYS)} "
                "(meteor only with meteor: true)"
            )
        self.save_hyperparameters()
        self.model = RSFD(**arch)
        # training-only heads: not part of the inference network (self.model), dropped at export-free inference
        self.dss = (
            DivergentSemanticSupervisor(a["d_model"], a["vocab_size"], dss_window, dss_shared_vocab_proj)
            if dss
            else None
        )
        self.example_input_array = self._example(example_steps)
        self._metrics = {}
        self._kept: dict[str, float] | None = None
        self._kept_epoch = 0
        self.itow: list[str] | None = None
        self.rare_words: set[str] | None = None  # set in setup from the data's frequency table (rare_threshold)

    def _example(self, steps: int):
        feats = [torch.randn(2, steps, d) for d in self.arch["in_features"]]
        if self.arch["num_categories"]:
            return feats, torch.tensor([0, self.arch["num_categories"] - 1])
        return (feats,)

    def data_config(self) -> dict:
        """What the network fixes in its data: the caption length its position table holds (``max_len``); a caption
        data module whose ``max_len`` is unset follows it (``zoo.sizes.follow_model``)."""
        return {"max_len": self.arch["max_len"]}

    @classmethod
    def bench_init_args(cls, init: dict, demo_model: dict) -> tuple[dict, str]:
        """``zoo bench --train``: the paper-size network on the demo's features. The feature sizes come from the demo
        (its data's); the demo's videos have no category (MSR-VTT's 20 categories are not in the moving digits), so
        the category embedding follows the demo too."""

        def resolved(args: dict) -> dict:  # the data-bound arguments, lists as lists
            a = {**SIZES[args.get("size", DEFAULT)], **(args.get("net") or {})}
            return {"in_features": [int(d) for d in a["in_features"]], "num_categories": int(a["num_categories"])}

        have, demo = resolved(init), resolved(demo_model)
        over = {k: v for k, v in demo.items() if have[k] != v}
        if not over:
            return {}, ""
        note = ", ".join(f"{k}={v}" for k, v in over.items()) + " from the demo (its features; no video categories)"
        return {"net": {**(init.get("net") or {}), **over}}, note

    # ------------------------------------------------------------------------------------------ data agreement
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None:
            return
        a = self.arch
        dims = getattr(dm, "feature_dims", None)
        if dims is not None and list(dims) != list(a["in_features"]):
            raise UserError(
                f"the data's features have sizes {list(dims)}, the model takes in_features="
                f"{list(a['in_features'])}: set model.init_args.net.in_features to {list(dims)}"
            )
        v = getattr(dm, "vocab_size", None)
        if v is not None and v > a["vocab_size"]:
            raise UserError(
                f"the data's vocabulary has {v} entries, the model's vocab_size is {a['vocab_size']}: set "
                f"model.init_args.net.vocab_size to {v}"
            )
        cats = getattr(dm, "num_categories", 0) or 0
        if a["num_categories"] and not cats:
            raise UserError(
                f"the model embeds {a['num_categories']} video categories (MSR-VTT) but the data has none: "
                "set model.init_args.net.num_categories to 0"
            )
        if cats > a["num_categories"] and a["num_categories"]:
            raise UserError(
                f"the data has {cats} categories, the model net.num_categories={a['num_categories']}: set "
                f"model.init_args.net.num_categories to {cats}"
            )
        self.itow = list(getattr(dm, "itow", None) or []) or None
        counts = getattr(dm, "token_counts", None)
        if self.hparams.rare_threshold is not None and counts is not None and self.itow is not None:
            t = self.hparams.rare_threshold
            self.rare_words = {w for w, c in zip(self.itow[6:], counts[6:].tolist()) if 0 < c < t}
            rank_zero_info(f"RSFD rare-word recall over {len(self.rare_words)} words seen < {t:g} times in training")
        if counts is not None and a["fad"]:
            buf = self.model.decoder.fad.token_counts
            c = torch.as_tensor(counts, dtype=buf.dtype)
            buf.zero_()
            buf[: c.numel()] = c.to(buf.device)
            low, high = self.model.decoder.fad.partition_sizes()
            rank_zero_info(
                f"RSFD FAD: threshold {a['fad_threshold']:g}, |L| = {low}, |H| = {high} "
                f"({getattr(dm, 'frequency_source', 'data')} frequencies)"
            )

    # ------------------------------------------------------------------------------------------ objective
    def forward(self, feats: list[torch.Tensor], category: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out = beam_search(
            self.model,
            modalities(feats),
            category if self.arch["num_categories"] else None,
            self.hparams.beam_size,
            alpha=self.hparams.length_alpha,
            rule=self.hparams.beam_rule,
            cache=self.hparams.decode_cache,
        )
        return {"tokens": out.tokens, "scores": out.scores}

    def losses(self, batch) -> dict[str, torch.Tensor]:
        tokens = batch["tokens"]
        inp, tgt = tokens[:, :-1], tokens[:, 1:]
        category = batch.get("category") if self.arch["num_categories"] else None
        logits, hidden = self.model(modalities(batch["feats"]), inp, category)
        b = tokens.shape[0]
        ce = F.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten(), ignore_index=PAD, reduction="sum") / b
        out = {"ce": ce, "loss": ce}
        if self.dss is not None:
            out["dss"] = self.dss(hidden, inp, tgt, self.model.vocab_proj)
            out["loss"] = ce + self.hparams.dss_weight * out["dss"]
        return out

    def training_step(self, batch, batch_idx):
        out = self.losses(batch)
        n = batch["tokens"].shape[0]
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=n)
        self.log("train/ce", out["ce"], batch_size=n)
        if "dss" in out:
            self.log("train/dss", out["dss"], batch_size=n)
        return out["loss"]

    # ------------------------------------------------------------------------------------------ evaluation
    def _metric(self, stage: str):
        if stage not in self._metrics:
            from zoo.metrics.captioning import CaptionMetrics

            self._metrics[stage] = CaptionMetrics(tokenize=self.hparams.tokenize, meteor=self.hparams.meteor).to(
                self.device
            )
        return self._metrics[stage]

    def caption(self, feats, category=None) -> list[str]:
        if self.itow is None:
            raise UserError(
                "no vocabulary: captions are decoded with the data module's vocabulary (itow); run with "
                "a CaptionFeaturesDataModule"
            )
        toks = self(feats, category)["tokens"].tolist()
        return [ids_to_text(t, self.itow) for t in toks]

    def predict_step(self, batch, batch_idx, dataloader_idx: int = 0):
        """Generated captions of the batch's clips, with their dataset ``index`` (corpus video order)."""
        caps = self.caption(batch["feats"], batch.get("category"))
        index = batch.get("index")
        return [{"index": int(index[i]) if index is not None else i, "caption": c} for i, c in enumerate(caps)]

    def figure_inputs(self, batch, outputs=None, max_items: int = 4) -> dict:
        """A captions figure spec (:func:`zoo.figures.captions`) of the first ``max_items`` clips: the generated
        caption and the first reference over the clip's sampled frames (``frames`` [B, T, 3, H, W] when the batch
        has them, otherwise the first modality's per-step features, which is what the model saw)."""
        caps = (
            [o["caption"] for o in outputs]
            if isinstance(outputs, list) and outputs and "caption" in outputs[0]
            else [o["caption"] for o in self.predict_step(batch, 0)]
        )
        first = modalities(batch["feats"])[0]
        frames, refs = batch.get("frames"), batch.get("refs")
        clips = [
            {
                "frames": frames[i].cpu() if frames is not None else None,
                "features": first[i].cpu(),
                "caption": caps[i],
                "reference": refs[i][0] if refs is not None and refs[i] else None,
            }
            for i in range(min(max_items, len(caps)))
        ]
        return {"kind": "captions", "clips": clips, "title": "RSFD captions (beam search) vs a reference"}

    def _eval_step(self, batch, stage: str):
        caps = self.caption(batch["feats"], batch.get("category"))
        self._metric(stage).update(caps, batch["refs"], batch["index"])

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def _eval_end(self, stage: str) -> dict[str, float]:
        metric = self._metric(stage)
        scores = {k: float(v) for k, v in metric.compute().items()}
        if self.rare_words is not None:
            self._log_rare(f"{stage}/", *metric.captions())
        metric.reset()
        for k, v in scores.items():
            self.log(f"{stage}/{k}", v, sync_dist=False)
        return scores

    def _log_rare(self, prefix: str, references: dict, candidates: dict) -> None:
        recall, pairs = rare_word_recall(references, candidates, self.rare_words)
        if pairs:  # no rare word in the references: nothing to recall (no NaN rows)
            self.log(f"{prefix}rare_recall", recall, sync_dist=False)
            self.log(f"{prefix}rare_pairs", float(pairs), sync_dist=False)

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking:
            self._metric("val").reset()
            return
        scores = self._eval_end("val")
        better, ratio = release_selection(scores, self._kept, list(self.hparams.selection_metrics))
        self.log("val/selection_ratio", ratio)
        if better:
            self._kept, self._kept_epoch = {k: scores[k] for k in scores}, self.current_epoch + 1
        self.log("val/kept_epoch", float(self._kept_epoch))
        for k, v in self._kept.items():
            self.log(f"val/kept_{k}", v)

    def on_test_epoch_end(self):
        self._eval_end("test")
        dm = getattr(self.trainer, "datamodule", None)
        if self.hparams.log_baseline and hasattr(dm, "baseline_scores"):
            for k, v in dm.baseline_scores("test", self.hparams.tokenize, self.hparams.meteor).items():
                self.log(f"test/baseline_{k}", v)
            if self.rare_words is not None and hasattr(dm, "nearest_caption"):
                test = dm.corpus.split_videos["test"]
                refs = {k: list(dm.corpus.captions[v]) for k, v in enumerate(test)}
                self._log_rare("test/baseline_", refs, {k: [c] for k, c in dm.nearest_caption("test").items()})

    def on_save_checkpoint(self, checkpoint):
        checkpoint["rsfd_selection"] = {"kept": self._kept, "kept_epoch": self._kept_epoch}

    def on_load_checkpoint(self, checkpoint):
        sel = checkpoint.get("rsfd_selection") or {}
        self._kept, self._kept_epoch = sel.get("kept"), int(sel.get("kept_epoch", 0))

    # ------------------------------------------------------------------------------------------ optimiser
    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        floor = hp.min_lr / hp.lr
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: max(floor, hp.lr_decay**e))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
