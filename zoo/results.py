"""Measured results as data: ``results/<method>.csv``, written by ``zoo reproduce`` and read by the registry.

One row per (entry, dataset, variant, protocol, seed); every metric is a column. Fixed columns:

- ``entry``, ``dataset``: the registry name and the dataset id;
- ``variant``: a named set of config overrides of the entry (``default``: the entry's config as it is);
- ``protocol``: how the numbers were read (which split, which epoch), named in the method's :class:`ResultSpec`;
- ``seed``: the ``seed_everything`` of the run; on an aggregate row (below) the seeds its mean covers, written as
  ``zoo reproduce --seeds`` takes them (``0-9``, ``0,2,5``);
- ``seeds``: 1 on a per-seed row; on an aggregate row the number of seeds its mean covers (= the seeds it names);
- ``wall_s``, ``zoo_version``, ``git_commit``, ``date``, ``device``: where and how long;
- ``note``: free text (aggregate rows say that per-seed values were not kept);
- metric columns (``acc``, ``conll_f1``, ...), and ``<metric>_std`` on aggregate rows only.

Aggregate rows hold numbers measured before per-seed rows were kept: their mean and std (the method's ``std_ddof``)
are pooled exactly with per-seed rows of the same (entry, variant, protocol), so a card's seed count grows as
``zoo reproduce`` appends seeds. A seed is counted once: a per-seed row whose seed an aggregate row of its group already
covers is refused (re-measure all of the aggregate's seeds to replace it). An entry's ``our_metrics`` are computed from
these rows when asked.

Demo configs (``configs/demo/*.yaml``) have rows too, in ``results/demo/<config stem>.csv`` (entry ``demo/<stem>``):
``zoo reproduce --config configs/demo/cmt.yaml --seeds 0-2`` records every scalar the run logged.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.files import atomic_write_text
from zoo.metric import Metric
from zoo.paths import find_config

FIXED = (
    "entry",
    "dataset",
    "variant",
    "protocol",
    "seed",
    "seeds",
    "wall_s",
    "zoo_version",
    "git_commit",
    "date",
    "device",
    "note",
)


@dataclass(frozen=True)
class Protocol:
    """How a run's numbers are read. ``keys``: metric column -> the key the module logs (``trainer.callback_metrics``
    after fit for ``stage="fit"``; the dict ``trainer.test`` returns for ``stage="test"``, run on the best checkpoint
    when the config keeps one, else on the final weights)."""

    text: str
    keys: dict[str, str]
    stage: str = "fit"


@dataclass(frozen=True)
class Variant:
    """A named set of overrides: ``args`` are LightningCLI arguments appended to the config (``config``: another
    config file than the entry's, e.g. a synthetic-data proof); ``depends``: init argument -> registry entry whose
    run (same seed) provides its checkpoint (RELIANT's teacher)."""

    text: str
    args: tuple[str, ...] = ()
    depends: dict[str, str] = field(default_factory=dict)
    config: str | None = None
    dataset: str | None = None  # the dataset id of its rows when not the entry's


@dataclass(frozen=True)
class ResultSpec:
    """How one method's rows become card metrics. ``metrics``: column -> (metric id, label) in display order;
    ``scale`` multiplies logged values (fractions -> percent); ``counts``: columns that count runs (shown as
    'k of n runs ...', not as metrics); ``dataset_names``: dataset id -> display name."""

    task: str
    split: str
    metrics: dict[str, tuple[str, str]]
    protocols: dict[str, Protocol]
    variants: dict[str, Variant]
    dataset_names: dict[str, str] = field(default_factory=dict)
    scale: float = 1.0
    decimals: int = 4
    std_ddof: int = 0
    counts: dict[str, str] = field(default_factory=dict)
    depends: dict[str, str] = field(default_factory=dict)  # default dependencies of every variant (by entry)


# ------------------------------------------------------------------------------------------------ files
def parse_seeds(text: str) -> list[int]:
    """``"0-9"``, ``"0,2,5"``, ``"0-2,7"`` -> seeds in order."""
    seeds: list[int] = []
    try:
        for part in str(text).split(","):
            part = part.strip()
            if "-" in part[1:]:
                a, b = (
                    part.split("-", 1)
                    if not part.startswith("-")
                    else ("-" + part[1:].split("-", 1)[0], part[1:].split("-", 1)[1])
                )
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                seeds += range(lo, hi + 1)
            elif part:
                seeds.append(int(part))
    except ValueError:
        raise ValueError(f"--seeds {text!r}: expected seeds like '0-9', '3' or '0,2,5'") from None
    if not seeds:
        raise ValueError(f"--seeds {text!r} names no seed")
    return seeds


def results_dir() -> Path:
    """``$ZOO_RESULTS_DIR``, else the repository's ``results/`` (a source checkout or an editable install), else the
    copy installed with the package (``zoo/results_data``, setup.py)."""
    env = os.environ.get("ZOO_RESULTS_DIR")
    if env:
        return Path(env).expanduser()
    here = Path(__file__).resolve().parent
    repo = here.parent / "results"
    return repo if repo.is_dir() else here / "results_data"


def csv_path(method: str, root: str | Path | None = None) -> Path:
    return (
        Path(root)
        if root is not None and Path(root).suffix == ".csv"
        else (Path(root) if root is not None else results_dir()) / f"{method}.csv"
    )


_CACHE: dict[Path, tuple[float, list[dict]]] = {}


def read_rows(method: str, root: str | Path | None = None) -> list[dict[str, str]]:
    """Every row of ``results/<method>.csv`` (empty when the file does not exist); re-read when the file changes."""
    path = csv_path(method, root)
    if not path.is_file():
        return []
    mtime = path.stat().st_mtime_ns
    hit = _CACHE.get(path)
    if hit and hit[0] == mtime:
        return hit[1]
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for i, r in enumerate(rows, start=2):
        missing = [c for c in ("entry", "variant", "protocol", "seeds") if not r.get(c)]
        if missing:
            raise ValueError(
                f"{path}:{i}: column(s) {', '.join(missing)} empty; every row names its entry, variant, "
                "protocol and seed count (see zoo/results.py)."
            )
    _CACHE[path] = (mtime, rows)
    return rows


def _group(row) -> tuple:
    return (row["entry"], row.get("dataset", ""), row["variant"], row["protocol"])


def row_seeds(row) -> list[int]:
    """The seeds a row covers: ``[seed]`` on a per-seed row, the named seeds on an aggregate row."""
    seed = str(row.get("seed") if row.get("seed") is not None else "").strip()
    n = int(row["seeds"])
    if not seed:
        raise ValueError(
            f"a row of {row['entry']} ({row['variant']}, {row['protocol']}) names no seed: per-seed rows "
            "give their seed, aggregate rows the seeds they cover (e.g. 0-9)"
        )
    seeds = parse_seeds(seed)
    if len(seeds) != n or len(set(seeds)) != n:
        raise ValueError(
            f"a row of {row['entry']} ({row['variant']}, {row['protocol']}) says seeds={n} but names "
            f"seed(s) {seed!r}: the two must agree"
        )
    return seeds


def _key(row) -> tuple | None:
    if int(row["seeds"]) != 1:
        return None
    return (*_group(row), str(row_seeds(row)[0]))


def check_seeds_counted_once(rows: list[dict], source: str = "results") -> None:
    """Refuse rows that count one seed twice in a group (an aggregate covering a per-seed row, or two aggregates)."""
    seen: dict[tuple, dict[int, str]] = {}
    for r in rows:
        where = seen.setdefault(_group(r), {})
        label = f"seed {r['seed']}" if int(r["seeds"]) == 1 else f"the aggregate of seeds {r['seed']}"
        for s in row_seeds(r):
            if s in where:
                raise ValueError(
                    f"{source}: seed {s} of {r['entry']} ({r['variant']}, {r['protocol']}) is counted twice "
                    f"({where[s]} and {label}); a seed counts once: re-measure every seed of an aggregate to replace "
                    "it, or use seeds it does not cover"
                )
            where[s] = label


def append_rows(
    method: str, new: list[dict[str, Any]], root: str | Path | None = None, replace_aggregates: bool = False
) -> Path:
    """Append rows to ``results/<method>.csv`` (new columns are added; the file is replaced atomically). A per-seed
    row of the same (entry, dataset, variant, protocol, seed) as a new one is replaced: a seed is counted once. A new
    row whose seed an aggregate row already covers is refused, unless ``replace_aggregates`` (the caller re-measures
    every seed of that aggregate), which drops the aggregate row."""
    path = csv_path(method, root)
    new = [{**r, "seed": str(r["seed"]) if r.get("seed") is not None else ""} for r in new]
    keys = {_key(r) for r in new} - {None}
    old = [r for r in (read_rows(method, root) if path.is_file() else []) if _key(r) not in keys]
    if replace_aggregates:
        covered = {(_group(r), s) for r in new for s in row_seeds(r)}
        old = [r for r in old if _key(r) is not None or not any((_group(r), s) in covered for s in row_seeds(r))]
    check_seeds_counted_once([*old, *new], str(path))
    cols = list(FIXED)
    for r in [*old, *new]:
        for k in r:
            if k not in cols:
                cols.append(k)
    metric_cols = sorted((c for c in cols if c not in FIXED), key=lambda c: (c.endswith("_std"), cols.index(c)))
    cols = [*FIXED, *metric_cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in [*old, *new]:
        w.writerow({k: _cell(r.get(k)) for k in cols})
    atomic_write_text(path, buf.getvalue())
    _CACHE.pop(path, None)
    return path


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return format(v, ".8g")
    return str(v)


# ------------------------------------------------------------------------------------------------ statistics
@dataclass
class Summary:
    """Pooled statistics of one (entry, dataset, variant, protocol) group."""

    entry: str
    dataset: str
    variant: str
    protocol: str
    n: int
    seeds: list[int]
    mean: dict[str, float]
    std: dict[str, float]
    notes: list[str]


def summarize(rows: list[dict[str, str]], columns, ddof: int = 0) -> list[Summary]:
    """Group rows by (entry, dataset, variant, protocol) in file order and pool each group exactly: an aggregate row
    (mean m, std s over n seeds) counts as n values with that mean and spread."""
    check_seeds_counted_once(rows)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["entry"], r.get("dataset", ""), r["variant"], r["protocol"]), []).append(r)
    out = []
    for (entry, ds, variant, protocol), rs in groups.items():
        n_total = sum(int(r["seeds"]) for r in rs)
        mean, std = {}, {}
        for c in columns:
            parts = [(int(r["seeds"]), float(r[c]), _std_of(r, c, ddof)) for r in rs if r.get(c) not in (None, "")]
            if not parts:
                continue
            n = sum(p[0] for p in parts)
            m = sum(k * v for k, v, _ in parts) / n
            ss = sum(k * (s * s + v * v) for k, v, s in parts) - n * m * m  # sum of squared deviations
            mean[c] = m
            std[c] = math.sqrt(max(ss, 0.0) / (n - ddof)) if n - ddof > 0 else 0.0
        seeds = sorted(s for r in rs for s in row_seeds(r))
        notes = [r["note"] for r in rs if r.get("note")]
        out.append(Summary(entry, ds, variant, protocol, n_total, seeds, mean, std, notes))
    return out


def _std_of(row: dict, col: str, ddof: int) -> float:
    """Population std of an aggregate row (its ``<col>_std`` was computed with ``ddof``); 0 for a single seed."""
    n, s = int(row["seeds"]), row.get(f"{col}_std")
    if n <= 1 or s in (None, ""):
        return 0.0
    return float(s) * math.sqrt((n - ddof) / n)


def _seed_text(s: Summary) -> str:
    return f"{s.n} seed{'s' if s.n > 1 else ''} ({_ranges(s.seeds)})"


def _ranges(seeds: list[int]) -> str:
    out, i = [], 0
    while i < len(seeds):
        j = i
        while j + 1 < len(seeds) and seeds[j + 1] == seeds[j] + 1:
            j += 1
        out.append(str(seeds[i]) if i == j else f"{seeds[i]}-{seeds[j]}")
        i = j + 1
    return ", ".join(out)


def our_metrics(entry, spec: ResultSpec, root: str | Path | None = None) -> tuple:
    """The entry's measured metrics: one :class:`zoo.registry.Metric` per (variant, protocol, metric) group of
    its rows, variants and protocols in the spec's order, the value the pooled mean."""
    rows = [r for r in read_rows(entry.method, root) if r["entry"] == entry.name]
    sums = summarize(rows, [*spec.metrics, *spec.counts], spec.std_ddof)
    vorder, porder = list(spec.variants), list(spec.protocols)
    sums.sort(
        key=lambda s: (
            vorder.index(s.variant) if s.variant in vorder else len(vorder),
            porder.index(s.protocol) if s.protocol in porder else len(porder),
        )
    )
    out = []
    for s in sums:
        variant = spec.variants.get(s.variant)
        protocol = spec.protocols.get(s.protocol)
        if variant is None or protocol is None:
            raise ValueError(
                f"results/{entry.method}.csv: entry {entry.name} has rows of variant {s.variant!r} / "
                f"protocol {s.protocol!r}, which the method's ResultSpec does not define "
                f"(variants: {', '.join(vorder)}; protocols: {', '.join(porder)})."
            )
        stats = "mean" if s.n > 1 else "one run"
        counts = "".join(
            f"; {round(s.mean[c] * s.n)} of {s.n} runs {text}" for c, text in spec.counts.items() if s.mean.get(c)
        )
        text = (
            f"ours, {stats} of {_seed_text(s)} (reproduce: zoo reproduce {entry.name}"
            f"{'' if s.variant == 'default' else f' --variant {s.variant}'}); {protocol.text}; {variant.text}"
            f"{counts}" + "".join(f"; {n}" for n in dict.fromkeys(s.notes))
        )
        for col, (metric, label) in spec.metrics.items():
            if col not in s.mean:
                continue
            std = f", ±{s.std[col]:.{spec.decimals}f}" if s.n > 1 else ""
            tag = s.variant if len(spec.protocols) == 1 else f"{s.variant}, {s.protocol}"
            out.append(
                Metric(
                    task=spec.task,
                    dataset=s.dataset,
                    dataset_name=spec.dataset_names.get(s.dataset, s.dataset),
                    metric=metric,
                    value=round(s.mean[col], spec.decimals),
                    split=spec.split,
                    name=f"{label} ({tag}, n={s.n}{std})",
                    protocol=text,
                )
            )
    return tuple(out)


# ------------------------------------------------------------------------------------------------ demos
def _shown(col: str) -> bool:
    """Demo columns a table shows: the run's metrics, not step-level noise or bookkeeping."""
    return col not in FIXED and not col.endswith(("_std", "_step")) and col not in ("epoch", "step")


def demo_configs_of(method: str) -> list[Path]:
    """The demo configs (``configs/demo/*.yaml``) whose model is one of ``zoo.models.<method>``'s modules."""
    folder = find_config("configs/demo/emo.yaml")
    if folder is None:
        return []
    out = []
    for path in sorted(Path(folder).parent.glob("*.yaml")):
        text = path.read_text()
        if f"class_path: zoo.models.{method}." in text:
            out.append(path)
    return out


def demo_table(root: str | Path | None = None, stems: list[str] | None = None) -> list[tuple[str, ...]]:
    """One line per (demo config, variant, protocol) of ``<results>/demo/*.csv``: the seeds and each metric's mean ±
    std (population std, like the cards' per-seed pools). Rows: (config, variant, protocol, seeds, metrics text)."""
    folder = (Path(root) if root is not None else results_dir()) / "demo"
    out = []
    for path in sorted(folder.glob("*.csv")):
        if stems is not None and path.stem not in stems:
            continue
        rows = read_rows(f"demo/{path.stem}", folder.parent)
        cols = [c for c in (rows[0] if rows else {}) if _shown(c)]
        for s in summarize(rows, cols):
            metrics = ", ".join(
                f"{c} {s.mean[c]:.4g}" + (f" ± {s.std[c]:.2g}" if s.n > 1 else "") for c in cols if c in s.mean
            )
            out.append(
                (f"configs/demo/{path.stem}.yaml", s.variant, s.protocol, f"{s.n} ({_ranges(s.seeds)})", metrics)
            )
    return out


# ------------------------------------------------------------------------------------------------ claims
@dataclass(frozen=True)
class Arm:
    """One side of a claim in miniature: the rows of ``results/demo/<demo>.csv`` with this ``variant``.

    ``overrides``: the ``--model.* / --data.* / --trainer.*`` arguments that make the variant from the demo config;
    ``after``: demo stems run first in the same folder (``zoo reproduce --after``); ``unavailable``: set when no demo
    config and overrides can measure this arm yet, saying what is missing (then no command is offered)."""

    label: str
    demo: str
    variant: str = "default"
    overrides: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    unavailable: str = ""

    def command(self, seeds: str = "0-2") -> str:
        """The ``zoo reproduce`` line that records this arm's rows."""
        after = f" --after {','.join(f'configs/demo/{a}.yaml' for a in self.after)}" if self.after else ""
        variant = f" --variant {self.variant}" if self.variant != "default" else ""
        extra = "".join(f" {o}" for o in self.overrides)
        return f"zoo reproduce --config configs/demo/{self.demo}.yaml{after} --seeds {seeds} --record{variant}{extra}"


@dataclass(frozen=True)
class Claim:
    """A method's central claim and its miniature, declared once as ``CLAIM`` in ``zoo/models/<method>/__init__.py``
    (torch-free); the model cards and the README's claims table (``zoo list --claims``) read it.

    ``claim``: the paper's claim in one sentence; ``paper``: the paper's own number(s) for it with the table they come
    from ("" when zoo's specs hold none); ``metric``: the logged key compared (``protocol`` rows, default ``test``);
    ``arms``: the method's arm first, then what it is compared with (``Arm`` or ``(label, demo, variant)``);
    ``higher_is_better``: the direction the paper claims for the first arm; ``design``: what the miniature is and
    how it differs from the paper's setting (shown beside every result, and as the evidence when it does not show);
    ``extra``: further keys reported beside (e.g. the one-class rate of a fairness claim); ``scale``/``unit``/
    ``decimals``: display (fractions -> percent); ``no_miniature``: set when no miniature can be built from the data
    zoo has, saying why and what it would need (then ``arms`` may be empty); ``label``: the data this miniature runs
    on, named beside its line when the claim is measured on several; ``also``: the same claim measured again on
    further data (each a ``Claim`` with its own label, arms, design and verdict; the first is the claim's own);
    ``degenerate``: a per-row 0/1 key marking a run whose metric says nothing (a fairness student that predicts one
    class has ΔSP = 0): when the first arm leads but some of its runs are marked, the verdict is "does not show:
    degenerate runs" instead of "shows"."""

    claim: str
    paper: str
    metric: str = ""
    arms: tuple = ()
    higher_is_better: bool = True
    design: str = ""
    extra: tuple[str, ...] | str = ()
    scale: float = 1.0
    unit: str = ""
    decimals: int = 2
    protocol: str = "test"
    seeds: str = "0-2"
    no_miniature: str = ""
    label: str = ""
    also: tuple = ()
    degenerate: str = ""

    def __post_init__(self):
        arms = tuple(a if isinstance(a, Arm) else Arm(*a) for a in self.arms)
        object.__setattr__(self, "arms", arms)
        if isinstance(self.extra, str):
            object.__setattr__(self, "extra", (self.extra,) if self.extra else ())
        if not self.no_miniature and (len(arms) < 2 or not self.metric):
            raise ValueError(f"claim {self.claim[:40]!r}...: a miniature compares a metric over two or more arms")
        if self.also and not (self.label and all(isinstance(a, Claim) and a.label for a in self.also)):
            raise ValueError(f"claim {self.claim[:40]!r}...: a claim measured on several data labels each of them")


@dataclass
class ArmResult:
    """An arm's pooled rows (``summary`` None: no row has the metric yet), per-seed values and commits."""

    arm: Arm
    summary: Summary | None
    per_seed: dict[int, float]
    commits: list[str]
    degenerate: list[int] = field(default_factory=list)  # the seeds whose run ``Claim.degenerate`` marks


@dataclass
class ClaimResult:
    claim: Claim
    arms: list[ArmResult]
    verdict: str  # "shows" | "shows, within the seed spread" | "does not show at this scale" | "not yet measured"
    # | "no miniature"
    also: list[ClaimResult] = field(default_factory=list)  # the results of ``claim.also``, in order


def measure_claim(claim: Claim, root: str | Path | None = None) -> ClaimResult:
    """The claim's arms read from ``<results>/demo/<demo>.csv`` (mean and population std over the seeds present)
    and the verdict: does the first arm beat every other arm in the paper's direction?"""
    base = Path(root) if root is not None else results_dir()
    out = []
    for arm in claim.arms:
        rows = [
            r
            for r in read_rows(f"demo/{arm.demo}", base)
            if r["entry"] == f"demo/{arm.demo}"
            and r["variant"] == arm.variant
            and r["protocol"] == claim.protocol
            and r.get(claim.metric) not in (None, "")
        ]
        sums = summarize(rows, [claim.metric, *claim.extra]) if rows else []
        per_seed = {int(r["seed"]): float(r[claim.metric]) for r in rows if int(r["seeds"]) == 1}
        commits = list(dict.fromkeys(r["git_commit"][:7] for r in rows if r.get("git_commit")))
        marked = [r for r in rows if claim.degenerate and float(r.get(claim.degenerate) or 0) > 0]
        degenerate = sorted(s for r in marked for s in row_seeds(r))
        out.append(ArmResult(arm, sums[0] if sums else None, per_seed, commits, degenerate))
    if claim.no_miniature:
        verdict = "no miniature"
    elif any(a.summary is None for a in out):
        verdict = "not yet measured"
    else:
        sign = 1.0 if claim.higher_is_better else -1.0
        first, others = out[0].summary, [a.summary for a in out[1:]]
        gaps = [sign * (first.mean[claim.metric] - o.mean[claim.metric]) for o in others]
        # rows hold float32 values (Lightning's self.log): means closer than float32's resolution are a tie
        if min(gaps) <= 1e-6 * max(1.0, abs(first.mean[claim.metric])):
            verdict = "does not show at this scale"
        elif out[0].degenerate:
            verdict = "does not show: degenerate runs"
        else:
            closest = others[gaps.index(min(gaps))]
            spread = max(first.std[claim.metric], closest.std[claim.metric])
            verdict = "shows" if min(gaps) > spread else "shows, within the seed spread"
    return ClaimResult(claim, out, verdict, [measure_claim(a, root) for a in claim.also])


def _value(c: Claim, s: Summary, key: str, scale: bool = True) -> str:
    k, d, unit = (c.scale, c.decimals, c.unit) if scale else (1.0, 4, "")
    text = f"{s.mean[key] * k:.{d}f}" + (f" ± {s.std[key] * k:.{d}f}" if s.n > 1 else "")
    return text + (f" {unit}" if unit else "")


def claim_line(result: ClaimResult) -> str:
    """``claim in miniature: X ± s vs Y ± s (metric, n seeds: 0-2)``; an arm without rows reads 'not yet measured'."""
    c = result.claim
    if c.no_miniature:
        return "claim in miniature: none (" + c.no_miniature + ")"
    measured = [a.summary for a in result.arms if a.summary is not None]
    same = len(measured) == len(result.arms) and len({tuple(s.seeds) for s in measured}) == 1
    parts = []
    for a in result.arms:
        if a.summary is None:
            parts.append(f"{a.arm.label}: not yet measured")
        else:
            parts.append(
                f"{a.arm.label} {_value(c, a.summary, c.metric)}" + ("" if same else f" ({_seeds(a.summary)})")
            )
    where = f"{c.metric}, mean ± population std" + (f" over {_seeds(measured[0])}" if same else "")
    on = f" on {c.label}" if c.label else ""
    return f"claim in miniature{on}: {' vs '.join(parts)} ({where})"


def _seeds(s: Summary) -> str:
    return f"{s.n} seed{'s' if s.n != 1 else ''}: {_ranges(s.seeds)}"


def claim_details(result: ClaimResult) -> list[str]:
    """The lines a card shows under the claim line: per-seed values, keys reported beside, commits, commands."""
    c, lines = result.claim, []
    measured = [a for a in result.arms if a.summary is not None]
    if measured:
        lines.append(
            "per seed: "
            + "; ".join(
                f"{a.arm.label} "
                + " / ".join(f"{a.per_seed[s] * c.scale:.{c.decimals}f}" for s in sorted(a.per_seed))
                + f" (seeds {_ranges(sorted(a.per_seed))})"
                for a in measured
                if a.per_seed
            )
        )
    for key in c.extra:
        have = [a for a in measured if key in a.summary.mean]
        if have:
            lines.append(
                f"beside it, {key}: " + " vs ".join(f"{a.arm.label} {_value(c, a.summary, key, False)}" for a in have)
            )
    if c.degenerate and measured:
        lines.append(
            f"degenerate runs ({c.degenerate}): "
            + "; ".join(f"{a.arm.label} {len(a.degenerate)} of {a.summary.n} seeds" for a in measured)
        )
    commits = list(dict.fromkeys(x for a in measured for x in a.commits))
    if commits:
        lines.append("rows recorded at commit " + ", ".join(f"`{x}`" for x in commits))
    for a in result.arms:
        how = f"not measurable yet: {a.arm.unavailable}" if a.arm.unavailable else f"`{a.arm.command(c.seeds)}`"
        lines.append(f"{a.arm.label}{'' if a.summary is not None else ' (not yet measured)'}: {how}")
    return lines


def claim_of(method: str) -> Claim | None:
    """``zoo.models.<method>.CLAIM`` (None when the method declares none)."""
    import importlib
    import importlib.util

    if importlib.util.find_spec(f"zoo.models.{method}") is None:
        return None
    return getattr(importlib.import_module(f"zoo.models.{method}"), "CLAIM", None)


def methods() -> list[str]:
    """The method packages under ``zoo/models``, sorted."""
    import pkgutil

    import zoo.models

    return sorted(i.name for i in pkgutil.iter_modules(zoo.models.__path__) if i.ispkg)


def claims_table(root: str | Path | None = None) -> list[tuple[str, ...]]:
    """One line per method (the README's claims table): method, claim, paper, claim in miniature, verdict."""
    out = []
    for m in methods():
        c = claim_of(m)
        if c is None:
            out.append((m, "", "", "none declared yet", ""))
            continue
        r = measure_claim(c, root)
        if c.no_miniature:
            out.append((m, c.claim, c.paper or "not in zoo's specs", "none: " + c.no_miniature, "no miniature"))
            continue
        several = [r, *r.also]
        lines = "; ".join(claim_line(x).removeprefix("claim in miniature").removeprefix(": ").strip() for x in several)
        verdicts = "; ".join((f"on {x.claim.label}: " if r.also else "") + _verdict_cell(x) for x in several)
        out.append((m, c.claim, c.paper or "not in zoo's specs", lines, verdicts))
    return out


def _verdict_cell(r: ClaimResult) -> str:
    """The verdict, with the commands of the missing arms or, when it does not show, the design (the evidence)."""
    c, verdict = r.claim, r.verdict
    if verdict == "not yet measured":
        verdict += ": " + "; ".join(
            f"{a.arm.label}: " + (a.arm.unavailable or f"`{a.arm.command(c.seeds)}`")
            for a in r.arms
            if a.summary is None
        )
    elif verdict.startswith("does not show"):
        verdict += ": " + c.design
    return verdict
