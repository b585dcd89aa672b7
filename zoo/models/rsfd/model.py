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
  ``-w..-1, +1..+w`` from each decoder state, Linear(d, d) each, followed by the shared vocabulary projection (as the
  paper's Fig. 2 draws it) or an own one (the release's commented-out heads). Training only: not part of :class:`RSFD`.
- :func:`beam_search` (beam 5, length preference alpha 1.0, the release's termination rule, batched, key/value
  cached) and :func:`greedy_decode`.

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
            nn.Sequential(nn.Linear(d_in, d_model), Highway(d_model), nn.Dropout(dropout)) for d_in in in_features
        )
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
            0, assign, torch.ones_like(assign, dtype=weight.dtype)
        )
        marked = sizes > 1
        return weight.index_copy(0, high_ids[marked], sums[marked] / sizes[marked, None])

    def partition_sizes(self) -> tuple[int, int]:
        low, high = fad_partition(self.token_counts, self.threshold)
        return int(low.sum()), int(high.sum())


# ================================================================================================ decoder
class Attention(nn.Module):
    """Multi-head attention as the release's ``BertSelfAttention`` + ``BertSelfOutput.dense`` (``models/bert.py``):
    separate ``query`` / ``key`` / ``value`` projections (with bias), scaled dot product, softmax, attention dropout,
    the output projection ``dense``. Masked scores are excluded (the release fills them with -1e7: the same softmax
    in float32 for every row that keeps at least one key, which the ``<bos>`` key guarantees)."""

    def __init__(self, d_model: int, num_heads: int, attn_dropout: float = 0.0):
        super().__init__()
        self.num_heads, self.attn_dropout = num_heads, attn_dropout
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.dense = nn.Linear(d_model, d_model)

    def heads(self, x: Tensor) -> Tensor:
        """(N, L, d) -> (N, h, L, d / h)."""
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def keys_values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.heads(self.key(x)), self.heads(self.value(x))

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
        """Projected query rows x (N, Lq, d) against head-split keys/values (N, h, Lk, d/h); ``mask`` (N or 1, 1 or
        Lq, Lk) bool, True = attend -> (N, Lq, d) after ``dense``."""
        mask = None if mask is None else mask[:, None]
        drop = self.attn_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(self.heads(self.query(q)), k, v, attn_mask=mask, dropout_p=drop)
        return self.dense(out.transpose(1, 2).flatten(2))

    def forward(self, x: Tensor, context: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.attend(x, *self.keys_values(context), mask)


class DecoderLayer(nn.Module):
    """One layer of the release's ``BertDecoder`` / ``BertLayer`` with ``with_layernorm=False``: causal self-attention
    (+ residual), cross-attention to the memory (+ residual), FFN d -> ffn -> d with tanh-GELU (``gelu_new``)
    (+ residual); every sub-block's output projection is followed by dropout, rows of padded inputs are zeroed after
    each sub-block, and the release's ``BertOutput`` applies the dropout once more to the FFN's residual sum
    (``ffn_residual_dropout``: 5 dropouts per decoder pass, embedding included, as released; False: 4, zoo's old
    layer)."""

    def __init__(
        self,
        d_model: int = 512,
        num_heads: int = 8,
        ffn_dim: int = 2048,
        dropout: float = 0.5,
        attn_dropout: float = 0.0,
        ffn_residual_dropout: bool = True,
    ):
        super().__init__()
        self.self_attn = Attention(d_model, num_heads, attn_dropout)
        self.cross_attn = Attention(d_model, num_heads, attn_dropout)
        self.ffn_in = nn.Linear(d_model, ffn_dim)
        self.ffn_out = nn.Linear(ffn_dim, d_model)
        self.dropout = nn.Dropout(dropout)
        self.ffn_residual_dropout = ffn_residual_dropout

    def _after_attention(self, x: Tensor, memory_kv: tuple[Tensor, Tensor], keep: Tensor, groups: int = 1) -> Tensor:
        """Cross-attention (+ residual) and FFN (+ residual) of rows x (N, L, d); ``memory_kv`` holds the memory's
        keys/values per video (N / groups, h, M, d/h): the ``groups`` consecutive rows of one video (its beams)
        share them instead of a copy each."""
        if groups == 1:
            h = self.cross_attn.attend(x, *memory_kv)
        else:  # (N, 1, d) -> (N / groups, groups, d): a video's beams are its query rows
            h = self.cross_attn.attend(x.view(-1, groups, x.shape[-1]), *memory_kv).view_as(x)
        x = (x + self.dropout(h)) * keep
        h = self.ffn_out(F.gelu(self.ffn_in(x), approximate="tanh"))
        x = x + self.dropout(h)
        if self.ffn_residual_dropout:
            x = self.dropout(x)
        return x * keep

    def forward(self, x: Tensor, memory: Tensor, keep: Tensor) -> Tensor:
        """x (B, L, d), memory (B, M, d), keep (B, L, 1) float (0 on padded inputs) -> (B, L, d). Self-attention is
        causal and skips padded keys (the release's ``get_subsequent_mask`` + ``get_attn_key_pad_mask``)."""
        n = x.shape[1]
        causal = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
        mask = causal[None] & keep.transpose(1, 2).bool()  # (B, L, L): query row, key column
        h = self.self_attn(x, x, mask)
        x = (x + self.dropout(h)) * keep
        return self._after_attention(x, self.cross_attn.keys_values(memory), keep)

    def step(self, x: Tensor, cache: dict, memory_kv: tuple[Tensor, Tensor], keep: Tensor, groups: int) -> Tensor:
        """One new position per row: x (N, 1, d) -> (N, 1, d). ``cache`` (:class:`KVCache`) holds this layer's
        self-attention keys and values of the earlier positions and which were not padding; the new position's are
        appended. Same values as :meth:`forward` on the whole prefix, without recomputing it."""
        k, v, key_keep = cache.append(*self.self_attn.keys_values(x), keep[:, :, 0].bool())
        h = self.self_attn.attend(x, k, v, key_keep[:, None])
        x = (x + self.dropout(h)) * keep
        return self._after_attention(x, memory_kv, keep, groups)


class CaptionDecoder(nn.Module):
    """Embedding (word [FAD] + position [+ category] -> LayerNorm(eps 1e-5) -> dropout) and ``num_layers`` layers.
    ``forward(tokens (B, L), memory (B, M, d), category (B,) | None) -> hidden (B, L, d)``."""

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        num_categories: int = 0,
        d_model: int = 512,
        num_heads: int = 8,
        ffn_dim: int = 2048,
        num_layers: int = 1,
        dropout: float = 0.5,
        fad_threshold: float = 200.0,
        fad: bool = True,
        fad_at_inference: bool = False,
        ffn_residual_dropout: bool = True,
    ):
        super().__init__()
        self.word = nn.Embedding(vocab_size, d_model, padding_idx=PAD)
        self.position = nn.Embedding(max_len, d_model)
        self.category = nn.Embedding(num_categories, d_model) if num_categories else None
        self.norm = nn.LayerNorm(d_model, eps=1e-5)
        self.dropout = nn.Dropout(dropout)
        self.fad = FrequencyDiffusion(vocab_size, fad_threshold)
        self.use_fad, self.fad_at_inference = fad, fad_at_inference
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, num_heads, ffn_dim, dropout, ffn_residual_dropout=ffn_residual_dropout)
            for _ in range(num_layers)
        )
        self.max_len = max_len

    def fad_active(self) -> bool:
        return self.use_fad and (self.training or self.fad_at_inference)

    def word_table(self) -> Tensor:
        """The word-embedding table the inputs read: FAD's diffused table while FAD is active, else the plain one."""
        return self.fad(self.word.weight) if self.fad_active() else self.word.weight

    def embed(
        self, tokens: Tensor, category: Tensor | None = None, start: int = 0, table: Tensor | None = None
    ) -> Tensor:
        """tokens (N, L) at positions ``start .. start + L - 1`` -> (N, L, d)."""
        if start + tokens.shape[1] > self.max_len:
            raise ValueError(
                f"{start + tokens.shape[1]} decoder positions, the position table has {self.max_len} (max_len)"
            )
        table = self.word_table() if table is None else table
        pos = torch.arange(start, start + tokens.shape[1], device=tokens.device)
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

    def __init__(
        self,
        in_features: list[int],
        vocab_size: int,
        max_len: int,
        num_categories: int = 0,
        d_model: int = 512,
        num_heads: int = 8,
        ffn_dim: int = 2048,
        num_layers: int = 1,
        encoder_dropout: float = 0.5,
        dropout: float = 0.5,
        fad: bool = True,
        fad_threshold: float = 200.0,
        fad_at_inference: bool = False,
        ffn_residual_dropout: bool = True,
    ):
        super().__init__()
        self.encoder = HighwayEncoder(list(in_features), d_model, encoder_dropout)
        self.decoder = CaptionDecoder(
            vocab_size,
            max_len,
            num_categories,
            d_model,
            num_heads,
            ffn_dim,
            num_layers,
            dropout,
            fad_threshold,
            fad,
            fad_at_inference,
            ffn_residual_dropout,
        )
        self.vocab_proj = nn.Linear(d_model, vocab_size, bias=False)

    def encode(self, feats: list[Tensor]) -> Tensor:
        return self.encoder(feats)

    def logits(self, tokens: Tensor, memory: Tensor, category: Tensor | None = None) -> tuple[Tensor, Tensor]:
        hidden = self.decoder(tokens, memory, category)
        return self.vocab_proj(hidden), hidden

    def next_logits(self, tokens: Tensor, memory: Tensor, category: Tensor | None = None) -> Tensor:
        """Logits of the word after each prefix (N, |V|): the whole prefix re-run, the last position projected."""
        return self.vocab_proj(self.decoder(tokens, memory, category)[:, -1])

    def forward(self, feats: list[Tensor], tokens: Tensor, category: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.logits(tokens, self.encode(feats), category)


class KVCache:
    """One decoder layer's self-attention cache: keys and values (N, h, t, d/h) and key padding (N, t) of the ``t``
    positions decoded so far, in buffers with room for ``capacity`` positions, so that a step writes only its own
    position (no concatenation of the whole prefix). :meth:`select` is lazy: the rows it picks (beam back-pointers,
    finished videos dropped) are gathered by the next :meth:`append`, one copy of the prefix per buffer into a spare
    buffer of the same size (swapped with the current one), instead of a reorder plus a concatenation. Under autograd
    (keys that require grad) it concatenates instead, as buffers written in place cannot be differentiated."""

    def __init__(self, capacity: int):
        self.capacity, self.t, self.rows = capacity, 0, None
        self.bufs: list[Tensor] | None = None  # k, v, keep
        self.autograd = False
        self.spare: list[Tensor] | None = None

    def select(self, rows: Tensor) -> None:
        if self.bufs is not None:
            self.rows = rows if self.rows is None else self.rows[rows]

    def append(self, k: Tensor, v: Tensor, keep: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """k, v (N, h, 1, d/h), keep (N, 1) bool of the new position -> keys, values (N, h, t + 1, d/h) and key
        padding (N, t + 1) of the whole prefix (views of the buffers)."""
        t, new = self.t, (k, v, keep)
        if t >= self.capacity:
            raise ValueError(f"key/value cache: position {t} but room for {self.capacity} (max_len)")
        if self.bufs is None:
            self.autograd = torch.is_grad_enabled() and (k.requires_grad or v.requires_grad)
        if self.autograd:  # no writes into buffers under autograd: re-index and concatenate the prefix
            if self.bufs is not None:
                old = self.bufs if self.rows is None else [b[self.rows] for b in self.bufs]
                new = tuple(torch.cat([b, x], _POS[x.dim()]) for b, x in zip(old, new))
            self.bufs, self.rows, self.t = list(new), None, t + 1
            return new
        if self.bufs is None:
            sizes = [
                (*x.shape[:2], self.capacity, x.shape[3]) if x.dim() == 4 else (x.shape[0], self.capacity) for x in new
            ]
            self.bufs = [x.new_empty(size) for x, size in zip(new, sizes)]
        elif self.rows is not None:
            n = self.rows.numel()
            if self.spare is None or self.spare[0].shape[0] < n:
                self.spare = [b.new_empty((n, *b.shape[1:])) for b in self.bufs]
            out = [b[:n] for b in self.spare]
            for src, dst in zip(self.bufs, out):
                torch.index_select(_upto(src, t), 0, self.rows, out=_upto(dst, t))
            self.spare, self.bufs, self.rows = self.bufs, out, None
        for buf, x in zip(self.bufs, new):
            _at(buf, t).copy_(x)
        self.t = t + 1
        return tuple(_upto(b, t + 1) for b in self.bufs)


_POS = {4: 2, 2: 1}  # the position dim of the cache's k/v (N, h, t, d/h) and padding (N, t)


def _upto(buf: Tensor, t: int) -> Tensor:
    """The first ``t`` positions of a cache buffer (position: dim 2 of k/v, dim 1 of the padding)."""
    return buf[:, :, :t] if buf.dim() == 4 else buf[:, :t]


def _at(buf: Tensor, t: int) -> Tensor:
    return buf[:, :, t : t + 1] if buf.dim() == 4 else buf[:, t : t + 1]


class CachedStepper:
    """Incremental decoding with a key/value cache: ``__call__(seqs (N, t)) -> logits (N, |V|)`` of the word after
    each prefix, feeding only the newest token (``seqs[:, -1]``, at position t - 1). The memory's cross-attention keys
    and values are computed once per video and shared by its ``groups`` rows (beams); the self-attention keys/values
    of earlier positions are kept per row. :meth:`select` follows the search: ``rows`` picks (and reorders) the rows
    that continue (beam back-pointers, finished videos dropped), ``videos`` the videos they belong to. Outputs equal
    :meth:`RSFD.next_logits` on the whole prefix."""

    def __init__(self, model: RSFD, memory: Tensor, category: Tensor | None, groups: int):
        dec = model.decoder
        self.model, self.groups = model, groups
        self.table = dec.word_table()  # FAD (when active) diffuses the table once per search, not per step
        self.memory_kv = [layer.cross_attn.keys_values(memory) for layer in dec.layers]
        self.category = _repeat(category, groups)
        self.caches = [KVCache(dec.max_len) for _ in dec.layers]

    def select(self, rows: Tensor, videos: Tensor | None = None) -> None:
        for cache in self.caches:
            cache.select(rows)
        if videos is not None:
            self.memory_kv = [(k[videos], v[videos]) for k, v in self.memory_kv]
        if self.category is not None:
            self.category = self.category[rows]

    def __call__(self, seqs: Tensor) -> Tensor:
        dec = self.model.decoder
        tokens = seqs[:, -1:]
        x = dec.embed(tokens, self.category, start=seqs.shape[1] - 1, table=self.table)
        keep = (tokens != PAD).unsqueeze(-1).to(x.dtype)
        for layer, cache, mkv in zip(dec.layers, self.caches, self.memory_kv):
            x = layer.step(x, cache, mkv, keep, self.groups)
        return self.model.vocab_proj(x[:, 0])


class RecomputeStepper:
    """The uncached step (any network with ``next_logits``): the whole prefix re-run every step."""

    def __init__(self, model, memory: Tensor, category: Tensor | None, groups: int):
        self.model, self.memory, self.category = model, _repeat(memory, groups), _repeat(category, groups)

    def select(self, rows: Tensor, videos: Tensor | None = None) -> None:
        self.memory = self.memory[rows]
        if self.category is not None:
            self.category = self.category[rows]

    def __call__(self, seqs: Tensor) -> Tensor:
        return self.model.next_logits(seqs, self.memory, self.category)


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
            out[:, : n - offset] = targets[:, offset:]
        else:
            out[:, -offset:] = targets[:, : n + offset]
    valid = (out != PAD) & (inputs != PAD)
    return out.masked_fill(~valid, PAD), valid


class DivergentSemanticSupervisor(nn.Module):
    """DSS heads (paper §3.3): one Linear(d, d, no bias) per offset in ``-window..-1, +1..+window``, followed by the
    model's vocabulary projection (``shared_vocab_proj=True``) or an own Linear(d, |V|, no bias) per head (False).

    What survives of the authors' code: the loss is only in the compiled ``misc/__pycache__/crit.cpython-39.pyc``
    (an earlier author version; it reads four log-probability tensors ``tgt_word_logprobs_w1..w4`` and the constant
    0.3: offsets -2, -1, +1, +2, weight 0.3, mean of the 4 terms, as :func:`shifted_targets` and the module compute).
    No surviving code shows how those four log-probabilities were produced: no compiled ``seq2seq`` names the heads,
    and the only head code, commented out at HEAD in ``models/seq2seq.py`` / ``models/__init__.py``, has six heads
    ``w1..w6`` = Linear(512, 512, no bias) each with its **own** ``tgt_word_prj_other_loss<k>`` = Linear(512, |V|, no
    bias). The shared projection (the default) follows the paper's Fig. 2, which draws the heads feeding the one
    vocabulary classifier; ``shared_vocab_proj=False`` gives the commented-out code's separate projections."""

    def __init__(self, d_model: int, vocab_size: int, window: int = 2, shared_vocab_proj: bool = True):
        super().__init__()
        if window < 1:
            raise ValueError(f"dss_window={window}: the window must be >= 1 (2 as released, 3 in the paper figure)")
        self.offsets = [o for o in range(-window, window + 1) if o != 0]
        self.heads = nn.ModuleList(nn.Linear(d_model, d_model, bias=False) for _ in self.offsets)
        self.vocab = (
            None
            if shared_vocab_proj
            else nn.ModuleList(nn.Linear(d_model, vocab_size, bias=False) for _ in self.offsets)
        )

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


BEAM_RULES = ("release", "top_eos")
_DEAD = -1e20  # the release's score for every continuation of a finished hypothesis (models/Beam.py)


def _repeat(x: Tensor | None, k: int) -> Tensor | None:
    return None if x is None else x.repeat_interleave(k, dim=0)


def _stepper(model, memory: Tensor, category: Tensor | None, groups: int, cache: bool):
    if cache and isinstance(model, RSFD):
        return CachedStepper(model, memory, category, groups)
    return RecomputeStepper(model, memory, category, groups)


def beam_search(
    model: RSFD,
    feats: list[Tensor],
    category: Tensor | None = None,
    beam_size: int = 5,
    max_len: int | None = None,
    alpha: float = 1.0,
    rule: str = "release",
    cache: bool = True,
) -> Decoded:
    """Batched beam search with the release's ``Translator`` / ``Beam`` (``models/Beam.py``); see
    :func:`beam_decode` for the rules. ``cache`` (default) decodes incrementally with a key/value cache
    (:class:`CachedStepper`); ``False`` re-runs the decoder on every prefix (same outputs, slower)."""
    max_len = max_len or model.decoder.max_len
    memory = model.encode(feats)
    step = _stepper(model, memory, category, beam_size, cache)
    return beam_decode(step, memory.shape[0], beam_size, max_len, alpha, rule, memory.device)


def top_continuations(scores: Tensor, logp: Tensor, ended: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The ``k`` best continuations per video: ``scores`` (n, b) of the live hypotheses, ``logp`` (n, b, |V|) their
    next-word log-probabilities, ``ended`` (n, b) those that ended in ``<eos>`` (each continuation scored -1e20, as
    released). Returns (summed scores, hypothesis, word), each (n, k), best first.

    The same as the top ``k`` of the whole (n, b * |V|) table ``scores + logp`` (the release's ``Beam.advance``) but
    without building it: a continuation in the table's top ``k`` is in its hypothesis's own top ``k`` words, so only
    those b * k sums are formed and ranked. Equal sums may come in another order (neither ``topk`` fixes one)."""
    n, b, v = logp.shape
    lp, words = logp.topk(min(k, v), dim=2)  # (n, b, k') each hypothesis's best words
    cand = (scores[..., None] + lp).masked_fill(ended[..., None], _DEAD).view(n, -1)
    top, j = cand.topk(k, dim=1)
    return top, j // lp.shape[2], words.view(n, -1).gather(1, j)


def beam_decode(
    step, batch: int, beam_size: int, max_len: int, alpha: float = 1.0, rule: str = "release", device=None
) -> Decoded:
    """Beam search over ``batch`` videos, ``beam_size`` hypotheses each. ``step(seqs (N, t)) -> logits (N, |V|)``
    scores the word after every live prefix (rows video-major, ``beam_size`` per video) and ``step.select(rows,
    videos)`` follows the back-pointers and drops finished videos (:class:`CachedStepper`).

    The first step expands ``<bos>`` once; afterwards a hypothesis that ended in ``<eos>`` gets no continuation
    (score -1e20 as released) and the ``beam_size`` best continuations of the others are kept. ``rule``:

    - ``"release"`` (default, the release's active rule in ``models/Beam.py``): each new hypothesis ending in
      ``<eos>`` (in beam order) is recorded as finished with its summed log-probability and length t (``<eos>``
      counted); a video is done once ``beam_size`` are recorded. At ``max_len`` a video with no finished hypothesis
      records its live ones (a video with some keeps only those). The answer is the finished hypothesis with the best
      score / t^alpha (the first recorded among ties).
    - ``"top_eos"`` (zoo's previous rule, the release's commented-out one): a video is done as soon as its
      best-scoring hypothesis ends in ``<eos>``; every hypothesis ending in ``<eos>`` before that competes, and at
      ``max_len`` the live ones join.

    Never an empty caption: ``<eos>`` as the first word is recorded (the release counts it) but never returned; a
    video whose only finished hypothesis is that one is not done, and at ``max_len`` it takes its live hypotheses (the
    release would return the empty caption). With ``beam_size`` 1 the first word is never ``<eos>``."""
    if rule not in BEAM_RULES:
        raise ValueError(f"beam rule {rule!r}: one of {', '.join(BEAM_RULES)}")
    k, cap = beam_size, 2 * beam_size
    seqs = torch.full((batch * k, 1), BOS, dtype=torch.long, device=device)
    scores = torch.zeros(batch, k, device=device)
    active = torch.arange(batch, device=device)  # the videos still searching, in row order
    fin_score = torch.full((batch, cap), float("-inf"), device=device, dtype=torch.float64)
    fin_len = torch.ones(batch, cap, device=device, dtype=torch.float64)
    fin_seq = torch.full((batch, cap, max_len), PAD, dtype=torch.long, device=device)
    n_fin = torch.zeros(batch, dtype=torch.long, device=device)  # recorded (the release's count, empty included)
    n_ok = torch.zeros(batch, dtype=torch.long, device=device)  # recorded and not empty

    def record(mask: Tensor, top: Tensor, seq: Tensor, t: int) -> None:
        """Record the (video row, beam) pairs of ``mask`` as finished hypotheses of length t."""
        vid = active[:, None].expand_as(mask)
        slot = n_fin[active][:, None] + mask.long().cumsum(1) - 1
        i, j = mask.nonzero(as_tuple=True)
        v, s = vid[i, j], slot[i, j]
        fin_score[v, s] = top[i, j].double()
        fin_len[v, s] = float(t)
        fin_seq[v, s, :t] = seq[i, j, 1:]
        n_fin.index_add_(0, active, mask.sum(1))
        n_ok.index_add_(0, active, (mask.sum(1) if t > 1 else torch.zeros_like(n_fin[active])))

    for t in range(1, max_len):  # the word at position t (position 0 holds <bos>)
        n = active.numel()
        logp = F.log_softmax(step(seqs).float(), dim=-1).view(n, k, -1)
        if t == 1:
            cand = logp[:, 0].clone()  # all beams hold the same <bos>: expand one
            if k == 1:
                cand[:, EOS] = float("-inf")
            top, word = cand.topk(k, dim=1)
            beam = torch.zeros_like(word)
        else:
            top, beam, word = top_continuations(scores, logp, (seqs[:, -1] == EOS).view(n, k), k)
        back = (torch.arange(n, device=device)[:, None] * k + beam).view(-1)
        seqs = torch.cat([seqs[back], word.view(-1, 1)], dim=1)
        scores = top
        seq3 = seqs.view(n, k, -1)
        last = t == max_len - 1
        eos = word == EOS
        if rule == "release":
            record(eos & (n_fin[active][:, None] + eos.long().cumsum(1) <= k), top, seq3, t)
            done = (n_fin[active] >= k) & (n_ok[active] > 0)
            if last:
                none = n_ok[active] == 0
                record(none[:, None] & ~eos, top, seq3, t)
                done = torch.ones_like(done)
        else:
            closing = eos | last
            if t == 1:
                closing = closing & ~eos  # the empty caption never closes
            norm = (top.double() / float(t) ** alpha).masked_fill(~closing, float("-inf"))
            best, at = norm.max(dim=1)
            better = best > fin_score[active, 0]
            if bool(better.any()):
                rows = better.nonzero().squeeze(1)
                fin_score[active[rows], 0] = best[rows]
                fin_len[active[rows], 0] = 1.0  # the normalised score is stored
                fin_seq[active[rows], 0, :t] = seq3[rows, at[rows], 1:]
                fin_seq[active[rows], 0, t:] = PAD
            done = (eos[:, 0] & torch.isfinite(fin_score[active, 0])) | last
        n_done = int(done.sum())  # the step's one host sync (two in "top_eos" when a video improves)
        if n_done == n:
            break
        if n_done:
            keep = (~done).nonzero().squeeze(1)
            rows = (keep[:, None] * k + torch.arange(k, device=device)).view(-1)
            step.select(back.view(n, k)[keep].view(-1), keep)
            seqs, scores, active = seqs[rows], scores[keep], active[keep]
        else:
            step.select(back)
    norm = fin_score / fin_len.pow(alpha) if rule == "release" else fin_score
    norm = norm.masked_fill(fin_seq[..., 0] == EOS, float("-inf"))  # the empty caption is never the answer
    best, at = norm.max(dim=1)  # the first among equals, as the release's stable sort
    out = fin_seq[torch.arange(batch, device=device), at]
    return Decoded(out[:, : _width(out)], best.float())


def _width(tokens: Tensor) -> int:
    """Columns up to the last non-pad token of any row (a generated ``<pad>`` may sit inside a caption)."""
    pos = torch.arange(1, tokens.shape[1] + 1, device=tokens.device)
    return int(((tokens != PAD) * pos).max().clamp(min=1)) if tokens.numel() else 1


def greedy_decode(
    model: RSFD, feats: list[Tensor], category: Tensor | None = None, max_len: int | None = None, cache: bool = True
) -> Decoded:
    """Argmax decoding (for tests, quick checks and the speed baseline): stops per video at ``<eos>`` (never as the
    first word); score = sum log p (alpha 0); key/value-cached like :func:`beam_search`."""
    max_len = max_len or model.decoder.max_len
    memory = model.encode(feats)
    b, dev = memory.shape[0], memory.device
    step = _stepper(model, memory, category, 1, cache)
    seqs = torch.full((b, 1), BOS, dtype=torch.long, device=dev)
    out = torch.full((b, max_len - 1), PAD, dtype=torch.long, device=dev)
    score = torch.zeros(b, device=dev)
    active = torch.arange(b, device=dev)
    for t in range(1, max_len):
        logp = F.log_softmax(step(seqs).float(), dim=-1)
        if t == 1:
            logp[:, EOS] = float("-inf")
        val, word = logp.max(dim=-1)
        score[active] += val
        out[active, t - 1] = word
        seqs = torch.cat([seqs, word[:, None]], dim=1)
        ended = word == EOS
        n_ended = int(ended.sum())  # the step's one host sync
        if n_ended == ended.numel():
            break
        if n_ended:  # drop the videos that ended (the cache keeps its rows as they are otherwise)
            keep = (~ended).nonzero().squeeze(1)
            step.select(keep, keep)
            seqs, active = seqs[keep], active[keep]
    return Decoded(out[:, : _width(out)], score)
