"""Benchmark TinyMIM: one distillation step (MAE ViT-L teacher -> TinyMIM ViT-B student) and the relation loss alone.

    python scripts/tinymim_bench.py                          # CUDA if present: batch 32, as in the issue
    python scripts/tinymim_bench.py --device cpu --batch 2   # a CPU run: smaller batch (say so when reporting)

1. Distillation step at 224² (197 tokens): teacher forward to block 18 under no_grad, student forward to its last
   q, k, v, Q-K + V-V relation KL, backward, AdamW step — the real ``TinyMIMDistillModule`` code path (student colour
   jitter included). Reports images/s and peak memory (CUDA: ``max_memory_allocated``; CPU: growth of the process's
   peak RSS, coarse). ``--amp`` runs it under bf16/fp16 autocast as the recipe does (fp16 on CUDA).
2. The relation loss alone (forward + backward w.r.t. the student) for the ViT-L -> B shapes: B x 16 heads x N x d,
   student d = 48, teacher d = 64, N = 197 (224², patch 16) and 577 (384², or patch 8 at 192²), for each ``impl`` of
   ``zoo.ops.relation_kl`` that can run here ("reference" always; "triton" on CUDA).

Random weights and inputs: throughput does not depend on the values. Results are printed as a table and as JSON
(``--json PATH`` to save).
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import torch


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _Meter:
    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        self.rss0 = _peak_rss_mb()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self.peak_mb = _peak_rss_mb()  # absolute peak RSS of the process (CPU); growth reported separately
        self.seconds = time.perf_counter() - self.t0
        self.rss_growth_mb = _peak_rss_mb() - self.rss0


def bench_distill_step(device, batch: int, steps: int, warmup: int, amp: bool, impl: str) -> dict:
    from zoo.models.tinymim.model import TEACHERS
    from zoo.models.tinymim.module import TinyMIMDistillModule

    torch.manual_seed(0)
    module = TinyMIMDistillModule(teacher={**TEACHERS["mae_vit_large"], "seed": 0}, teacher_block=18, lr=1e-4,
                                  relation_impl=impl)
    module.configure_model()
    module.to(device).train()
    opt = torch.optim.AdamW([p for p in module.model.parameters() if p.requires_grad], lr=1e-4, betas=(0.9, 0.95))
    images = torch.randn(batch, 3, 224, 224, device=device)
    labels = torch.zeros(batch, dtype=torch.long, device=device)
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler(device.type, enabled=amp and dtype == torch.float16)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            loss = module.training_step((images, labels), 0)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        return loss

    module.log_dict = lambda *a, **k: None  # no trainer attached: skip Lightning logging
    rss_before = _peak_rss_mb()
    for _ in range(warmup):
        step()
    with _Meter(device) as m:
        for _ in range(steps):
            loss = step()
    m.rss_growth_mb = _peak_rss_mb() - rss_before
    return {"bench": "distill_step", "teacher": "MAE ViT-L/16 (block 18)", "student": "TinyMIM ViT-B/16 (12/16 heads)",
            "batch": batch, "amp": amp, "impl": impl, "steps": steps, "images_per_s": batch * steps / m.seconds,
            "step_ms": 1000 * m.seconds / steps, "peak_mem_mb": m.peak_mb, "rss_growth_mb": m.rss_growth_mb,
            "loss": loss.item()}


def bench_relation(device, batch: int, tokens: int, impl: str, steps: int, warmup: int, heads=16, d_s=48,
                   d_t=64) -> dict:
    from zoo.ops import relation_kl

    g = torch.Generator(device="cpu").manual_seed(0)

    def mk(d, grad):
        return torch.randn(batch, heads, tokens, d, generator=g).to(device).requires_grad_(grad)

    sa, sb, ta, tb = mk(d_s, True), mk(d_s, True), mk(d_t, False), mk(d_t, False)

    def step():
        loss = relation_kl(sa, sb, ta, tb, d_s ** -0.5, d_t ** -0.5, impl=impl)
        loss.backward()
        sa.grad = sb.grad = None
        return loss

    rss_before = _peak_rss_mb()
    for _ in range(warmup):
        step()
    with _Meter(device) as m:
        for _ in range(steps):
            loss = step()
    m.rss_growth_mb = _peak_rss_mb() - rss_before  # warm-up included: it allocates the same tensors
    return {"bench": "relation_kl", "impl": impl, "batch": batch, "heads": heads, "tokens": tokens, "d_student": d_s,
            "d_teacher": d_t, "fwd_bwd_ms": 1000 * m.seconds / steps, "peak_mem_mb": m.peak_mb,
            "rss_growth_mb": m.rss_growth_mb, "loss": loss.item()}


def _mem(r: dict, device) -> str:
    if device.type == "cuda":
        return f"peak {r['peak_mem_mb']:8.0f} MiB (max_memory_allocated)"
    # CPU: the process's peak RSS only grows, so a later, smaller benchmark shows no growth; run it alone for that
    return f"peak RSS {r['peak_mem_mb']:7.0f} MiB (+{r['rss_growth_mb']:.0f} during this run)"


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda if available)")
    p.add_argument("--batch", type=int, default=None, help="distillation batch (default 32 on CUDA, 2 on CPU)")
    p.add_argument("--relation-batch", type=int, default=None, help="relation-loss batch (default: --batch)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--amp", action="store_true", help="autocast (fp16 + grad scaler on CUDA, bf16 on CPU)")
    p.add_argument("--tokens", type=int, nargs="+", default=[197, 577])
    p.add_argument("--skip-step", action="store_true", help="only the relation loss")
    p.add_argument("--json", default=None, help="also write the results here")
    ns = p.parse_args(argv)

    device = torch.device(ns.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    batch = ns.batch or (32 if device.type == "cuda" else 2)
    steps = ns.steps or (20 if device.type == "cuda" else 3)
    impls = ["reference"] + (["triton"] if device.type == "cuda" else [])
    env = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
           "torch": torch.__version__, "threads": torch.get_num_threads()}
    print(f"# {env}")
    if device.type != "cuda" and batch < 32 and not ns.skip_step:
        print(f"# CPU run: batch {batch} instead of the issue's 32 (a ViT-L teacher step at 32 does not fit the time)")
    results = []
    if not ns.skip_step:
        for impl in impls:
            r = bench_distill_step(device, batch, steps, ns.warmup, ns.amp, impl)
            results.append(r)
            print(f"distill step  impl={impl:9s} batch={batch:3d} amp={ns.amp!s:5s}  {r['images_per_s']:8.2f} img/s  "
                  f"{r['step_ms']:9.1f} ms/step  {_mem(r, device)}")
    rb = ns.relation_batch or batch
    for n in ns.tokens:
        for impl in impls:
            r = bench_relation(device, rb, n, impl, max(steps, 3), ns.warmup)
            results.append(r)
            print(f"relation_kl   impl={impl:9s} B={rb:3d} H=16 N={n:4d}  {r['fwd_bwd_ms']:9.2f} ms fwd+bwd  "
                  f"{_mem(r, device)}  loss {r['loss']:.4f}")
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump({"env": env, "results": results}, f, indent=2)
    return results


if __name__ == "__main__":
    main()
