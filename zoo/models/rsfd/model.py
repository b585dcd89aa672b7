"""RSFD: Refined Semantic enhancement towards Frequency Diffusion for video captioning (Zhong, Li, Chen, Jiang, Chen,
Ye, AAAI 2023, arXiv 2211.15076). The network as plain ``nn.Module``s; the objective is in ``module.py``.

Official code: ``lzp870/RSFD`` (a fork of ``yangbang18/Non-Autoregressive-Video-Captioning``, method ``ARB``):
``models/Encoder.py`` (``Encoder_HighWay``), ``models/bert.py`` (``BertEmbeddings`` with FAD, ``BertDecoder``),
``misc/crit.py`` (the divergent semantic supervisor, DSS).

- :class:`HighwayEncoder`: per modality Linear(d_in -> d) -> highway gate -> dropout, a BatchNorm1d per modality over
  (batch x time), modalities concatenated along time: memory (B, sum_m T_m, d).
- :class:`FrequencyDiffusion` (FAD, paper §3.2, Fig. 2): words split by corpus frequency into low (L) and high (H)
  sets; every rare word joins the frequent word it is most similar to under the current embeddings; the input
  embedding of a frequent word with a non-empty group is the mean of itself and its group (training only, as the
  paper states; the release also applies it at inference, ``fad_at_inference``).
- :class:`CaptionDecoder`: embedding (word + learned position [+ category] -> LayerNorm -> dropout), one
  Transformer layer without LayerNorm inside (causal self-attention, cross-attention to the memory, tanh-GELU FFN,
  each + residual), an untied Linear(d -> |V|) without bias.
- :class:`DivergentSemanticSupervisor` (DSS, paper §3.3, Fig. 2): heads predicting the words at offsets
  ``-w..-1, +1..+w`` from each decoder state, Linear(d, d) each, followed by the shared vocabulary projection (the
  figure) or an own one (the commented-out release variant). Training only: not part of :class:`RSFD`.
- :func:`beam_search` (beam 5, length preference alpha 1.0, batched) and :func:`greedy_decode`.

Shapes: features ``[(B, T_m, d_m)]`` per modality; tokens (B, L) with ``<bos>`` first; hidden (B, L, d).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Special tokens of the release's vocabulary (misc/utils_corpora.py): words get ids >= 6 in frequency order.
PAD, UNK, BOS, EOS, MASK, VIS = 0, 1, 2, 3, 4, 5
SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>", "<mask>", "<vis>")

# The paper's sizes (spec §2.2/§2.3): both datasets use the same network, the vocabulary (6 specials included), the
# maximum caption length (= the position table) and the category embedding (MSR-VTT's 20 categories) differ.
COMMON = dict(in_features=[2048, 2048], d_model=512, num_heads=8, ffn_dim=2048, num_layers=1)
SIZES = {
    "msrvtt": dict(COMMON, vocab_size=10547, max_len=30, num_categories=20),
    "msvd": dict(COMMON, vocab_size=9468, max_len=20, num_categories=0),
}


# ================================================================================================ encoder
class Highway(nn.Module):
    """y = tanh(W1 x), g = sigmoid(W2 x), out = g * x + (1 - g) * y  (``models/Encoder.py`` ``HighWay``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, dim)
        self.w2 = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        gate = torch.sigmoid(self.w2(x))
        return gate * x + (1 - gate) * torch.tanh(self.w1(x))


class HighwayEncoder(nn.Module):
    """``[(B, T_m, in_m)]`` -> memory (B, sum_m T_m, d): per modality Linear -> Highway -> Dropout -> BatchNorm1d(d)
    over the (B * T_m) rows, then concatenation in time (the release's ``temporal_concat``)."""

    def __init__(self, in_features: list[int], d_model: int = 512, dropout: float = 0.5):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Linear(d_in, d_model), Highway(d_model), nn.Dropout(dropout)) for d_in in in_features)
        self.norms = nn.ModuleList(nn.BatchNorm1d(d_model) for _ in in_features)

    def forward(self, feats: list[Tensor]) -> Tensor:
        if len(feats) != len(self.branches):
            raise ValueError(f"{len(feats)} feature modalities given, the encoder has {len(self.branches)}")
        out = []
        for x, branch, norm in zip(feats, self.branches, self.norms):
            h = branch(x)
            out.append(norm(h.reshape(-1, h.shape[-1])).reshape(h.shape))
        return torch.cat(out, dim=1)


# ================================================================================================ FAD
def fad_partition(counts: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """Boolean masks (low, high) over the vocabulary from per-id counts f (``models/bert.py``):
    L = {w : f(w) < threshold} minus {<pad>, <mask>, <vis>}; H = {w : f(w) >= threshold} minus {<unk>, <bos>,
    <eos>}."""
    ids = torch.arange(counts.numel(), device=counts.device)
    low = (counts < threshold) & (ids != PAD) & (ids != MASK) & (ids != VIS)
    high = (counts >= threshold) & (ids != UNK) & (ids != BOS) & (ids != EOS)
    return low, high


class FrequencyDiffusion(nn.Module):
    """Frequency-aware diffusion of the word-embedding table (paper §3.2; the release's ``models/bert.py``
    ``BertEmbeddings``).

    ``token_counts`` (a buffer, |V|) holds the corpus frequency of every id; the data module fills it (train split by
    default, all splits as the release). With the current embedding matrix E:

    1. S = E_L E_H^T / sqrt(d); h*(l) = argmax_h softmax(S)[l, h] (= the argmax of the dot product);
    2. G(h) = {l in L : h*(l) = h};
    3. the table row of every h in H with G(h) non-empty becomes (e_h + sum_{l in G(h)} e_l) / (1 + |G(h)|); rows of
       L and of unmarked H are unchanged.

    Vectorised: one matmul, one argmax, one ``index_add`` (group sums) and one ``index_copy``; no loop over tokens.
    The assignment is not differentiable; the mean is, so rare words receive gradient from frequent-word contexts.
    """

    def __init__(self, vocab_size: int, threshold: float = 200.0):
        super().__init__()
        self.threshold = float(threshold)
        self.register_buffer("token_counts", torch.zeros(vocab_size))

    def groups(self, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(low ids (|L|,), high ids (|H|,), assignment (|L|,): the position in ``high ids`` each low word joins)."""
        low, high = fad_partition(self.token_counts, self.threshold)
        low_ids, high_ids = low.nonzero().squeeze(1), high.nonzero().squeeze(1)
        with torch.no_grad():
            sim = weight[low_ids] @ weight[high_ids].T  # the 1/sqrt(d) scale and the softmax keep the argmax
            assign = sim.argmax(dim=1) if high_ids.numel() else torch.zeros_like(low_ids)
        return low_ids, high_ids, assign

    def forward(self, weight: Tensor) -> Tensor:
        """(|V|, d) embedding table -> the diffused table (differentiable in ``weight``)."""
        low_ids, high_ids, assign = self.groups(weight)
        if low_ids.numel() == 0 or high_ids.numel() == 0:
            return weight
        sums = weight[high_ids].index_add(0, assign, weight[low_ids])
        sizes = torch.ones(high_ids.numel(), device=weight.device, dtype=weight.dtype).index_add(
            0, assign, torch.ones_like(assign, dtype=weight.dtype))
        marked = sizes > 1
        return weight.index_copy(0, high_ids[marked], sums[marked] / sizes[marked, None])

    def partition_sizes(self) -> tuple[int, int]:
        low, high = fad_partition(self.token_counts, self.threshold)
        return int(low.sum()), int(high.sum())


# ================================================================================================ decoder
class DecoderLayer(nn.Module):
    """One layer of the release's ``BertDecoder`` with ``with_layernorm=False``: causal self-attention (+ residual),
    cross-attention to the memory (+ residual), FFN d -> ffn -> d with tanh-GELU (``gelu_new``) (+ residual); every
    sub-block's output projection is followed by dropout, and rows of padded inputs are zeroed after each sub-block."""

    def __init__(self, d_model: int = 512, num_heads: int = 8, ffn_dim: int = 2048, dropout: float = 0.5,
                 attn_dropout: float = 0.0):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, num_heads, dropout=attn_dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d_model, num_heads, dropout=attn_dropout, batch_first=True)
        self.ffn_in = nn.Linear(d_model, ffn_dim)
        self.ffn_out = nn.Linear(ffn_dim, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor, keep: Tensor) -> Tensor:
        """x (B, L, d), memory (B, M, d), keep (B, L, 1) float (0 on padded inputs) -> (B, L, d)."""
        n = x.shape[1]
        causal = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)
        h = self.self_attn(x, x, x, attn_mask=causal, need_weights=False)[0]
        x = (x + self.dropout(h)) * keep
        h = self.cross_attn(x, memory, memory, need_weights=False)[0]
        x = (x + self.dropout(h)) * keep
        h = self.ffn_out(F.gelu(self.ffn_in(x), approximate="tanh"))
        return (x + self.dropout(h)) * keep


class CaptionDecoder(nn.Module):
    """Embedding (word [FAD] + position [+ category] -> LayerNorm(eps 1e-5) -> dropout) and ``num_layers`` layers.
    ``forward(tokens (B, L), memory (B, M, d), category (B,) | None) -> hidden (B, L, d)``."""

    def __init__(self, vocab_size: int, max_len: int, num_categories: int = 0, d_model: int = 512, num_heads: int = 8,
                 ffn_dim: int = 2048, num_layers: int = 1, dropout: float = 0.5, fad_threshold: float = 200.0,
                 fad: bool = True, fad_at_inference: bool = False):
        super().__init__()
        self.word = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        self.position = nn.Embedding(max_len, d_model)
        self.category = nn.Embedding(num_categories, d_model) if num_categories else None
        self.norm = nn.LayerNorm(d_model, eps=1e-5)
        self.dropout = nn.Dropout(dropout)
        self.fad = FrequencyDiffusion(vocab_size, fad_threshold)
        self.use_fad, self.fad_at_inference = fad, fad_at_inference
        self.layers = nn.ModuleList(DecoderLayer(d_model, num_heads, ffn_dim, dropout) for _ in range(num_layers))
        self.max_len = max_len

    def fad_active(self) -> bool:
        return self.use_fad and (self.training or self.fad_at_inference)

    def embed(self, tokens: Tensor, category: Tensor | None = None) -> Tensor:
        if tokens.shape[1] > self.max_len:
            raise ValueError(f"{tokens.shape[1]} decoder positions, the position table has {self.max_len} (max_len)")
        table = self.fad(self.word.weight) if self.fad_active() else self.word.weight
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        x = F.embedding(tokens, table, padding_idx=PAD) + self.position(pos)[None]
        if self.category is not None:
            if category is None:
                raise ValueError("this decoder has a category embedding (MSR-VTT): pass each video's category id")
            x = x + self.category(category)[:, None]
        return self.dropout(self.norm(x))

    def forward(self, tokens: Tensor, memory: Tensor, category: Tensor | None = None) -> Tensor:
        x = self.embed(tokens, category)
        keep = (tokens != PAD).unsqueeze(-1).to(x.dtype)
        for layer in self.layers:
            x = layer(x, memory, keep)
        return x


class RSFD(nn.Module):
    """The inference network: encoder, decoder, untied vocabulary projection (the DSS heads are training-only and live
    in the LightningModule). ``forward(feats, tokens, category) -> (logits (B, L, |V|), hidden (B, L, d))``."""

    def __init__(self, in_features: list[int], vocab_size: int, max_len: int, num_categories: int = 0,
                 d_model: int = 512, num_heads: int = 8, ffn_dim: int = 2048, num_layers: int = 1,
                 encoder_dropout: float = 0.5, dropout: float = 0.5, fad: bool = True, fad_threshold: float = 200.0,
                 fad_at_inference: bool = False):
        super().__init__()
        self.encoder = HighwayEncoder(list(in_features), d_model, encoder_dropout)
        self.decoder = CaptionDecoder(vocab_size, max_len, num_categories, d_model, num_heads, ffn_dim, num_layers,
                                      dropout, fad_threshold, fad, fad_at_inference)
        self.vocab_proj = nn.Linear(d_model, vocab_size, bias=False)

    def encode(self, feats: list[Tensor]) -> Tensor:
        return self.encoder(feats)

    def logits(self, tokens: Tensor, memory: Tensor, category: Tensor | None = None) -> tuple[Tensor, Tensor]:
        hidden = self.decoder(tokens, memory, category)
        return self.vocab_proj(hidden), hidden

    def next_logits(self, tokens: Tensor, memory: Tensor, category: Tensor | None = None) -> Tensor:
        """Logits of the word after each prefix (N, |V|): the vocabulary projection of the last position only."""
        return self.vocab_proj(self.decoder(tokens, memory, category)[:, -1])

    def forward(self, feats: list[Tensor], tokens: Tensor, category: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.logits(tokens, self.encode(feats), category)


# ================================================================================================ DSS
def shifted_targets(inputs: Tensor, targets: Tensor, offset: int) -> tuple[Tensor, Tensor]:
    """The DSS target of every decoder position for one offset.

    ``inputs`` (B, L) are the decoder inputs (tokens[:, :-1]), ``targets`` (B, L) the standard targets (tokens[:, 1:]):
    position t predicts y_t. A head with offset o predicts y_{t+o}. Returns (target ids (B, L), valid (B, L) bool):
    valid where 0 <= t + o < L, the input at t is not padding and y_{t+o} is not padding (the overlapping slice of
    the release's ``crit.py``, with padded positions left out); invalid targets are ``<pad>``."""
    n = targets.shape[1]
    out = torch.full_like(targets, PAD)
    if abs(offset) < n:
        if offset >= 0:
            out[:, :n - offset] = targets[:, offset:]
        else:
            out[:, -offset:] = targets[:, :n + offset]
    valid = (out != PAD) & (inputs != PAD)
    return out.masked_fill(~valid, PAD), valid


class DivergentSemanticSupervisor(nn.Module):
    """DSS heads (paper §3.3): one Linear(d, d, no bias) per offset in ``-window..-1, +1..+window``, followed by the
    model's vocabulary projection (``shared_vocab_proj``, the figure and the executable R2 version) or an own
    Linear(d, |V|, no bias) per head (the commented-out release variant)."""

    def __init__(self, d_model: int, vocab_size: int, window: int = 2, shared_vocab_proj: bool = True):
        super().__init__()
        if window < 1:
            raise ValueError(f"dss_window={window}: the window must be >= 1 (2 as released, 3 in the paper figure)")
        self.offsets = [o for o in range(-window, window + 1) if o != 0]
        self.heads = nn.ModuleList(nn.Linear(d_model, d_model, bias=False) for _ in self.offsets)
        self.vocab = None if shared_vocab_proj else nn.ModuleList(
            nn.Linear(d_model, vocab_size, bias=False) for _ in self.offsets)

    def forward(self, hidden: Tensor, inputs: Tensor, targets: Tensor, vocab_proj: nn.Module) -> Tensor:
        """Mean over heads of the NLL summed over valid targets / batch size."""
        losses = []
        for k, (offset, head) in enumerate(zip(self.offsets, self.heads)):
            tgt, _ = shifted_targets(inputs, targets, offset)
            proj = vocab_proj if self.vocab is None else self.vocab[k]
            logits = proj(head(hidden))
            nll = F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=PAD, reduction="sum")
            losses.append(nll / hidden.shape[0])
        return torch.stack(losses).mean()


# ================================================================================================ decoding
@dataclass
class Decoded:
    tokens: Tensor  # (B, n) ids after <bos>, <eos> included when generated, <pad> after
    scores: Tensor  # (B,) sum of log-probabilities / length^alpha


def _repeat(x: Tensor | None, k: int) -> Tensor | None:
    return None if x is None else x.repeat_interleave(k, dim=0)


def beam_search(model: RSFD, feats: list[Tensor], category: Tensor | None = None, beam_size: int = 5,
                max_len: int | None = None, alpha: float = 1.0) -> Decoded:
    """Batched beam search (the release's ``Translator`` / OpenNMT ``Beam``): every batch item keeps ``beam_size``
    hypotheses; a hypothesis that emits ``<eos>`` is finished (scored sum log p / length^alpha, length counting
    ``<eos>``) and stops expanding; an item is done once its best-scoring live beam has just finished; at
    ``max_len`` the live beams join the finished ones. The best finished hypothesis (normalised score) is returned.
    Runs under autograd when enabled (the scores are differentiable). No key/value cache: the one-layer decoder is
    re-run on each prefix, and only the last position is projected to the vocabulary."""
    max_len = max_len or model.decoder.max_len
    memory = model.encode(feats)
    b, k, dev = memory.shape[0], beam_size, memory.device
    memory, category = _repeat(memory, k), _repeat(category, k)
    seqs = torch.full((b * k, 1), BOS, dtype=torch.long, device=dev)
    scores = torch.zeros(b, k, device=dev, dtype=memory.dtype)
    scores[:, 1:] = float("-inf")  # all beams start equal: expand only the first
    alive = torch.ones(b, k, dtype=torch.bool, device=dev)
    done = torch.zeros(b, dtype=torch.bool, device=dev)
    best_score = torch.full((b,), float("-inf"), device=dev, dtype=memory.dtype)
    best_seq = torch.full((b, max_len), PAD, dtype=torch.long, device=dev)
    for step in range(1, max_len):  # positions 1..max_len-1 (position 0 holds <bos>)
        logp = F.log_softmax(model.next_logits(seqs, memory, category).float(), dim=-1).to(scores.dtype).view(b, k, -1)
        v = logp.shape[-1]
        cand = (scores.masked_fill(~alive, float("-inf"))[..., None] + logp).view(b, k * v)
        top, idx = cand.topk(k, dim=1)
        beam, word = idx // v, idx % v
        seqs = torch.cat([seqs.view(b, k, -1).gather(1, beam[..., None].expand(-1, -1, seqs.shape[1])),
                          word[..., None]], dim=2).view(b * k, -1)
        scores = top
        finished = (word == EOS) & torch.isfinite(top) & ~done[:, None]
        last = step == max_len - 1
        closing = (finished | (last & torch.isfinite(top) & ~done[:, None]))
        length = torch.full_like(top, step)
        norm = top / length.pow(alpha)
        norm = norm.masked_fill(~closing, float("-inf"))
        cand_best, cand_idx = norm.max(dim=1)
        better = cand_best > best_score
        if bool(better.any()):
            chosen = seqs.view(b, k, -1)[torch.arange(b, device=dev), cand_idx][:, 1:]  # drop <bos>
            row = torch.full((b, max_len), PAD, dtype=torch.long, device=dev)
            row[:, :chosen.shape[1]] = chosen
            best_seq = torch.where(better[:, None], row, best_seq)
            best_score = torch.where(better, cand_best, best_score)
        alive = ~(word == EOS) & torch.isfinite(top)
        done = done | (word[:, 0] == EOS)  # the top beam has just finished (OpenNMT's stopping rule)
        if bool(done.all()):
            break
    width = int((best_seq != PAD).sum(1).max().clamp(min=1))
    return Decoded(best_seq[:, :width], best_score)


def greedy_decode(model: RSFD, feats: list[Tensor], category: Tensor | None = None,
                  max_len: int | None = None) -> Decoded:
    """Argmax decoding (for tests and quick checks): stops per item at ``<eos>``; score = sum log p (alpha 0)."""
    max_len = max_len or model.decoder.max_len
    memory = model.encode(feats)
    b, dev = memory.shape[0], memory.device
    seqs = torch.full((b, 1), BOS, dtype=torch.long, device=dev)
    score = torch.zeros(b, device=dev)
    ended = torch.zeros(b, dtype=torch.bool, device=dev)
    for _ in range(1, max_len):
        logp = F.log_softmax(model.next_logits(seqs, memory, category).float(), dim=-1)
        val, word = logp.max(dim=-1)
        score = score + val.masked_fill(ended, 0.0)
        word = word.masked_fill(ended, PAD)
        seqs = torch.cat([seqs, word[:, None]], dim=1)
        ended = ended | (word == EOS)
        if bool(ended.all()):
            break
    return Decoded(seqs[:, 1:], score)


def build(size: str, **overrides) -> RSFD:
    """The paper's network for ``size`` in :data:`SIZES` (``msrvtt`` | ``msvd``)."""
    return RSFD(**{**SIZES[size], **overrides})
