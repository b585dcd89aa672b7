"""``zoo bench --op NAME``: time and peak memory of each op, reference vs kernel (and PyG for graph_propagate).

Every measurement is one training step of the op: forward + backward, median over repetitions, after warm-up.
Peak memory is the CUDA allocator's peak above what the inputs already hold (``torch.cuda.max_memory_allocated``),
so it is the extra memory the op needs; it is not measured on the CPU (reported as None).

Sizes (issue 8): relation_kl at N = 197, 577, 1025 tokens, 12 heads, batch 64, head dim 64 (ViT-B/16 at 224, 384
and 512 px); graph_propagate on random graphs of Cora's size (2,708 nodes, 13,264 non-zeros with self-loops,
1,433 features) and of the NIFTY credit graph's size (30,000 nodes, 1,421,858 undirected edges = 2,873,716
non-zeros with both directions and self-loops, 13 features); fused cross-entropy at BERT's vocabulary (30,522;
4,096 tokens, hidden 768) and at 1,000 classes (batch 256, hidden 768). On the CPU the sizes are reduced and only
the reference runs — or, under ``TRITON_INTERPRET=1``, also the kernel in Triton's interpreter at tiny sizes, whose
timings say nothing about GPU speed.
"""

from __future__ import annotations

import statistics
import warnings

import torch

from zoo.ops import _dispatch

GPU_SIZES = {
    "relation_kl": [dict(B=64, H=12, N=197, d=64), dict(B=64, H=12, N=577, d=64), dict(B=64, H=12, N=1025, d=64)],
    "graph_propagate": [
        dict(graph="cora", nodes=2708, nnz=13264, F=1433),
        dict(graph="credit", nodes=30000, nnz=2 * 1421858 + 30000, F=13),
    ],
    "fused_linear_cross_entropy": [dict(R=4096, D=768, V=30522), dict(R=256, D=768, V=1000)],
}
CPU_SIZES = {
    "relation_kl": [dict(B=2, H=12, N=197, d=64)],
    "graph_propagate": [
        dict(graph="cora", nodes=2708, nnz=13264, F=1433),
        dict(graph="credit", nodes=30000, nnz=2 * 1421858 + 30000, F=13),
    ],
    "fused_linear_cross_entropy": [dict(R=128, D=768, V=30522), dict(R=256, D=768, V=1000)],
}
INTERPRETER_SIZES = {
    "relation_kl": [dict(B=1, H=2, N=37, d=16)],
    "graph_propagate": [dict(graph="random", nodes=64, nnz=400, F=16)],
    "fused_linear_cross_entropy": [dict(R=32, D=16, V=300)],
}


def _relation_case(size, device):
    from zoo.ops.relation import relation_kl

    B, H, N, d = size["B"], size["H"], size["N"], size["d"]
    sa, sb = (torch.randn(B, H, N, d, device=device, requires_grad=True) for _ in range(2))
    ta, tb = (torch.randn(B, H, N, d, device=device) for _ in range(2))
    scale = d**-0.5

    def run(impl):
        relation_kl(sa, sb, ta, tb, scale, scale, impl=impl).backward()

    return f"B={B} H={H} N={N} d={d}", {"reference": lambda: run("reference"), "triton": lambda: run("triton")}


def _graph_case(size, device):
    from zoo.ops.propagate import graph_propagate

    n, nnz, F = size["nodes"], size["nnz"], size["F"]
    g = torch.Generator().manual_seed(0)
    idx = torch.unique(torch.randint(0, n * n, (nnz,), generator=g))  # random graph with about nnz edges
    rows, cols = idx // n, idx % n
    vals = torch.rand(idx.numel(), generator=g)
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore")
        adj = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (n, n)).coalesce().to_sparse_csr().to(device)
    x = torch.randn(n, F, device=device, requires_grad=True)
    row_t, col_t, val_t = rows.to(device), cols.to(device), vals.to(device)

    def run(impl):
        graph_propagate(adj, x, impl=impl).sum().backward()

    cases = {"reference": lambda: run("reference"), "triton": lambda: run("triton")}
    try:
        from torch_geometric.utils import scatter

        def pyg():  # PyG's message passing: gather x[col], weight, scatter-add into rows
            scatter(x[col_t] * val_t[:, None], row_t, dim=0, dim_size=n, reduce="sum").sum().backward()

        cases["pyg-scatter"] = pyg
    except ImportError:
        pass
    return f"{size['graph']}: nodes={n} nnz={idx.numel()} F={F}", cases


def _ce_case(size, device):
    from zoo.ops.linear_cross_entropy import fused_linear_cross_entropy

    R, D, V = size["R"], size["D"], size["V"]
    h = torch.randn(R, D, device=device, requires_grad=True)
    w = (torch.randn(V, D, device=device) / D**0.5).requires_grad_()
    b = torch.zeros(V, device=device, requires_grad=True)
    y = torch.randint(0, V, (R,), device=device)

    def run(impl):
        fused_linear_cross_entropy(h, w, b, y, impl=impl).backward()

    return f"rows={R} D={D} V={V}", {"reference": lambda: run("reference"), "triton": lambda: run("triton")}


CASES = {"relation_kl": _relation_case, "graph_propagate": _graph_case, "fused_linear_cross_entropy": _ce_case}


def _measure(fn, device, reps):
    from zoo.profiling import PeakMemory, time_calls

    fn(), fn()  # warm-up (Triton compiles on the first call)
    with PeakMemory(device) as mem:
        times = time_calls(fn, reps, warmup=0, device=device)
    return statistics.median(times) * 1e3, mem.growth_mb if device.type == "cuda" else None


def bench_op(name: str, device=None, sizes=None, reps: int | None = None, verbose: bool = True) -> list[dict]:
    """Benchmark op ``name`` on ``device`` (default: cuda if available) at ``sizes`` (list of size dicts; default:
    the issue's sizes on CUDA, reduced ones on the CPU). Returns one dict per (size, provider): op, size,
    provider, device, ms (median, forward + backward), peak_mib (CUDA only), note; prints a table."""
    from zoo.bench.peers import ALL_PEERS, PEER_OPS, bench_peer_ops

    if name == "peers" or all(n in PEER_OPS for n in name.split(",")):  # zoo's 3D / detection pieces vs their peers
        return bench_peer_ops(name, reps=reps, device=device, verbose=verbose)
    if name not in CASES:
        raise ValueError(
            f"zoo bench --op: unknown op {name!r}; the ops are {sorted(CASES)}, and "
            f"{', '.join(PEER_OPS)} (comma-separated) timed against their peers, or 'peers' for the speed table "
            f"({', '.join(ALL_PEERS)})"
        )
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    note = ""
    if device.type == "cuda":
        err = _dispatch.kernel_error("cuda")
        providers_kernel = err is None
        note = "" if err is None else f"kernel not run: {err}"
        default_sizes, reps = GPU_SIZES[name], reps or 20
    else:
        providers_kernel = _dispatch.kernel_error("cpu") is None
        if providers_kernel:
            note = "CPU: kernel in Triton's interpreter at tiny sizes (timings say nothing about GPU speed)"
            default_sizes = INTERPRETER_SIZES[name]
        else:
            note = "CPU: reference only at reduced sizes (the kernel needs CUDA; H100 figures need a GPU)"
            default_sizes = CPU_SIZES[name]
        reps = reps or 3
    rows = []
    for size in sizes or default_sizes:
        label, cases = CASES[name](size, device)
        for provider, fn in cases.items():
            if provider == "triton" and not providers_kernel:
                continue
            try:
                ms, peak = _measure(fn, device, reps)
                row = dict(
                    op=name,
                    size=label,
                    provider=provider,
                    device=str(device),
                    ms=round(ms, 3),
                    peak_mib=None if peak is None else round(peak, 1),
                    note=note,
                )
            except torch.cuda.OutOfMemoryError as e:
                torch.cuda.empty_cache()
                row = dict(
                    op=name,
                    size=label,
                    provider=provider,
                    device=str(device),
                    ms=None,
                    peak_mib=None,
                    note=f"out of memory: {str(e).splitlines()[0]}",
                )
            rows.append(row)
            if verbose:
                peak_s = "-" if row["peak_mib"] is None else f"{row['peak_mib']:.1f}"
                ms_s = "-" if row["ms"] is None else f"{row['ms']:.3f}"
                print(f"{name:28s} {label:42s} {provider:12s} {ms_s:>10s} ms  peak {peak_s:>9s} MiB", flush=True)
    if verbose and note:
        print(f"note: {note}")
    return rows
