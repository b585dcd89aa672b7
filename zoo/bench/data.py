"""``zoo bench NAME --data``: the demo data module's ``prepare_data()`` + ``setup("fit")`` timed in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from zoo.bench.inputs import (
    _accepts,
    _data_section,
    _env,
    _read_yaml,
    demo_config,
    follow_model_data,
    module_data_config,
)
from zoo.profiling import PeakMemory


def _data_child(spec: dict) -> dict:
    """In a fresh process: build the data module, then time ``prepare_data()`` + ``setup("fit")``."""
    from zoo import registry

    if spec.get("config"):
        path = Path(spec["config"])
        cfg = _read_yaml(path)
    else:
        path, cfg = demo_config(registry.get(spec["name"]))
    data_cls, dargs = _data_section(cfg, path)
    notes = follow_model_data(data_cls, dargs, module_data_config(cfg), spec.get("data_args") or {})
    dargs.update(spec.get("data_args") or {})
    with tempfile.TemporaryDirectory(prefix="zoo-bench-data-") as tmp:
        if _accepts(data_cls, "cache_dir") and "cache_dir" not in (spec.get("data_args") or {}):
            dargs["cache_dir"] = tmp
            notes.append("fresh cache_dir")
        if dargs.get("root", "") is None:
            notes.append("root=None: generated/bundled data, its generation included")
        dm = data_cls(**dargs)
        with PeakMemory("cpu") as mem:
            t0 = time.perf_counter()
            dm.prepare_data()
            dm.setup("fit")
            dt = time.perf_counter() - t0
    return {
        "name": spec["name"],
        "mode": "data",
        **_env(torch.device("cpu")),
        "seconds": dt,
        "peak_mem_mb": mem.growth_mb,
        "data": f"{path} ({data_cls.__name__})",
        "note": "; ".join(notes),
    }


def bench_data(name: str, config: str | None = None, data_args: dict | None = None) -> dict:
    """One row: the preprocessing of ``name``'s demo data module (or ``config``'s) in a fresh Python process, so
    that neither a warm cache nor an earlier peak of this process enters the figures."""
    spec = json.dumps({"name": name, "config": config, "data_args": data_args or {}})
    code = (
        "import json, sys\nfrom zoo.bench.data import _data_child\n"
        "print('ZOO-BENCH-ROW ' + json.dumps(_data_child(json.loads(sys.argv[1]))))"
    )
    out = subprocess.run([sys.executable, "-c", code, spec], capture_output=True, text=True)
    rows = [ln[len("ZOO-BENCH-ROW ") :] for ln in out.stdout.splitlines() if ln.startswith("ZOO-BENCH-ROW ")]
    if out.returncode or not rows:
        tail = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"zoo bench --data {name}: the preprocessing process failed: {tail}")
    return json.loads(rows[-1])
