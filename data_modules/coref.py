"""MMC coreference data: CoNLL-2012 and c2f jsonlines readers, subtoken segmentation, ``MMCDataModule``.

MMC (Zheng, Xia, Yarmohammadi, Van Durme, "Multilingual Coreference Resolution in Multiparty Dialogue", TACL 2023,
arXiv 2208.01307; data: github.com/boyuanzheng010/mmc ``data_creation/data/``).

Formats (§3.3):

- CoNLL-2012 ``*.v4_gold_conll``: ``#begin document (<scene>); part NNN`` ... ``#end document``; one token per line
  ``doc part idx word na na na na na SPEAKER na na na COREF``. The speaker may contain spaces (``Mrs Davis``), so a
  line is read as 9 fixed columns, the last 4 columns, and the speaker = everything in between. A blank line ends an
  utterance (the unit the model's ``sentence_map`` uses). COREF is bracket notation joined by ``|``: ``(12)``,
  ``(12``, ``12)``, ``-``. Singletons are annotated.
- c2f / coref-hoi jsonlines (``*.512.jsonlines``): ``doc_key``, ``sentences`` (subtoken segments with specials),
  ``speakers`` (per subtoken), ``clusters`` (inclusive subtoken spans), ``sentence_map``, ``subtoken_map``
  (subtoken -> word) and, when present, ``tokens`` (the words). It is turned back into the same word-level
  :class:`Document` as the CoNLL reader, so any tokenizer can re-segment it.

Both give :class:`Document` (words, per-word speaker and utterance index, clusters of inclusive word spans).
:func:`tokenize_document` splits a document into segments of at most ``max_segment_len`` subtokens (specials
included) with any Hugging Face tokenizer, breaking at utterance ends where possible and at word ends otherwise (as
coref-hoi's ``split_into_segments``), and keeps the subtoken -> word map, the subtoken -> utterance map and a
speaker id per subtoken.

Layout under ``root`` (the repository's ``data_creation/data`` folder, or its ``conll_format`` / ``jsonline_format``
sub-folder)::

    conll_format/mmc_en/{train,dev,test}.english.v4_gold_conll
    conll_format/mmc_zh_corrected/{...}.chinese.v4_gold_conll   (also mmc_zh_uncorrected)
    conll_format/mmc_fa_corrected/{...}.farsi.v4_gold_conll     (also mmc_fa)
    jsonline_format/<variant>/{...}.<language>.512.jsonlines

The train files are larger than 4 MiB and are not in ``shared/data/mmc`` (dev and test only): with ``train_split``
"train" and no train file the module says where to get it, and ``train_split="dev"`` trains on the dev split (the
protocol of the zoo's offline results, logged as such).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule

from zoo.errors import DataNotFoundError, UserError, check_choice, check_positive
from zoo.sizes import follow_model, model_data_config
from zoo.text.encoders import resolve_encoder

log = logging.getLogger(__name__)

LANGUAGES = {"en": "english", "zh": "chinese", "fa": "farsi"}
DEFAULT_VARIANT = {"en": "mmc_en", "zh": "mmc_zh_corrected", "fa": "mmc_fa_corrected"}
_BEGIN = re.compile(r"^#begin document \((.*)\); part (\d+)\s*$")
_COREF_PART = re.compile(r"^(\()?(\d+)(\))?$")
# doc part idx WORD c4..c8 SPEAKER(with spaces) c10..c12 COREF; WORD is matched lazily so a whitespace-only word
# (10 lines of the en/zh/fa test files hold one) still parses; single spaces separate the columns.
_TOKEN_LINE = re.compile(r"^(\S+) (\S+) (\S+) (.*?) (\S+) (\S+) (\S+) (\S+) (\S+) (.+) (\S+) (\S+) (\S+) (\S+)$")


class CorefFormatError(ValueError):
    """A malformed line in a coreference file (the message names the file and the line)."""


@dataclass
class Document:
    """One document at the word level.

    ``clusters``: list of clusters, each a list of inclusive ``(start, end)`` word spans, in order of first mention.
    ``speakers[i]`` / ``sentence_ids[i]``: speaker name and utterance index of word ``i``.
    """

    doc_key: str
    words: list[str]
    speakers: list[str]
    sentence_ids: list[int]
    clusters: list[list[tuple[int, int]]] = field(default_factory=list)

    @property
    def num_mentions(self) -> int:
        return sum(len(c) for c in self.clusters)

    @property
    def num_singletons(self) -> int:
        return sum(len(c) == 1 for c in self.clusters)

    @property
    def num_sentences(self) -> int:
        return len(set(self.sentence_ids))


# ============================================================================================= CoNLL-2012
def _parse_coref(col: str, word_idx: int, open_spans: dict[int, list[int]], spans: dict[int, list], where: str):
    if col in ("-", "_"):
        return
    for part in col.split("|"):
        m = _COREF_PART.match(part)
        if m is None:
            raise CorefFormatError(f"{where}: bad coreference field {col!r} (expected e.g. '(3)', '(3', '3)', '-')")
        opened, cid, closed = m.group(1) is not None, int(m.group(2)), m.group(3) is not None
        if not opened and not closed:
            raise CorefFormatError(f"{where}: bad coreference field {col!r} (a cluster id without a bracket)")
        if opened and closed:
            spans.setdefault(cid, []).append((word_idx, word_idx))
        elif opened:
            open_spans.setdefault(cid, []).append(word_idx)
        else:
            if not open_spans.get(cid):
                raise CorefFormatError(f"{where}: '{part}' closes cluster {cid}, which has no open mention")
            start = open_spans[cid].pop()
            spans.setdefault(cid, []).append((start, word_idx))


def read_conll(path: str | os.PathLike) -> list[Document]:
    """Read a CoNLL-2012 ``*_gold_conll`` file into documents (one per ``#begin document ... part``)."""
    path = Path(path)
    docs: list[Document] = []
    cur: dict[str, Any] | None = None

    def finish(where: str):
        left = {k: v for k, v in cur["open"].items() if v}
        if left:  # one en test document has one: the reference readers (coref-hoi minimize.py) drop it too
            log.warning(
                "%s: document %s ends with unclosed mentions %s (cluster id: start words); dropped",
                where,
                cur["key"],
                left,
            )
        order = sorted(cur["spans"], key=lambda c: min(cur["spans"][c]))
        clusters = [sorted(set(cur["spans"][c])) for c in order]
        docs.append(Document(cur["key"], cur["words"], cur["speakers"], cur["sents"], clusters))

    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip("\n").rstrip("\r")
            where = f"{path}:{lineno}"
            if line.startswith("#begin document"):
                if cur is not None:
                    raise CorefFormatError(
                        f"{where}: '#begin document' inside document {cur['key']} (no '#end document')"
                    )
                m = _BEGIN.match(line)
                if m is None:
                    raise CorefFormatError(
                        f"{where}: malformed header {line!r} (expected '#begin document (KEY); part NNN')"
                    )
                cur = {
                    "key": f"{m.group(1)}_{int(m.group(2))}",
                    "words": [],
                    "speakers": [],
                    "sents": [],
                    "sent": 0,
                    "open": {},
                    "spans": {},
                    "in_sent": False,
                }
                continue
            if line.startswith("#end document"):
                if cur is None:
                    raise CorefFormatError(f"{where}: '#end document' without '#begin document'")
                finish(where)
                cur = None
                continue
            if not line.strip():
                if cur is not None and cur["in_sent"]:
                    cur["sent"] += 1
                    cur["in_sent"] = False
                continue
            if cur is None:
                raise CorefFormatError(f"{where}: token line outside a document (missing '#begin document')")
            m = _TOKEN_LINE.match(line.replace("\t", " "))
            if m is None:
                raise CorefFormatError(
                    f"{where}: {len(line.split())} columns, expected at least 14 "
                    "('doc part idx word na na na na na SPEAKER na na na COREF', single spaces)"
                )
            cols = m.groups()
            w = len(cur["words"])
            _parse_coref(cols[-1], w, cur["open"], cur["spans"], where)
            cur["words"].append(cols[3])
            cur["speakers"].append(cols[9])
            cur["sents"].append(cur["sent"])
            cur["in_sent"] = True
    if cur is not None:
        raise CorefFormatError(f"{path}: end of file inside document {cur['key']} (missing '#end document')")
    return docs


# ============================================================================================= jsonlines
def _strip_subtoken(t: str) -> str:
    return t[2:] if t.startswith("##") else t.lstrip("\u2581")


def read_jsonlines(path: str | os.PathLike) -> list[Document]:
    """Read a c2f / coref-hoi jsonlines file into word-level documents (subtoken clusters mapped to words)."""
    path = Path(path)
    docs = []
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                d = json.loads(raw)
            except json.JSONDecodeError as e:
                raise CorefFormatError(f"{where}: not a JSON object ({e})") from None
            missing = [
                k
                for k in ("doc_key", "sentences", "speakers", "clusters", "sentence_map", "subtoken_map")
                if k not in d
            ]
            if missing:
                raise CorefFormatError(f"{where}: jsonlines document lacks keys {missing}")
            subtoks = [t for seg in d["sentences"] for t in seg]
            spk = [s for seg in d["speakers"] for s in seg]
            smap, wmap = d["sentence_map"], d["subtoken_map"]
            if not (len(subtoks) == len(spk) == len(smap) == len(wmap)):
                raise CorefFormatError(
                    f"{where}: sentences/speakers/sentence_map/subtoken_map lengths differ "
                    f"({len(subtoks)}, {len(spk)}, {len(smap)}, {len(wmap)})"
                )
            n_words = max(wmap) + 1 if wmap else 0
            speakers = [""] * n_words
            sents = [0] * n_words
            pieces: list[list[str]] = [[] for _ in range(n_words)]
            special = {"[CLS]", "[SEP]", "<s>", "</s>"}
            for t, s, sm, wm in zip(subtoks, spk, smap, wmap):
                if t in special or s == "[SPL]":
                    continue
                speakers[wm], sents[wm] = s, sm
                pieces[wm].append(_strip_subtoken(t))
            words = d.get("tokens") or ["".join(p) for p in pieces]
            if len(words) != n_words:
                raise CorefFormatError(f"{where}: {len(words)} tokens but subtoken_map names {n_words} words")
            clusters = []
            for c in d["clusters"]:
                spans = sorted({(wmap[s], wmap[e]) for s, e in c})
                clusters.append(spans)
            clusters.sort(key=lambda c: c[0])
            docs.append(Document(d["doc_key"], list(words), speakers, sents, clusters))
    return docs


# ============================================================================================= tokenisation
def load_tokenizer(encoder: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_encoder(encoder))
    # whole documents are tokenised at once and then split into segments here: the model's length limit does not
    # apply to that call (silences the "longer than the specified maximum sequence length" warning)
    tok.model_max_length = 10**9
    return tok


def tokenize_document(
    doc: Document, tokenizer, max_segment_len: int = 512, max_num_speakers: int = 200, genre: int = 0
) -> dict[str, Any]:
    """Split ``doc`` into segments of at most ``max_segment_len`` subtokens (``[CLS] ... [SEP]`` included).

    Returns plain lists: ``input_ids`` (segments), ``subtoken_map`` / ``sentence_map`` / ``speaker_ids`` per segment
    position (``-1`` / ``-1`` / ``0`` at the special tokens), gold mentions as flat real-subtoken indices
    (``gold_starts``, ``gold_ends``, ``gold_cluster_ids`` from 1) and the word-level ``clusters`` for scoring.
    Speaker ids are per document (1, 2, ... in order of appearance, capped at ``max_num_speakers - 1``); the model
    only compares them.
    """
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls_id is None or sep_id is None:  # sentencepiece models without CLS/SEP names use BOS/EOS
        cls_id, sep_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    if cls_id is None or sep_id is None:
        raise ValueError(f"tokenizer {type(tokenizer).__name__} has neither CLS/SEP nor BOS/EOS special tokens")
    body = max_segment_len - 2
    if body < 1:
        raise ValueError(f"max_segment_len={max_segment_len} leaves no room beside the two special tokens")
    enc = tokenizer(doc.words, is_split_into_words=True, add_special_tokens=False) if doc.words else None
    ids, word_of = [], []
    if enc is not None:
        ids = list(enc["input_ids"])
        word_of = list(enc.word_ids())
    # A word the tokenizer drops (e.g. zero-width characters) still needs one subtoken: use UNK.
    seen = set(w for w in word_of if w is not None)
    if len(seen) < len(doc.words):
        ids2, map2 = [], []
        by_word: dict[int, list[int]] = {}
        for t, w in zip(ids, word_of):
            by_word.setdefault(w, []).append(t)
        for w in range(len(doc.words)):
            toks = by_word.get(w) or [tokenizer.unk_token_id if tokenizer.unk_token_id is not None else sep_id]
            ids2 += toks
            map2 += [w] * len(toks)
        ids, word_of = ids2, map2
    n = len(ids)
    sent_of = [doc.sentence_ids[w] for w in word_of]
    spk_names: dict[str, int] = {}
    spk_of = []
    for w in word_of:
        s = doc.speakers[w]
        if s not in spk_names:
            spk_names[s] = min(len(spk_names) + 1, max_num_speakers - 1)
        spk_of.append(spk_names[s])

    # segment ends: last subtoken index of each segment (utterance end preferred, word end otherwise)
    ends, start = [], 0
    while start < n:
        end = min(start + body, n) - 1
        if end < n - 1:
            e = end
            while e >= start and not (e + 1 < n and sent_of[e] != sent_of[e + 1]):
                e -= 1
            if e < start:  # the utterance is longer than a segment: break at a word end
                e = end
                while e >= start and word_of[e] == word_of[e + 1]:
                    e -= 1
                if e < start:
                    raise ValueError(f"{doc.doc_key}: a word is longer than max_segment_len={max_segment_len}")
            end = e
        ends.append(end)
        start = end + 1

    out = {
        "doc_key": doc.doc_key,
        "input_ids": [],
        "subtoken_map": [],
        "sentence_map": [],
        "speaker_ids": [],
        "genre": genre,
    }
    start = 0
    for end in ends:
        seg = slice(start, end + 1)
        out["input_ids"].append([cls_id, *ids[seg], sep_id])
        out["subtoken_map"].append([-1, *word_of[seg], -1])
        out["sentence_map"].append([-1, *sent_of[seg], -1])
        out["speaker_ids"].append([0, *spk_of[seg], 0])
        start = end + 1

    first_sub, last_sub = {}, {}
    for i, w in enumerate(word_of):
        first_sub.setdefault(w, i)
        last_sub[w] = i
    gs, ge, gc = [], [], []
    for k, c in enumerate(doc.clusters, 1):
        for s, e in c:
            gs.append(first_sub[s])
            ge.append(last_sub[e])
            gc.append(k)
    out.update(
        gold_starts=gs,
        gold_ends=ge,
        gold_cluster_ids=gc,
        clusters=[[tuple(m) for m in c] for c in doc.clusters],
        num_words=len(doc.words),
    )
    return out


def to_jsonlines_record(doc: Document, tokenizer, max_segment_len: int = 512) -> dict[str, Any]:
    """``doc`` in the c2f / coref-hoi jsonlines layout for ``tokenizer`` (segments with their special tokens,
    per-subtoken speakers with ``[SPL]`` at the specials, clusters of inclusive subtoken indices over the concatenated
    segments, ``sentence_map``/``subtoken_map`` with the specials mapped to the neighbouring word) plus ``tokens``.
    :func:`read_jsonlines` reads it back into the same :class:`Document`."""
    ex = tokenize_document(doc, tokenizer, max_segment_len)
    sentences, speakers, smap, wmap = [], [], [], []
    flat_of_real: list[int] = []  # real-subtoken index -> index over the concatenated segments
    prev_word, prev_sent = 0, 0
    for ids, sub, sent in zip(ex["input_ids"], ex["subtoken_map"], ex["sentence_map"]):
        sentences.append(tokenizer.convert_ids_to_tokens(ids))
        for w, u in zip(sub, sent):
            if w >= 0:
                flat_of_real.append(len(wmap))
                prev_word, prev_sent = w, u
                speakers.append(doc.speakers[w])
            else:
                speakers.append("[SPL]")
            wmap.append(prev_word if w < 0 else w)
            smap.append(prev_sent if u < 0 else u)
    clusters: dict[int, list[list[int]]] = {}
    for s, e, c in zip(ex["gold_starts"], ex["gold_ends"], ex["gold_cluster_ids"]):
        clusters.setdefault(c, []).append([flat_of_real[s], flat_of_real[e]])
    seg_speakers, i = [], 0
    for seg in sentences:
        seg_speakers.append(speakers[i : i + len(seg)])
        i += len(seg)
    return {
        "doc_key": doc.doc_key,
        "tokens": list(doc.words),
        "sentences": sentences,
        "speakers": seg_speakers,
        "clusters": [clusters[c] for c in sorted(clusters)],
        "sentence_map": smap,
        "subtoken_map": wmap,
        "constituents": [],
        "ner": [],
        "pronouns": [],
    }


def write_jsonlines(docs: list[Document], path: str | os.PathLike, tokenizer, max_segment_len: int = 512) -> Path:
    """Write documents as a c2f / coref-hoi ``*.jsonlines`` file (one :func:`to_jsonlines_record` per line)."""
    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(to_jsonlines_record(d, tokenizer, max_segment_len), ensure_ascii=False) + "\n")
    return path


def truncate_segments(example: dict[str, Any], max_segments: int, rng: random.Random) -> dict[str, Any]:
    """Keep a random run of ``max_segments`` consecutive segments (coref-hoi's ``max_training_sentences``) and the
    gold mentions inside it; word-level clusters are dropped (training only)."""
    n_seg = len(example["input_ids"])
    if n_seg <= max_segments:
        return example
    first = rng.randint(0, n_seg - max_segments)
    lens = [sum(1 for w in seg if w >= 0) for seg in example["subtoken_map"]]
    offset = sum(lens[:first])
    width = sum(lens[first : first + max_segments])
    out = dict(example)
    for k in ("input_ids", "subtoken_map", "sentence_map", "speaker_ids"):
        out[k] = example[k][first : first + max_segments]
    keep = [
        i
        for i, (s, e) in enumerate(zip(example["gold_starts"], example["gold_ends"]))
        if s >= offset and e < offset + width
    ]
    out["gold_starts"] = [example["gold_starts"][i] - offset for i in keep]
    out["gold_ends"] = [example["gold_ends"][i] - offset for i in keep]
    out["gold_cluster_ids"] = [example["gold_cluster_ids"][i] for i in keep]
    out["clusters"] = None
    return out


def collate_document(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """One document per batch (the c2f model scores spans within a document): lists -> padded tensors."""
    import torch

    if len(batch) != 1:
        raise ValueError(f"coreference batches hold one document each (batch_size=1), got {len(batch)}")
    ex = batch[0]
    L = max(len(s) for s in ex["input_ids"])

    def pad(rows, value):
        return torch.tensor([r + [value] * (L - len(r)) for r in rows], dtype=torch.long)

    ids = pad(ex["input_ids"], 0)
    mask = pad([[1] * len(r) for r in ex["input_ids"]], 0)
    return {
        "doc_key": ex["doc_key"],
        "input_ids": ids,
        "attention_mask": mask,
        "subtoken_map": pad(ex["subtoken_map"], -1),
        "sentence_map": pad(ex["sentence_map"], -1),
        "speaker_ids": pad(ex["speaker_ids"], 0),
        "genre": torch.tensor(ex.get("genre", 0), dtype=torch.long),
        "gold_starts": torch.tensor(ex["gold_starts"], dtype=torch.long),
        "gold_ends": torch.tensor(ex["gold_ends"], dtype=torch.long),
        "gold_cluster_ids": torch.tensor(ex["gold_cluster_ids"], dtype=torch.long),
        "clusters": ex.get("clusters"),
    }


# ============================================================================================= files
def split_file(
    root: str | os.PathLike, language: str, split: str, variant: str | None = None, fmt: str = "conll"
) -> Path:
    """The file of one split, e.g. ``<root>/conll_format/mmc_en/dev.english.v4_gold_conll``; a clear error if absent."""
    check_choice("language", language, sorted(LANGUAGES), where="MMC data")
    check_choice("format", fmt, ("conll", "jsonlines"), where="MMC data")
    variant = variant or DEFAULT_VARIANT[language]
    lang = LANGUAGES[language]
    sub, name = (
        ("conll_format", f"{split}.{lang}.v4_gold_conll")
        if fmt == "conll"
        else ("jsonline_format", f"{split}.{lang}.512.jsonlines")
    )
    root = Path(root).expanduser()
    candidates = [root / sub / variant / name, root / variant / name, root / name]
    for c in candidates:
        if c.is_file():
            return c
    hint = ""
    if split == "train":
        hint = (
            " The MMC train files (> 4 MiB) are not in shared/data/mmc: get them from github.com/boyuanzheng010/mmc "
            "(data_creation/data/conll_format/) or the HF dataset coref-data/mmc_raw, or train on the dev split "
            "with train_split='dev' (the zoo's offline protocol)."
        )
    raise FileNotFoundError(
        f"MMC {language} {split} ({variant}, {fmt}) not found under {root}; expected {candidates[0]} "
        f"(layout: <root>/{sub}/<variant>/{{train,dev,test}}.{lang}."
        f"{'v4_gold_conll' if fmt == 'conll' else '512.jsonlines'})." + hint
    )


def read_split(root, language: str, split: str, variant: str | None = None, fmt: str = "conll") -> list[Document]:
    path = split_file(root, language, split, variant, fmt)
    return read_conll(path) if fmt == "conll" else read_jsonlines(path)


def split_stats(docs: list[Document]) -> dict[str, int]:
    """The spec's table columns (§3.4): documents, words, utterances, mentions, clusters, singletons, max width."""
    return {
        "docs": len(docs),
        "words": sum(len(d.words) for d in docs),
        "utterances": sum(d.num_sentences for d in docs),
        "mentions": sum(d.num_mentions for d in docs),
        "clusters": sum(len(d.clusters) for d in docs),
        "singletons": sum(d.num_singletons for d in docs),
        "max_mention_width": max((e - s + 1 for d in docs for c in d.clusters for s, e in c), default=0),
    }


class _Docs:
    def __init__(self, examples, max_segments: int | None = None, seed: int = 0):
        self.examples, self.max_segments = examples, max_segments
        self.rng = random.Random(seed)

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        ex = self.examples[i]
        return truncate_segments(ex, self.max_segments, self.rng) if self.max_segments else ex


class MMCDataModule(LightningDataModule):
    """MMC documents, tokenised for ``encoder`` (any Hugging Face tokenizer by name or path; ``pkg:PACKAGE/SUB`` for
    one shipped in an installed package), one document per batch.

    Data follows the model: ``encoder``, ``max_training_segments`` and ``max_num_speakers`` left ``None`` are read in
    ``setup`` from the attached ``MMCCorefModule.data_config()`` (its encoder's tokenizer, the segment distances and
    speakers its span model was built for); a value set here must agree with the model's. Without a model, set them.

    Args:
        language: "en", "zh" or "fa". ``variant`` picks the folder (default mmc_en / mmc_zh_corrected /
            mmc_fa_corrected; also mmc_zh_uncorrected, mmc_fa).
        root: the MMC ``data_creation/data`` folder (or its ``conll_format`` sub-folder). Required: the data cannot
            ship inside the package (licence unspecified); for the shared copy use ``../shared/data/mmc``.
        train_split / val_split / test_split: file names' split part. Offline (no train file) the zoo trains on
            "dev" and validates/tests on "test", and logs that it does.
        encoder: the tokenizer's model (None: the attached model's).
        max_segment_len: subtokens per segment including the two specials (512 in the paper's configs).
        max_training_segments: a training document keeps a random run of this many segments (coref-hoi: 3; None:
            the attached model's).
        max_num_speakers: speaker ids are capped at this many (None: the attached model's).
        max_train_docs / max_eval_docs: keep the first N documents (demos, quick runs).
    """

    def __init__(
        self,
        language: str = "en",
        root: str | None = None,
        encoder: str | None = None,
        variant: str | None = None,
        format: str = "conll",
        train_split: str = "train",
        val_split: str = "dev",
        test_split: str = "test",
        max_segment_len: int = 512,
        max_training_segments: int | None = None,
        max_num_speakers: int | None = None,
        max_train_docs: int | None = None,
        max_eval_docs: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        check_choice("language", language, sorted(LANGUAGES), where="MMCDataModule")
        check_choice("format", format, ("conll", "jsonlines"), where="MMCDataModule")
        if root is None:
            raise UserError(
                "MMCDataModule needs root= the MMC data folder (data_creation/data of github.com/boyuanzheng010/mmc, "
                "layout <root>/conll_format/<variant>/{train,dev,test}.<language>.v4_gold_conll); the data cannot ship "
                "in the package. In this checkout the dev/test copy is ../shared/data/mmc."
            )
        if not Path(root).expanduser().is_dir():
            raise DataNotFoundError(
                f"MMCDataModule: the data folder {root} does not exist; point data.init_args.root at the MMC data "
                "folder (data_creation/data of github.com/boyuanzheng010/mmc, holding conll_format/), "
                "e.g. ../shared/data/mmc."
            )
        for name, value, minimum in (
            ("max_segment_len", max_segment_len, 8),
            ("max_training_segments", max_training_segments, 1),
            ("max_num_speakers", max_num_speakers, 1),
            ("num_workers", num_workers, 0),
        ):
            if value is not None:
                check_positive(name, value, minimum=minimum, where="MMCDataModule")
        self.save_hyperparameters()
        self.language, self.root, self.encoder, self.variant, self.fmt = language, root, encoder, variant, format
        self.splits = {"fit": train_split, "validate": val_split, "test": test_split}
        self.max_segment_len, self.max_training_segments = max_segment_len, max_training_segments
        self.max_num_speakers = max_num_speakers
        self.max_train_docs, self.max_eval_docs = max_train_docs, max_eval_docs
        self.num_workers, self.seed = num_workers, seed
        self.datasets: dict[str, list] = {}
        self._tokenizer = None

    def resolve_from_model(self) -> None:
        """Fill ``encoder``, ``max_training_segments`` and ``max_num_speakers`` from the attached model where unset
        (and refuse a value that contradicts it); without a model each must be set."""
        model = model_data_config(self)
        for name in ("encoder", "max_training_segments", "max_num_speakers"):
            setattr(self, name, follow_model(self, name, getattr(self, name), model.get(name)))

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self.resolve_from_model()
            self._tokenizer = load_tokenizer(self.encoder)
        return self._tokenizer

    def load_split(self, split: str, limit: int | None = None) -> list[dict[str, Any]]:
        self.resolve_from_model()
        docs = read_split(self.root, self.language, split, self.variant, self.fmt)
        if limit:
            docs = docs[:limit]
        return [tokenize_document(d, self.tokenizer, self.max_segment_len, self.max_num_speakers) for d in docs]

    def setup(self, stage: str | None = None):
        self.resolve_from_model()
        want = {
            "fit": ("fit", "validate"),
            "validate": ("validate",),
            "test": ("test",),
            "predict": ("test",),
            None: ("fit", "validate", "test"),
        }[stage]
        for s in want:
            if s in self.datasets:
                continue
            split = self.splits[s]
            limit = self.max_train_docs if s == "fit" else self.max_eval_docs
            if s == "fit" and split != "train":
                log.warning(
                    "MMC %s: training on the %r split (the train files are not available offline); "
                    "validation/test numbers are then not comparable with the paper's.",
                    self.language,
                    split,
                )
            self.datasets[s] = self.load_split(split, limit)
            log.info(
                "MMC %s %s (%s): %d documents, tokenizer %s",
                self.language,
                s,
                split,
                len(self.datasets[s]),
                self.encoder,
            )

    def _loader(self, stage, shuffle=False):
        import torch

        ds = _Docs(self.datasets[stage], self.max_training_segments if stage == "fit" else None, self.seed)
        g = torch.Generator().manual_seed(self.seed)
        return torch.utils.data.DataLoader(
            ds,
            batch_size=1,
            shuffle=shuffle,
            collate_fn=collate_document,
            num_workers=self.num_workers,
            generator=g if shuffle else None,
        )

    def train_dataloader(self):
        return self._loader("fit", shuffle=True)

    def val_dataloader(self):
        return self._loader("validate")

    def test_dataloader(self):
        return self._loader("test")

    def predict_dataloader(self):
        return self._loader("test")
