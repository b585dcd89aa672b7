"""Caption metrics of the coco-caption protocol: BLEU-1..4, METEOR, ROUGE-L and CIDEr(-D) through ``pycocoevalcap``
(the field's scorer; Chen et al. 2015, "Microsoft COCO Captions: Data Collection and Evaluation Server").

:func:`caption_scores` scores a corpus given as ``{id: [references]}`` / ``{id: [candidate]}``: the captions are
PTB-tokenised and lower-cased with punctuation removed (Stanford CoreNLP's PTBTokenizer, Java, as coco-caption) unless
``tokenize=False`` (then split on whitespace as given), BLEU is corpus-level with the closest reference length,
METEOR 1.5 runs in a Java process (``meteor=False`` leaves it out), CIDEr is pycocoevalcap's ``Cider`` (CIDEr-D:
IDF over the evaluated references, Gaussian length penalty sigma 6, clipped counts, x 10). SPICE is not computed (it
downloads Stanford models). Scores are fractions (BLEU 0.43 = 43.0 in papers; CIDEr 0.53 = 53.0).

:class:`CaptionMetrics` is the torchmetrics wrapper: ``update(candidates, references, ids)`` collects strings as
UTF-8 bytes in tensor states, so they are gathered across processes like any ``cat`` state; ``compute()`` decodes,
keeps the first occurrence of each id (a distributed sampler repeats items to even out the ranks) and scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = ["METRIC_KEYS", "CaptionMetrics", "caption_scores"]

METRIC_KEYS = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider")


def _clean(s: str) -> str:
    # METEOR reads one line per segment and '|||' separates fields: neither may occur inside a caption
    return " ".join(str(s).replace("|||", " ").split())


def caption_scores(references: dict, candidates: dict, tokenize: bool = True, meteor: bool = True) -> dict[str, float]:
    """``references`` {id: [str, ...]} and ``candidates`` {id: [str]} over the same ids -> corpus scores
    ``bleu1..bleu4``, ``meteor`` (when asked), ``rouge_l``, ``cider``."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if set(references) != set(candidates):
        raise ValueError("references and candidates must have the same ids")
    if not references:
        raise ValueError("no captions to score")
    if any(len(v) != 1 for v in candidates.values()) or any(len(v) < 1 for v in references.values()):
        raise ValueError("every id needs exactly one candidate and at least one reference")
    if tokenize:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        tok = PTBTokenizer()
        gts = tok.tokenize({k: [{"caption": _clean(c)} for c in v] for k, v in references.items()})
        res = tok.tokenize({k: [{"caption": _clean(c)} for c in v] for k, v in candidates.items()})
    else:
        gts = {k: [_clean(c) for c in v] for k, v in references.items()}
        res = {k: [_clean(c) for c in v] for k, v in candidates.items()}
    out: dict[str, float] = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out.update({f"bleu{n + 1}": float(b) for n, b in enumerate(bleu)})
    if meteor:
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()
        try:
            out["meteor"] = float(scorer.compute_score(gts, res)[0])
        finally:
            del scorer
    out["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    out["cider"] = float(Cider().compute_score(gts, res)[0])
    return out


def _encode(strings: Sequence[str], device) -> tuple[Tensor, Tensor]:
    data = [s.encode("utf-8") for s in strings]
    flat = b"".join(data)
    return (
        torch.tensor(list(flat), dtype=torch.uint8, device=device),
        torch.tensor([len(d) for d in data], dtype=torch.long, device=device),
    )


def _decode(flat: Tensor, lens: Tensor) -> list[str]:
    raw = bytes(flat.cpu().tolist())
    out, pos = [], 0
    for n in lens.cpu().tolist():
        out.append(raw[pos : pos + n].decode("utf-8"))
        pos += n
    return out


class CaptionMetrics(Metric):
    """Corpus caption metrics accumulated over batches and processes (see the module docstring).

    ``update(candidates, references, ids=None)``: ``candidates`` a list of B strings, ``references`` a list of B lists
    of strings, ``ids`` (B,) integer ids of the items (dataset indices; needed under several processes, where repeated
    items are dropped by id). ``compute()`` -> {``bleu1``..``bleu4``, ``meteor``, ``rouge_l``, ``cider``}
    (fractions)."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, tokenize: bool = True, meteor: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.tokenize, self.meteor = tokenize, meteor
        for name in ("cand_bytes", "cand_lens", "ref_bytes", "ref_lens", "ref_counts", "ids"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self._count = 0

    def update(self, candidates: Sequence[str], references: Sequence[Sequence[str]], ids: Tensor | None = None) -> None:
        if len(candidates) != len(references):
            raise ValueError(f"{len(candidates)} candidates for {len(references)} reference lists")
        if any(len(r) == 0 for r in references):
            raise ValueError("every candidate needs at least one reference caption")
        dev = self.device
        if ids is None:
            if (
                torch.distributed.is_available()
                and torch.distributed.is_initialized()
                and torch.distributed.get_world_size() > 1
            ):
                raise ValueError("under several processes pass ids (dataset indices): automatic ids would collide")
            ids = torch.arange(self._count, self._count + len(candidates), device=dev)
            self._count += len(candidates)
        ids = torch.as_tensor(ids, device=dev).long().reshape(-1)
        if ids.numel() != len(candidates):
            raise ValueError("ids must hold one id per candidate")
        cb, cl = _encode(list(candidates), dev)
        rb, rl = _encode([r for refs in references for r in refs], dev)
        self.cand_bytes.append(cb)
        self.cand_lens.append(cl)
        self.ref_bytes.append(rb)
        self.ref_lens.append(rl)
        self.ref_counts.append(torch.tensor([len(r) for r in references], dtype=torch.long, device=dev))
        self.ids.append(ids)

    def captions(self) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
        """(references, candidates) as ``{id: [...]}``, first occurrence of each id."""
        cands = _decode(dim_zero_cat(self.cand_bytes), dim_zero_cat(self.cand_lens))
        refs_flat = _decode(dim_zero_cat(self.ref_bytes), dim_zero_cat(self.ref_lens))
        counts = dim_zero_cat(self.ref_counts).tolist()
        ids = dim_zero_cat(self.ids).tolist()
        refs, res, pos = {}, {}, 0
        for i, c, n in zip(ids, cands, counts):
            if i not in res:
                res[i], refs[i] = [c], refs_flat[pos : pos + n]
            pos += n
        return refs, res

    def compute(self) -> dict[str, Tensor]:
        refs, res = self.captions()
        scores = caption_scores(refs, res, tokenize=self.tokenize, meteor=self.meteor)
        return {k: torch.tensor(v, dtype=torch.float32) for k, v in scores.items()}

    def reset(self) -> None:
        super().reset()
        self._count = 0
