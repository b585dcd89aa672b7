"""``zoo bench``: throughput, latency and peak memory of models, measured side by side in one run.

Names are registry names or ``timm:<model>`` (a timm architecture, for comparison). Inputs are random tensors of
the entry's ``preprocess["input_size"]`` (image models) or the module's ``example_input_array`` repeated to the
batch size. Peak memory: ``torch.cuda.max_memory_allocated`` on CUDA; on the CPU, the growth of the process's peak
resident set during the measurement (coarse: it only grows, so models are run in the order given).
"""
from __future__ import annotations

import math
import resource
import time

import torch


def _device(device: str | None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _build(name: str, batch_size: int):
    """-> (nn.Module to run, tuple of inputs)"""
    if name.startswith("timm:"):
        import timm

        net = timm.create_model(name[5:], pretrained=False)
        size = net.pretrained_cfg.get("input_size", (3, 224, 224))
        return net, (torch.randn(batch_size, *size),)
    import zoo
    from zoo import registry

    entry = registry.get(name)
    module = zoo.create(entry.name)
    size = entry.preprocess.get("input_size")
    if size:
        return module, (torch.randn(batch_size, *size),)
    ex = module.example_input_array
    ex = ex if isinstance(ex, tuple) else (ex,)
    return module, ex


def count_macs(model: torch.nn.Module, *inputs, norms: bool = True) -> float:
    """Multiply-adds of one forward pass, counted with ``torch.utils.flop_counter`` (works on the meta device).

    torch counts convolutions, matrix products and attention (FLOPs = 2 x MACs; its CPU attention kernel is added
    here). ``norms=True`` adds what fvcore's
    counter (the one most papers report, EMO's included) also charges: BatchNorm 2 per element in eval (1 per
    element without affine), LayerNorm 5 per element (4 without affine) and adaptive average pooling 1 per input
    element, so that figures compare with the papers' tables.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from torch.utils.flop_counter import sdpa_flop_count

    aten = torch.ops.aten
    extra: dict = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):  # the CPU kernel torch does not count
        def sdpa_cpu(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs):
            return sdpa_flop_count(q_shape, k_shape, v_shape)

        extra[aten._scaled_dot_product_flash_attention_for_cpu] = sdpa_cpu
    if norms:
        def bn(x_shape, weight=None, *args, out_shape=None, **kwargs):  # flop formulas return FLOPs = 2 x MACs
            return 2 * math.prod(x_shape) * (2 if weight is not None else 1)

        def ln(x_shape, normalized_shape, weight=None, *args, out_shape=None, **kwargs):
            return 2 * math.prod(x_shape) * (5 if weight is not None else 4)

        def pool(x_shape, *args, out_shape=None, **kwargs):
            return 2 * math.prod(x_shape)

        for op in ("_native_batch_norm_legit_no_training", "_native_batch_norm_legit", "native_batch_norm",
                   "cudnn_batch_norm"):
            if hasattr(aten, op):
                extra[getattr(aten, op)] = bn
        extra[aten.native_layer_norm] = ln
        extra[aten._adaptive_avg_pool2d] = pool
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False, custom_mapping=extra) as counter, torch.no_grad():
            model(*inputs)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_one(name: str, batch_size: int = 32, train: bool = False, compile: bool = False,
              channels_last: bool = False, device: str | None = None, steps: int = 10, warmup: int = 3) -> dict:
    dev = _device(device)
    net, inputs = _build(name, batch_size)
    net = net.to(dev)
    inputs = tuple(x.to(dev) if torch.is_tensor(x) else x for x in inputs)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        inputs = tuple(x.contiguous(memory_format=torch.channels_last) if torch.is_tensor(x) and x.dim() == 4 else x
                       for x in inputs)
    fn = torch.compile(net) if compile else net
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=1e-6) if train else None
    net.train(train)

    def step():
        if train:
            out = fn(*inputs)
            out = out if torch.is_tensor(out) else sum(o.float().sum() for o in _tensors(out))
            out.float().mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        else:
            with torch.inference_mode():
                fn(*inputs)

    for _ in range(warmup):
        step()
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    rss0 = _peak_rss_mb()
    sync()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else _peak_rss_mb() - rss0
    n = inputs[0].shape[0] if torch.is_tensor(inputs[0]) else batch_size
    return {
        "name": name, "device": str(dev), "mode": "train" if train else "infer", "batch": n,
        "samples_per_s": n / med, "latency_ms": med * 1e3, "peak_mem_mb": peak,
        "params": sum(p.numel() for p in net.parameters()),
    }


def _tensors(out):
    if torch.is_tensor(out):
        yield out
    elif isinstance(out, dict):
        for v in out.values():
            yield from _tensors(v)
    elif isinstance(out, (list, tuple)):
        for v in out:
            yield from _tensors(v)


def bench_models(names: list[str], **kw) -> list[dict]:
    rows = [bench_one(n, **kw) for n in names]
    base = rows[0]["samples_per_s"]
    print(f"{'model':28s} {'device':7s} {'mode':5s} {'batch':>5s} {'samples/s':>10s} {'latency ms':>10s} "
          f"{'peak MB':>8s} {'params':>10s} {'vs first':>8s}")
    for r in rows:
        print(f"{r['name']:28s} {r['device']:7s} {r['mode']:5s} {r['batch']:5d} {r['samples_per_s']:10.1f} "
              f"{r['latency_ms']:10.1f} {r['peak_mem_mb']:8.1f} {r['params']:10,d} {r['samples_per_s'] / base:8.2f}x")
    return rows
