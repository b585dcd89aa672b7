"""Measuring: one timer, one peak-memory probe, one multiply-add counter, shared by ``zoo bench``
(:mod:`zoo.bench`), the ops' benchmarks (:mod:`zoo.ops.bench`) and the scripts in ``scripts/``.

- :func:`synchronize`: wait for the device's queued work (CUDA), so that a clock reading includes it;
- :func:`time_calls`: seconds of each of N calls; :func:`interleaved`: medians of several functions called in turn
  (zoo, peer, zoo, peer, ...), so both see the same machine load; :func:`warm_up`: call until the step time is
  stable; :func:`threads`: a block run with a given number of intra-op threads;
- :class:`PeakMemory`: peak memory over a block (CUDA allocator peak; on the CPU the growth of the process's peak
  resident set, VmHWM, with the mark reset at the start);
- :func:`count_macs`: multiply-adds of one forward pass, as the papers' tables count them.
"""

from __future__ import annotations

import contextlib
import math
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["synchronize", "time_calls", "interleaved", "warm_up", "threads", "PeakMemory", "count_macs"]


def peer_row(op: str, size: str, zoo_s: float, peer: str, peer_s: float | None, note: str = "") -> dict:
    """A ``zoo bench --op`` row: zoo's and the peer's median seconds as ms, and ``ratio = zoo / peer``."""
    return {
        "op": op,
        "size": size,
        "zoo_ms": zoo_s * 1e3,
        "peer": peer,
        "peer_ms": None if peer_s is None else peer_s * 1e3,
        "ratio": None if not peer_s else zoo_s / peer_s,
        "note": note,
    }


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (CUDA); a no-op on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], steps: int, warmup: int = 1, device: torch.device | str = "cpu") -> list[float]:
    """Seconds of each of ``steps`` calls of ``fn`` after ``warmup`` untimed calls (CUDA synchronised)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


def interleaved(
    fns: dict[str, Callable[[], object]],
    reps: int,
    warmup: int = 1,
    timer: Callable[[], float] = time.perf_counter,
    sync: Callable[[], None] = lambda: None,
) -> dict[str, float]:
    """Median seconds of each of ``fns``, called in turn ``reps`` times (after ``warmup`` untimed rounds);
    ``sync`` (e.g. ``torch.cuda.synchronize``) runs before the clock starts and before it stops."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            sync()
            t0 = timer()
            fn()
            sync()
            times[k].append(timer() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def warm_up(
    step: Callable[[], object],
    min_steps: int = 3,
    max_steps: int = 50,
    tol: float = 0.05,
    window: int = 3,
    max_seconds: float = 120.0,
    sync: Callable[[], None] = lambda: None,
    timer: Callable[[], float] = time.perf_counter,
) -> tuple[int, bool]:
    """Call ``step`` until its time is stable: at least ``min_steps`` calls, then until the last ``window`` step
    times lie within ``tol`` of their median (or ``max_steps`` calls / ``max_seconds``). A fresh process runs a
    network up to about 2x slower for its first steps (allocator page faults, lazy initialisation), which would
    inflate a figure taken right away. Returns (warm-up steps run, stable)."""
    times: list[float] = []
    start = timer()
    while len(times) < max_steps:
        sync()
        t0 = timer()
        step()
        sync()
        times.append(timer() - t0)
        if len(times) >= max(min_steps, window):
            last = times[-window:]
            med = statistics.median(last)
            if max(abs(t - med) for t in last) <= tol * med:
                return len(times), True
        if timer() - start > max_seconds:
            break
    return len(times), False


@contextlib.contextmanager
def threads(n: int):
    """Run the block with ``torch.set_num_threads(n)``; the earlier count is restored after."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _proc_status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _release_freed_memory() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``), so that memory an earlier model freed but the
    allocator kept resident is not reused unseen by the next measurement (which would then show no growth)."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Peak memory between :meth:`start` and :meth:`stop` (or a ``with`` block).

    CUDA: ``peak_mb`` = ``torch.cuda.max_memory_allocated`` since the start (absolute), ``growth_mb`` = that minus
    what was allocated at the start. CPU: the kernel's peak-RSS mark (VmHWM) is reset to the current RSS at the start
    (``/proc/self/clear_refs``, after returning freed heap pages to the OS), ``peak_mb`` = VmHWM at the stop,
    ``growth_mb`` = that minus the RSS at the start;
    where the reset is refused (not Linux, no permission) ``ru_maxrss`` is used and ``exact`` is False.
    """

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.peak_mb = self.growth_mb = float("nan")
        self.exact = True

    def start(self) -> PeakMemory:
        synchronize(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device) / 2**20
            return self
        _release_freed_memory()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to VmRSS (Linux >= 4.0)
            self._base = _proc_status_mb("VmRSS")
            self.exact = self._base is not None
        except OSError:
            self.exact = False
        if not self.exact:
            self._base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        return self

    def stop(self) -> PeakMemory:
        synchronize(self.device)
        if self.device.type == "cuda":
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self.exact:
            self.peak_mb = _proc_status_mb("VmHWM")
        else:
            self.peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        self.growth_mb = self.peak_mb - self._base
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def count_macs(model: torch.nn.Module, *inputs, norms: bool = True) -> float:
    """Multiply-adds of one forward pass, counted with ``torch.utils.flop_counter`` (works on the meta device).

    torch counts convolutions, matrix products and attention (FLOPs = 2 x MACs; its CPU attention kernel is added
    here). ``norms=True`` adds what fvcore's
    counter (the one most papers report, EMO's included) also charges: BatchNorm 2 per element in eval (1 per
    element without affine), LayerNorm 5 per element (4 without affine) and adaptive average pooling 1 per input
    element, so that figures compare with the papers' tables.
    """
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

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

        for op in (
            "_native_batch_norm_legit_no_training",
            "_native_batch_norm_legit",
            "native_batch_norm",
            "cudnn_batch_norm",
        ):
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
