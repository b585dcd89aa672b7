"""``zoo bench NAME`` (inference): ``forward`` under ``torch.inference_mode`` on random inputs of the entry's
``preprocess["input_size"]`` (image models) or the module's ``example_input_array``, timed after a warm-up that lasts
until the step time is stable."""

from __future__ import annotations

import torch

from zoo.bench.inputs import _count, _device, _env, _params, _timing, _timm_net
from zoo.profiling import PeakMemory, synchronize, time_calls, warm_up


def _build(name: str, batch_size: int):
    """-> (nn.Module to run, tuple of inputs) for inference."""
    if name.startswith("timm:"):
        net = _timm_net(name[5:])
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


def bench_inference(
    name: str,
    batch_size: int | None = None,
    compile: bool = False,
    channels_last: bool = False,
    device: str | None = None,
    steps: int = 10,
    warmup: int = 3,
) -> dict:
    """One row: ``forward`` of ``name`` under ``torch.inference_mode`` on random inputs (see the module docstring).

    Warm-up (:func:`zoo.profiling.warm_up`): at least ``warmup`` untimed steps, then more until the last three step
    times lie within 5 % of their median (at most 50): a fresh process runs the same network up to about 2x slower
    at first (allocator page faults). The row's ``warmup`` is the number of warm-up steps run, its note says so."""
    dev = _device(device)
    net, inputs = _build(name, batch_size or 32)
    net = net.to(dev).eval()
    inputs = tuple(x.to(dev) if torch.is_tensor(x) else x for x in inputs)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        inputs = tuple(
            x.contiguous(memory_format=torch.channels_last) if torch.is_tensor(x) and x.dim() == 4 else x
            for x in inputs
        )
    fn = torch.compile(net) if compile else net

    def step():
        with torch.inference_mode():
            fn(*inputs)

    warm, stable = warm_up(step, min_steps=warmup, max_steps=max(50, warmup), sync=lambda: synchronize(dev))
    with PeakMemory(dev) as mem:
        times = time_calls(step, steps, warmup=0, device=dev)
    first = inputs[0]  # a forward argument that is a list of tensors holds one per sample (LiDAR clouds)
    n = len(first) if isinstance(first, list) and first and all(torch.is_tensor(t) for t in first) else _count(first)[0]
    return {
        "name": name,
        "mode": "infer",
        **_env(dev),
        "batch": n,
        "unit": "samples",
        **_timing(times, [n] * len(times)),
        "peak_mem_mb": mem.peak_mb if dev.type == "cuda" else mem.growth_mb,
        "params": _params(net),
        "steps": steps,
        "warmup": warm,
        "loss": None,
        "data": "random inputs",
        "note": f"warm-up: {warm} steps until the step time was stable (last 3 within 5%)"
        if stable
        else f"warm-up: step time not stable after {warm} steps (the figures may be inflated)",
    }
