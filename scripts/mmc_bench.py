"""Benchmark the MMC coreference model with the MiniLM encoder (registry entry mmc-minilm-l6.en) on this CPU.

    OMP_NUM_THREADS=1 python scripts/mmc_bench.py --docs 20 --json runs/mmc_bench.json

1. Training: documents/s over the first ``--docs`` English dev documents, the real training path (a random run of at
   most 3 segments of 512 subtokens per document, forward, MLL + mention loss, backward, gradient clipping, AdamW).
2. Inference: documents/s over the first ``--docs`` English test documents (forward + cluster decoding, no grad).
3. Peak memory on the longest English test document (by subtokens), each measured in a fresh process after building
   the model and running one short document: the kernel's peak-RSS mark is reset (``/proc/self/clear_refs`` 5), the
   document runs, and the peak resident set (VmHWM) is read, with its growth over the resident set just before (what
   that document's activations, gradients and optimizer state add). Inference uses the whole document (all
   segments); the training step uses the whole document too (no segment cap), the worst case.

Random encoder weights (throughput and memory do not depend on the values); one thread unless ``--threads``.
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import subprocess
import sys
import time

import torch


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0); False where that is refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _setup(data: str, threads: int):
    from zoo import registry
    from zoo.data_modules.coref import load_tokenizer, read_split, tokenize_document
    from zoo.models.mmc_coref.module import MMCCorefModule

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    init = {**registry.get("mmc-minilm-l6.en").init_args, "pretrained_encoder": False}
    module = MMCCorefModule(**init)
    tok = load_tokenizer(init["encoder"])

    def docs(split, n=None):
        ds = read_split(data, "en", split)
        return [tokenize_document(d, tok, 512) for d in (ds[:n] if n else ds)]

    return module, docs


def _train_step(module, opt, ex):
    from zoo.data_modules.coref import collate_document
    from zoo.models.mmc_coref.model import coref_loss

    b = collate_document([ex])
    out = module._run(b)
    loss, _ = coref_loss(out, b["gold_starts"], b["gold_ends"], b["gold_cluster_ids"], module.hparams.mention_loss_coef,
                         module.hparams.non_gold_mention_weight)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(module.model.parameters(), module.hparams.max_grad_norm)
    opt.step()


def throughput(args) -> dict:
    from zoo.data_modules.coref import collate_document, truncate_segments

    module, docs = _setup(args.data, args.threads)
    train, test = docs("dev", args.docs), docs("test", args.docs)
    rng = random.Random(0)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-5)
    module.train()
    _train_step(module, opt, truncate_segments(train[0], 3, rng))  # warm-up
    t = time.perf_counter()
    sub = 0
    for ex in train:
        ex = truncate_segments(ex, 3, rng)
        sub += sum(len(s) for s in ex["input_ids"])
        _train_step(module, opt, ex)
    t_train = time.perf_counter() - t
    module.eval()
    t = time.perf_counter()
    sub_test = 0
    for ex in test:
        sub_test += sum(len(s) for s in ex["input_ids"])
        module.predict_document(collate_document([ex]))
    t_test = time.perf_counter() - t
    return {"train_docs": len(train), "train_docs_per_s": round(len(train) / t_train, 3),
            "train_subtokens_per_s": round(sub / t_train, 1), "infer_docs": len(test),
            "infer_docs_per_s": round(len(test) / t_test, 3), "infer_subtokens_per_s": round(sub_test / t_test, 1)}


def peak(args, mode: str) -> dict:
    """In this (fresh) process: baseline after one short document, then the longest test document."""
    from zoo.data_modules.coref import collate_document

    module, docs = _setup(args.data, args.threads)
    test = docs("test")
    longest = max(test, key=lambda e: sum(len(s) for s in e["input_ids"]))
    short = min(test, key=lambda e: sum(len(s) for s in e["input_ids"]))
    opt = torch.optim.AdamW(module.parameters(), lr=1e-5)
    if mode == "train":
        module.train()
        _train_step(module, opt, short)
    else:
        module.eval()
        module.predict_document(collate_document([short]))
    base = _status_mb("VmRSS")
    reset = _reset_peak()
    t = time.perf_counter()
    if mode == "train":
        _train_step(module, opt, longest)
    else:
        module.predict_document(collate_document([longest]))
    dt = time.perf_counter() - t
    top = _status_mb("VmHWM") if reset else _peak_rss_mb()
    return {"mode": mode, "doc_key": longest["doc_key"], "words": longest["num_words"],
            "subtokens": sum(len(s) for s in longest["input_ids"]), "segments": len(longest["input_ids"]),
            "seconds": round(dt, 2), "rss_before_mb": round(base, 1), "peak_rss_mb": round(top, 1),
            "growth_mb": round(top - base, 1), "peak_is_since_reset": reset}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/mmc")
    p.add_argument("--docs", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    p.add_argument("--peak", choices=["train", "infer"], default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.peak:  # child process
        print(json.dumps(peak(args, args.peak)))
        return
    res = {"machine": f"{platform.processor() or platform.machine()}, {args.threads} thread(s), torch "
                      f"{torch.__version__}", **throughput(args)}
    for mode in ("infer", "train"):
        out = subprocess.run([sys.executable, __file__, "--data", args.data, "--threads", str(args.threads),
                              "--peak", mode], capture_output=True, text=True, check=True)
        res[f"peak_{mode}"] = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(res, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
