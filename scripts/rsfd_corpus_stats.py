"""Caption-corpus statistics for RSFD on the real caption files (no videos needed), what neither ``zoo reproduce``
nor ``zoo bench`` measures:

- the vocabulary the data module builds (``zoo.data_modules.captioning``: words with count > threshold, + 6 specials);
- FAD's partition sizes |L| (count < 200, minus <pad>/<mask>/<vis>) and |H| (the rest minus <unk>/<bos>/<eos>);
- human-caption agreement (MSVD: ~43 references per clip): in round r the r-th caption of every clip is the candidate
  and the clip's other captions its references; BLEU-4 and CIDEr-D (pycocoevalcap, corpus level over the clips) are
  averaged over the rounds r = 0 .. (fewest captions per clip) - 1.

    python scripts/rsfd_corpus_stats.py [--msvd ../shared/data/msvd_captions/MSVD_val.tsv]
                                        [--msrvtt ../shared/data/msrvtt_captions/MSRVTT_JSFUSION_test.csv]

The shared files are single splits (MSVD val: 100 clips; MSR-VTT 1k-A test: 1,000 clips, one caption each), so the
vocabulary and frequencies here are those of that split, not of the release's training corpora (the release: MSVD
9,468 words with |L| 9,169 / |H| 296, MSR-VTT 10,547 with |L| 9,718 / |H| 826, all-split counts).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zoo.data_modules.captioning import build_vocab, frequency_table, read_msvd_lists
from zoo.data_modules.video import read_msrvtt_test
from zoo.metrics.captioning import caption_scores
from zoo.models.rsfd.model import fad_partition

HERE = Path(__file__).resolve().parents[1]


def vocab_stats(captions: list[str], count_threshold: int, fad_threshold: float = 200.0) -> dict:
    itow = build_vocab(captions, count_threshold)
    counts = frequency_table(captions, {w: i for i, w in enumerate(itow)}, len(itow))
    low, high = fad_partition(counts, fad_threshold)
    return {"captions": len(captions), "vocab": len(itow), "L": int(low.sum()), "H": int(high.sum())}


def human_agreement(captions: dict[str, list[str]]) -> dict:
    vids = list(captions)
    rounds = min(len(captions[v]) for v in vids)
    b4, cider = [], []
    for r in range(rounds):
        refs = {i: captions[v][:r] + captions[v][r + 1 :] for i, v in enumerate(vids)}
        cand = {i: [captions[v][r]] for i, v in enumerate(vids)}
        s = caption_scores(refs, cand, tokenize=False, meteor=False)  # lower-case words already
        b4.append(s["bleu4"])
        cider.append(s["cider"])
    return {
        "rounds": rounds,
        "bleu4": 100 * sum(b4) / rounds,
        "cider": 100 * sum(cider) / rounds,
        "bleu4_min": 100 * min(b4),
        "bleu4_max": 100 * max(b4),
        "cider_min": 100 * min(cider),
        "cider_max": 100 * max(cider),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--msvd", default=str(HERE.parent / "shared/data/msvd_captions/MSVD_val.tsv"))
    p.add_argument("--msrvtt", default=str(HERE.parent / "shared/data/msrvtt_captions/MSRVTT_JSFUSION_test.csv"))
    args = p.parse_args(argv)
    msvd = Path(args.msvd)
    corpus = read_msvd_lists(msvd.parent, {"val": msvd.name})
    caps = {v: corpus.captions[v] for v in corpus.split_videos["val"]}
    flat = [c for v in caps for c in caps[v]]
    msrvtt = [c for _, c, _ in read_msrvtt_test(Path(args.msrvtt), Path("videos"))]
    for name, cs in (("MSVD val", flat), ("MSR-VTT 1k-A test", msrvtt)):
        for thr in (0, 1):
            s = vocab_stats(cs, thr)
            print(
                f"{name}: {s['captions']} captions, count_threshold {thr}: vocabulary {s['vocab']} (6 specials "
                f"included), FAD at 200: |L| = {s['L']}, |H| = {s['H']}"
            )
    h = human_agreement(caps)
    print(
        f"MSVD val human agreement ({len(caps)} clips, {h['rounds']} rounds, each caption against the clip's "
        f"others): BLEU-4 {h['bleu4']:.1f} (rounds {h['bleu4_min']:.1f}-{h['bleu4_max']:.1f}), CIDEr "
        f"{h['cider']:.1f} ({h['cider_min']:.1f}-{h['cider_max']:.1f})"
    )


if __name__ == "__main__":
    main()
