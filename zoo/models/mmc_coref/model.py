"""The end-to-end coarse-to-fine span model for coreference on a transformers encoder (no Lightning here).

Lee, He, Lewis, Zettlemoyer, "End-to-end Neural Coreference Resolution" (EMNLP 2017) and "Higher-order Coreference
Resolution with Coarse-to-fine Inference" (NAACL 2018); Joshi et al. (BERT/SpanBERT for coreference, 2019/2020);
Xu & Choi, "Revealing the Myth of Higher-Order Inference in Coreference Resolution" (EMNLP 2020, code
lxucs/coref-hoi), which MMC's baseline forks (boyuanzheng010/mmc experiments/). Without higher-order inference
(coref_depth 1):

- span representation g_i = [x_START(i); x_END(i); x̂_i; φ(width_i)], x̂_i = Σ_t a_{i,t} x_t with head attention
  a_{i,t} = softmax_{t ∈ span i}(w_α · x_t) (Lee 2017 eq. 3-5);
- mention score s_m(i) = FFNN_m(g_i) + FFNN_w(φ_prior(width_i)) (the width prior);
- keep the top λ·T spans (λ = top_span_ratio, T = subtokens, at most max_num_extracted_spans) without crossing spans;
- coarse score s_c(i, j) = s_m(i) + s_m(j) + g_i^T W_c g_j + FFNN_d(φ_prior(dist(i, j))) (Lee 2018 eq. 4-5 plus the
  antecedent-distance prior), keep the top K antecedents of each span;
- fine score s_a(i, j) = FFNN_a([g_i; g_j; g_i ∘ g_j; φ(i, j)]) with φ = [same speaker; genre; segment distance;
  antecedent distance (log buckets)], s(i, j) = s_c(i, j) + s_a(i, j), and the dummy antecedent ε with s(i, ε) = 0.

Candidate spans (``span_candidates``), widths counted in subtokens (as coref-hoi):

- ``"release"`` (default; boyuanzheng010/mmc experiments/model.py ``get_predictions_and_loss``, which produced the
  paper's numbers): the token sequence is every attended position, ``[CLS]``/``[SEP]`` included (its preprocessing
  adds them to every segment); a candidate only has to stay inside one utterance. The specials get the release's
  maps (experiments/preprocess.py ``get_sentence_map`` / ``split_into_segments``): a ``[CLS]`` or ``[SEP]`` belongs
  to the utterance that the running count of utterance ends gives at its position (so a segment's final ``[SEP]``
  after an utterance end joins the next utterance, and the next segment's ``[CLS]``) and maps to the word of the
  previous real subtoken (the first word for the document's first ``[CLS]``). The top-span budget ⌊λ·T⌋ counts the
  specials, and when fewer non-crossing spans exist the list is padded with copies of its first span
  (``_extract_top_spans``).
- ``"word_aligned"`` (zoo's earlier behaviour): specials dropped, spans start at a word's first subtoken and end at a
  word's last subtoken (gold mentions are word spans, so this only removes spans that can never be right), no padding.
  On one English dev document it removes 446 of 1,813 candidates and changes the top-span budget (64 vs 66).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

NUM_DISTANCE_BUCKETS = 10  # 0, 1, 2, 3, 4, 5-7, 8-15, 16-31, 32-63, 64+ (Lee et al. 2017)
MASKED = -1e4  # instead of log(0): keeps every output finite; exp(-1e4) is 0 in float32
SPAN_CANDIDATES = ("release", "word_aligned")


def release_token_maps(word: torch.Tensor, sent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Word and utterance index of every token of the flat sequence (specials marked ``-1`` in both) as the MMC
    release's preprocessing assigns them (experiments/preprocess.py): utterances renumbered 0, 1, ... in order; a
    special gets the number of utterance ends before it (the previous real subtoken's utterance, + 1 when that one
    ends there or the document ends) and the previous real subtoken's word (the next one's before the first)."""
    n = word.numel()
    real = word >= 0
    if not real.any():
        return word.clamp(min=0), sent.clamp(min=0)
    idx = torch.arange(n, device=word.device)
    _, utt = torch.unique_consecutive(sent[real], return_inverse=True)
    utt_full = torch.zeros_like(sent)
    utt_full[real] = utt
    prev = torch.cummax(torch.where(real, idx, -1), 0).values
    nxt = torch.cummin(torch.where(real, idx, n).flip(0), 0).values.flip(0)
    has_prev, has_next = prev >= 0, nxt < n
    p, q = prev.clamp(min=0), nxt.clamp(max=n - 1)
    ends_before = utt_full[p] + (~has_next | (utt_full[q] != utt_full[p])).long()
    special_utt = torch.where(has_prev, ends_before, utt_full[q])
    special_word = torch.where(has_prev, word[p], word[q])
    return torch.where(real, word, special_word), torch.where(real, utt_full, special_utt)


def bucket_distance(d: torch.Tensor) -> torch.Tensor:
    """Distances -> 10 buckets: identity below 5, then log2 buckets up to 64+."""
    d = d.clamp(min=0)
    logspace = torch.log2(d.clamp(min=1).float()).floor().long() + 3
    return torch.where(d <= 4, d, logspace).clamp(max=NUM_DISTANCE_BUCKETS - 1)


def make_ffnn(in_dim: int, hidden: int, depth: int, dropout: float, out_dim: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(dropout)]
        d = hidden
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


def build_encoder(config: dict[str, Any] | None = None, name_or_path: str | None = None) -> nn.Module:
    """A transformers encoder with random weights, from ``config`` (``{"model_type": ..., **kwargs}``) or from the
    config file at ``name_or_path`` (a local folder; Hub names need the network). No pooler (the span model does not
    use it, and its weights would never get a gradient)."""
    from transformers import AutoConfig, AutoModel

    if config is not None:
        cfg = dict(config)
        model_type = cfg.pop("model_type")
        hf_config = AutoConfig.for_model(model_type, **cfg)
    elif name_or_path is not None:
        hf_config = AutoConfig.from_pretrained(name_or_path)
    else:
        from zoo.errors import UserError

        raise UserError("build_encoder needs an encoder config dict or a name/path; pass config= or name_or_path=.")
    try:
        return AutoModel.from_config(hf_config, add_pooling_layer=False)
    except TypeError:  # encoders without a pooler option
        return AutoModel.from_config(hf_config)


class CorefModel(nn.Module):
    """Coarse-to-fine span-ranking coreference on ``encoder`` (any transformers model returning
    ``last_hidden_state``).

    ``forward(input_ids, attention_mask, subtoken_map, sentence_map, speaker_ids, genre=None)``, all ``(S, L)``
    (S segments of L positions; ``subtoken_map`` is the word index of each subtoken, -1 at special and padding
    positions) returns a dict; with T real subtokens, C candidate spans, k top spans and K antecedents:

    - ``candidate_starts``/``candidate_ends`` (C,) and ``candidate_mention_scores`` (C,);
    - ``top_span_starts``/``top_span_ends`` (k,) (flat real-subtoken indices), ``top_span_mention_scores`` (k,);
    - ``top_antecedent_idx`` (k, K) into the top spans, ``top_antecedent_mask`` (k, K), ``top_antecedent_scores``
      (k, K + 1) with the dummy ε first (score 0);
    - ``subtoken_to_word`` (T,) for mapping spans back to words.
    """

    fsdp_blocks = ("BertLayer",)  # zoo_fsdp: one FSDP unit per layer of a BERT-family encoder (SpanBERT)

    def __init__(
        self,
        encoder: nn.Module,
        hidden_size: int,
        max_span_width: int = 30,
        feature_emb_size: int = 20,
        ffnn_size: int = 3000,
        ffnn_depth: int = 1,
        dropout: float = 0.3,
        num_genres: int = 7,
        max_segment_distance: int = 3,
        max_num_speakers: int = 200,
        top_span_ratio: float = 0.4,
        max_num_extracted_spans: int = 3900,
        max_top_antecedents: int = 50,
        span_candidates: str = "release",
    ):
        super().__init__()
        from zoo.errors import check_choice

        check_choice("span_candidates", span_candidates, SPAN_CANDIDATES, where="CorefModel")
        self.span_candidates = span_candidates
        self.encoder = encoder
        self.max_span_width, self.top_span_ratio = max_span_width, top_span_ratio
        self.max_num_extracted_spans, self.max_top_antecedents = max_num_extracted_spans, max_top_antecedents
        self.max_segment_distance, self.max_num_speakers = max_segment_distance, max_num_speakers
        f, h = feature_emb_size, hidden_size
        span_dim = 3 * h + f
        pair_dim = 3 * span_dim + 4 * f
        self.dropout = nn.Dropout(dropout)
        # span representation
        self.span_width_emb = nn.Embedding(max_span_width, f)
        self.head_attention = nn.Linear(h, 1)  # w_α
        # mention scores (+ width prior)
        self.mention_ffnn = make_ffnn(span_dim, ffnn_size, ffnn_depth, dropout)
        self.width_prior_emb = nn.Embedding(max_span_width, f)
        self.width_prior_ffnn = make_ffnn(f, ffnn_size, ffnn_depth, dropout)
        # coarse antecedent scores (+ distance prior)
        self.coarse_bilinear = nn.Linear(span_dim, span_dim)
        self.distance_prior_emb = nn.Embedding(NUM_DISTANCE_BUCKETS, f)
        self.distance_prior_ffnn = nn.Linear(f, 1)
        # fine pair features and scores
        self.same_speaker_emb = nn.Embedding(2, f)
        self.genre_emb = nn.Embedding(num_genres, f)
        self.segment_distance_emb = nn.Embedding(max_segment_distance, f)
        self.antecedent_distance_emb = nn.Embedding(NUM_DISTANCE_BUCKETS, f)
        self.pair_ffnn = make_ffnn(pair_dim, ffnn_size, ffnn_depth, dropout)
        # 1 once pretrained encoder weights were loaded (a fine-tuned export restores it, so they are not reloaded)
        self.register_buffer("encoder_initialised", torch.zeros((), dtype=torch.long))

    # ----------------------------------------------------------------------------------------- spans
    def candidate_spans(self, word: torch.Tensor, sent: torch.Tensor):
        """All (start, end) with width ≤ max_span_width subtokens inside one utterance (``sent``); with
        ``span_candidates="word_aligned"`` also starting at a word's first and ending at a word's last subtoken."""
        T, W = word.numel(), self.max_span_width
        dev = word.device
        starts = torch.arange(T, device=dev)[:, None].expand(T, W)
        ends = starts + torch.arange(W, device=dev)[None, :]
        inside = ends < T
        ends_c = ends.clamp(max=T - 1)
        word_start = torch.ones(T, dtype=torch.bool, device=dev)
        word_start[1:] = word[1:] != word[:-1]
        word_end = torch.ones(T, dtype=torch.bool, device=dev)
        word_end[:-1] = word[:-1] != word[1:]
        ok = inside & (sent[starts] == sent[ends_c])
        if self.span_candidates == "word_aligned":
            ok = ok & word_start[starts] & word_end[ends_c]
        return starts[ok], ends_c[ok]

    def span_embeddings(self, x: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """g_i = [x_start; x_end; head-attention average; width embedding], (C, 3H + F)."""
        T = x.shape[0]
        width = ends - starts
        offsets = torch.arange(self.max_span_width, device=x.device)
        idx = starts[:, None] + offsets[None, :]
        in_span = idx <= ends[:, None]
        idx = idx.clamp(max=T - 1)
        logits = self.head_attention(x).squeeze(-1)[idx].masked_fill(~in_span, float("-inf"))
        attn = logits.softmax(-1)
        # Σ_t a_t x_t without materialising (C, W, H): an embedding bag with per-sample weights
        head = F.embedding_bag(idx, x, per_sample_weights=attn, mode="sum")
        width_emb = self.dropout(self.span_width_emb(width))
        return torch.cat([x[starts], x[ends], head, width_emb], dim=-1)

    @staticmethod
    def extract_top_spans(
        scores: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor, k: int, pad: bool = False
    ) -> torch.Tensor:
        """Indices of the ``k`` best spans with no two crossing (overlapping but not nested), sorted by (start, end)
        (coref-hoi's ``_extract_top_spans``); ``pad``: when fewer than ``k`` exist, append copies of the first one up
        to ``k`` (the release does)."""
        order = torch.argsort(scores.detach(), descending=True).tolist()
        s_list, e_list = starts.tolist(), ends.tolist()
        chosen: list[int] = []
        max_end: dict[int, int] = {}  # start -> largest end chosen with that start
        min_start: dict[int, int] = {}  # end -> smallest start chosen with that end
        for i in order:
            s, e = s_list[i], e_list[i]
            crossing = False
            for t in range(s, e + 1):
                if t > s and t in max_end and max_end[t] > e:  # a chosen span starts inside and ends outside
                    crossing = True
                    break
                if t < e and t in min_start and min_start[t] < s:  # a chosen span ends inside and starts before
                    crossing = True
                    break
            if crossing:
                continue
            chosen.append(i)
            max_end[s] = max(max_end.get(s, e), e)
            min_start[e] = min(min_start.get(e, s), s)
            if len(chosen) == k:
                break
        chosen.sort(key=lambda i: (s_list[i], e_list[i]))
        if pad and chosen and len(chosen) < k:
            chosen += [chosen[0]] * (k - len(chosen))
        return torch.tensor(chosen, dtype=torch.long, device=scores.device)

    # ----------------------------------------------------------------------------------------- forward
    def forward(self, input_ids, attention_mask, subtoken_map, sentence_map, speaker_ids, genre=None):
        dev = input_ids.device
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (S, L, H)
        release = self.span_candidates == "release"
        # the token sequence: every attended position (the release keeps [CLS]/[SEP]) or the real subtokens only
        tokens = attention_mask.bool() if release else subtoken_map >= 0
        if not (subtoken_map[tokens] >= 0).any():
            from zoo.errors import UserError

            raise UserError("the document has no subtokens (subtoken_map is -1 everywhere); give it at least one word")
        x = hidden[tokens]  # (T, H)
        word, sent, speaker = subtoken_map[tokens], sentence_map[tokens], speaker_ids[tokens]
        real_index = (word >= 0).nonzero().squeeze(1)  # position of each real subtoken in the sequence
        if release:
            word, sent = release_token_maps(word, sent)
        segment = torch.arange(input_ids.shape[0], device=dev)[:, None].expand_as(input_ids)[tokens]
        T = x.shape[0]

        starts, ends = self.candidate_spans(word, sent)
        span_emb = self.span_embeddings(x, starts, ends)  # (C, D)
        width = ends - starts
        # width prior: one score per width, computed on the embedding table and looked up (coref-hoi)
        width_prior = self.width_prior_ffnn(self.dropout(self.width_prior_emb.weight)).squeeze(-1)
        mention_scores = self.mention_ffnn(span_emb).squeeze(-1) + width_prior[width]

        k = max(1, min(self.max_num_extracted_spans, int(math.floor(T * self.top_span_ratio))))
        if not release:
            k = min(k, starts.numel())
        top = self.extract_top_spans(mention_scores, starts, ends, k, pad=release)
        k = top.numel()
        top_starts, top_ends = starts[top], ends[top]
        top_emb, top_scores = span_emb[top], mention_scores[top]
        top_speaker, top_segment = speaker[top_starts], segment[top_starts]

        # coarse scores over all earlier top spans
        ant_offsets = torch.arange(k, device=dev)[:, None] - torch.arange(k, device=dev)[None, :]
        ant_mask = ant_offsets >= 1
        src = self.dropout(self.coarse_bilinear(top_emb))
        tgt = self.dropout(top_emb)
        distance_prior = self.distance_prior_ffnn(self.dropout(self.distance_prior_emb.weight)).squeeze(-1)
        coarse = (
            top_scores[:, None] + top_scores[None, :] + src @ tgt.t() + distance_prior[bucket_distance(ant_offsets)]
        )
        coarse = coarse.masked_fill(~ant_mask, MASKED)
        K = min(self.max_top_antecedents, k)
        top_coarse, top_ant = torch.topk(coarse, K, dim=1, sorted=False)
        top_ant_mask = torch.gather(ant_mask, 1, top_ant)
        top_ant_offsets = torch.gather(ant_offsets, 1, top_ant)

        # fine pair scores
        g = genre if genre is not None else torch.zeros((), dtype=torch.long, device=dev)
        same_speaker = (top_speaker[:, None] == top_speaker[top_ant]).long()
        seg_dist = (top_segment[:, None] - top_segment[top_ant]).clamp(0, self.max_segment_distance - 1)
        features = torch.cat(
            [
                self.same_speaker_emb(same_speaker),
                self.genre_emb(g.reshape(())).expand(k, K, -1),
                self.segment_distance_emb(seg_dist),
                self.antecedent_distance_emb(bucket_distance(top_ant_offsets)),
            ],
            dim=-1,
        )
        features = self.dropout(features)
        target = top_emb[:, None, :].expand(k, K, -1)
        ante = top_emb[top_ant]
        pair = torch.cat([target, ante, target * ante, features], dim=-1)
        fine = self.pair_ffnn(pair).squeeze(-1)
        scores = (top_coarse + fine).masked_fill(~top_ant_mask, MASKED)
        scores = torch.cat([torch.zeros(k, 1, device=dev, dtype=scores.dtype), scores], dim=1)
        return {
            "candidate_starts": starts,
            "candidate_ends": ends,
            "candidate_mention_scores": mention_scores,
            "top_span_starts": top_starts,
            "top_span_ends": top_ends,
            "top_span_mention_scores": top_scores,
            "top_antecedent_idx": top_ant,
            "top_antecedent_mask": top_ant_mask,
            "top_antecedent_scores": scores,
            "subtoken_to_word": word,
            "real_token_index": real_index,
        }


# ============================================================================================= objective + decoding
def span_cluster_ids(starts, ends, gold_starts, gold_ends, gold_cluster_ids) -> torch.Tensor:
    """Gold cluster id (≥ 1) of each span, 0 for spans that are not gold mentions."""
    if gold_starts.numel() == 0:
        return torch.zeros_like(starts)
    same = (starts[:, None] == gold_starts[None, :]) & (ends[:, None] == gold_ends[None, :])
    return (same.long() * gold_cluster_ids[None, :]).max(dim=1).values


def coref_loss(
    out: dict,
    gold_starts,
    gold_ends,
    gold_cluster_ids,
    mention_loss_coef: float = 0.0,
    non_gold_mention_weight: float = 1.0,
) -> tuple[torch.Tensor, dict]:
    """Marginal log-likelihood of all gold antecedents in the top-K (ε when none; Lee 2017 eq. 8), summed over the top
    spans, plus ``mention_loss_coef`` × the binary mention loss on the top spans (coref-hoi ``weighted_all``: the
    non-gold term weighted by ``non_gold_mention_weight``; 1.0 is ``all``)."""
    if "real_token_index" in out:  # gold spans are real-subtoken indices; the sequence may hold [CLS]/[SEP] too
        gold_starts, gold_ends = out["real_token_index"][gold_starts], out["real_token_index"][gold_ends]
    cid = span_cluster_ids(out["top_span_starts"], out["top_span_ends"], gold_starts, gold_ends, gold_cluster_ids)
    ant_cid = cid[out["top_antecedent_idx"]].masked_fill(~out["top_antecedent_mask"], -1)
    same = (ant_cid == cid[:, None]) & (cid[:, None] > 0)
    dummy = ~same.any(dim=1, keepdim=True)
    gold = torch.cat([dummy, same], dim=1)
    scores = out["top_antecedent_scores"]
    log_norm = torch.logsumexp(scores, dim=1)
    log_marginal = torch.logsumexp(scores.masked_fill(~gold, MASKED * 10), dim=1)
    loss_coref = (log_norm - log_marginal).sum()
    ms = out["top_span_mention_scores"]
    is_gold = (cid > 0).float()
    loss_mention = (
        -(F.logsigmoid(ms) * is_gold).sum() - non_gold_mention_weight * (F.logsigmoid(-ms) * (1 - is_gold)).sum()
    )
    loss = loss_coref + mention_loss_coef * loss_mention if mention_loss_coef else loss_coref
    return loss, {
        "loss_coref": loss_coref.detach(),
        "loss_mention": loss_mention.detach(),
        "top_span_recall": (is_gold.sum() / max(1, gold_starts.numel())).detach(),
    }


def predict_clusters(out: dict, singletons: bool = True) -> list[list[tuple[int, int]]]:
    """Clusters of inclusive word spans, decoded as the release (experiments/model.py ``get_predicted_clusters``): each
    top span links to its best antecedent (mentions are keyed by their subtoken span, so repeated top spans are one
    mention); afterwards a span whose best antecedent is ε and whose mention score is > 0 becomes a cluster of its own
    unless it already is in one (MMC's singleton prediction)."""
    starts = out["top_span_starts"].tolist()
    ends = out["top_span_ends"].tolist()
    best = out["top_antecedent_scores"].argmax(dim=1).tolist()
    ant = out["top_antecedent_idx"].tolist()
    ms = out["top_span_mention_scores"].tolist()
    w = out["subtoken_to_word"].tolist()
    cluster_of: dict[tuple[int, int], int] = {}
    clusters: list[list[tuple[int, int]]] = []
    for i in range(len(starts)):
        if best[i] == 0:
            continue
        j = ant[i][best[i] - 1]
        antecedent = (starts[j], ends[j])
        if antecedent not in cluster_of:
            cluster_of[antecedent] = len(clusters)
            clusters.append([antecedent])
        c = cluster_of[antecedent]
        mention = (starts[i], ends[i])
        clusters[c].append(mention)
        cluster_of[mention] = c
    if singletons:
        for i in range(len(starts)):
            mention = (starts[i], ends[i])
            if best[i] == 0 and ms[i] > 0 and mention not in cluster_of:
                cluster_of[mention] = len(clusters)
                clusters.append([mention])
    return [sorted({(w[s], w[e]) for s, e in c}) for c in clusters]
