"""Click-through-rate datasets in their published formats, preprocessed as xDeepInt's reference pipeline does
(yanyachen/xDeepInt ``xdeepint/experiment/criteo/nn1.py``).

Datasets (``dataset``) and the on-disk layout expected at ``root`` (a folder holding the file, or the file itself):

- ``criteo``: Kaggle Display Advertising Challenge ``train.txt`` (from ``dac.tar.gz``): one example per line,
  tab-separated, no header, 40 columns ``label, I1..I13, C1..C26`` (integers / 8-hex-digit hashed categories, empty =
  missing). The comma-separated variant with a ``label,I1,...`` header (DeepCTR's ``criteo_sample.txt``) is also read.
- ``avazu``: Kaggle Avazu ``train`` / ``train.csv``: comma-separated with the header
  ``id,click,hour,C1,banner_pos,site_id,...,C14..C21``; ``click`` is the label, ``hour`` is ``YYMMDDHH``.
- ``root=None`` (Criteo only): the synthetic Criteo-format file of :func:`write_synthetic_criteo` (see there: labels
  from planted 2nd- and 3rd-order feature crosses), generated once into the cache folder; the log says so.

Preprocessing (reference, Criteo):

- split 80/20 by row index: data row i (0-based) goes to train iff (i mod 1000) / 1000 <= 0.8 (so 801 of every
  1000 rows, as ``criteo_random_split``); the "test" part is also what ``val_dataloader`` returns -- the reference
  evaluates on it, and there is no separate validation set;
- integer fields I1..I12 (the reference drops I13; ``criteo_int_fields=13`` keeps it): bin = floor(ln(x^2 + 1)),
  missing -> 0 (the reference's reader fills missing integers with 0, so missing and 0 share bin 0), identity
  vocabulary of 64 buckets (a bin >= 64 would need |x| > 7e13 and is treated as unseen);
- categorical fields: per-field vocabulary = values seen **more than** ``min_count`` (20) times in the training split,
  the empty string excluded, no OOV bucket: unseen / missing values get id 0, the model's zero embedding.
- Avazu (the paper's Avazu preprocessing is not public; ours, documented): ``id`` dropped, ``hour`` becomes two
  fields, hour-of-day and weekday; those and the other 21 columns are categorical with the same vocabulary rule and
  split -> 23 fields.

Processed examples: ``label`` (int8) and ``ids`` (int32[F]): per-field local ids, 0 = missing / unseen, 1..V_f.
``vocab_sizes[f] = V_f``.

Implementation (memory flat in the number of rows): pass 1 streams the raw file through ``pyarrow.csv``'s block
reader (parsing in C++), bins, splits and writes two Arrow files with Hugging Face ``datasets``' ``ArrowWriter``;
pass 2 counts each categorical column of the memory-mapped training file with Arrow's hash kernel (memory bounded by
that column's number of distinct values, not by rows); pass 3 maps strings to ids with ``Dataset.map`` in batches.
The result is cached next to the raw file in ``<file>.zoo-ctr/<fingerprint>/`` (or under ``cache_dir`` / the
datasets cache when that folder is read-only), keyed by the file's size and mtime and the options, and read back
memory-mapped (``Dataset.from_file``). A malformed line raises :class:`CTRFormatError` naming the file and line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from zoo.errors import DataNotFoundError, UserError, check_choice, check_positive

log = logging.getLogger(__name__)

__all__ = ["CTRDataModule", "CTRFormatError", "log_bin", "write_synthetic_criteo", "CRITEO_COLUMNS", "AVAZU_COLUMNS"]

FORMAT_VERSION = 1
CRITEO_COLUMNS = ["label", *(f"I{i}" for i in range(1, 14)), *(f"C{i}" for i in range(1, 27))]
AVAZU_COLUMNS = [
    "id",
    "click",
    "hour",
    "C1",
    "banner_pos",
    "site_id",
    "site_domain",
    "site_category",
    "app_id",
    "app_domain",
    "app_category",
    "device_id",
    "device_ip",
    "device_model",
    "device_type",
    "device_conn_type",
    *(f"C{i}" for i in range(14, 22)),
]
INT_BUCKETS = 64  # identity buckets of a binned integer field (reference)
_LAYOUT = {
    "criteo": "Kaggle DAC train.txt: tab-separated, no header, 40 columns label, I1..I13, C1..C26 "
    "(or comma-separated with a 'label,I1,...' header)",
    "avazu": "Kaggle Avazu train / train.csv: comma-separated with header " + ",".join(AVAZU_COLUMNS),
}
_DEFAULT_FILES = {"criteo": ("train.txt", "criteo_sample.txt"), "avazu": ("train", "train.csv", "avazu_sample.txt")}


class CTRFormatError(UserError):
    """A raw CTR file does not have the published layout (the message names file, line and problem)."""


def log_bin(x: np.ndarray) -> np.ndarray:
    """Reference integer binning: floor(ln(x^2 + 1)); NaN (missing) -> 0 like the reference's zero-filled reader."""
    x = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0)
    return np.floor(np.log(x * x + 1.0)).astype(np.int64)


# ----------------------------------------------------------------------------------------------------------------
# Synthetic Criteo-format data with planted crosses
# ----------------------------------------------------------------------------------------------------------------
SYNTHETIC_CARDINALITIES = [
    40,
    60,
    60,
    50,
    40,
    40,
    30,
    40,
    500,
    1000,
    3000,
    200,
    80,
    20,
    1500,
    10,
    5000,
    300,
    8,
    4,
    2000,
    120,
    15,
    600,
    70,
    9000,
]
SYNTHETIC_TERMS = (
    "logit = -1.2 + 0.5 s(C1) + 0.5 s(C7)                 (first order: visible to logistic regression)\n"
    "        + 1.2 s(C2) s(C3) + 1.0 s(I1) s(C4)          (second-order crosses)\n"
    "        + 1.2 s(C5) s(C6) s(C8)                      (third-order cross)\n"
    "s(C_j) = a fixed random sign per value of C_j; s(I1) = +1 if floor(ln(I1^2 + 1)) >= 3 else -1 (missing -> -1);\n"
    "label ~ Bernoulli(sigmoid(logit))"
)


def _synthetic_tokens(field: int, card: int) -> np.ndarray:
    # v -> v * odd constant mod 2^32 is a bijection, so tokens are unique within a field; look like Criteo's hashes.
    v = (np.arange(card, dtype=np.uint64) * np.uint64(0x9E3779B1) + np.uint64(field * 0x85EBCA77)) & np.uint64(
        0xFFFFFFFF
    )
    return np.array([f"{int(t):08x}" for t in v])


def write_synthetic_criteo(path: str | os.PathLike, rows: int, seed: int = 0, chunk_rows: int = 200_000) -> Path:
    """Write ``rows`` lines of synthetic data in Criteo's ``train.txt`` format (tab-separated, no header).

    Features: C1..C26 draw from per-field vocabularies of hashed 8-hex-digit tokens (sizes
    ``SYNTHETIC_CARDINALITIES``, mildly Zipfian frequencies, some fields with missing values, long tails that the
    min-count rule removes); I1..I13 are rounded log-normal counts with missing values (I2 may be negative).
    The label depends on planted crosses (``SYNTHETIC_TERMS``)::

        logit = -1.2 + 0.5 s(C1) + 0.5 s(C7) + 1.2 s(C2) s(C3) + 1.0 s(I1) s(C4) + 1.2 s(C5) s(C6) s(C8)

    where s(.) is a fixed random +-1 per category value and s(I1) = +1 iff I1's log bin is >= 3. Only the first-order
    part is linear in the one-hot features, so logistic regression reaches a much lower AUC than a model of 2nd/3rd
    order interactions. Memory is flat in ``rows`` (written in chunks). Deterministic in (rows, seed).
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    path = Path(path)
    rng = np.random.default_rng(seed)
    tokens = [_synthetic_tokens(j, c) for j, c in enumerate(SYNTHETIC_CARDINALITIES)]
    probs = []
    for c in SYNTHETIC_CARDINALITIES:
        p = 1.0 / np.arange(1, c + 1) ** 0.5
        probs.append(p / p.sum())
    signs = [rng.choice(np.array([-1.0, 1.0]), size=c) for c in SYNTHETIC_CARDINALITIES]
    planted = {0, 1, 2, 3, 4, 5, 6, 7}  # C1..C8 are never missing
    cat_missing = [0.0 if j in planted else float(rng.uniform(0, 0.3)) for j in range(26)]
    int_mu, int_sd = rng.uniform(0.5, 4.0, 13), rng.uniform(0.5, 2.0, 13)
    int_missing = rng.uniform(0.0, 0.4, 13)
    int_missing[0] = 0.1
    tmp = path.with_name(path.name + ".tmp")
    opts = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    with open(tmp, "wb") as fh:
        done = 0
        while done < rows:
            n = min(chunk_rows, rows - done)
            cols: dict[str, pa.Array] = {}
            idx = [rng.choice(c, size=n, p=p) for c, p in zip(SYNTHETIC_CARDINALITIES, probs)]
            ints = []
            for i in range(13):
                x = np.floor(np.exp(rng.normal(int_mu[i], int_sd[i], n))).astype(np.int64) - (1 if i == 1 else 0)
                if i == 1:  # I2 takes small negative values in Criteo
                    x = np.where(rng.random(n) < 0.05, -rng.integers(1, 4, n), x)
                ints.append((x, rng.random(n) < int_missing[i]))
            s = [signs[j][idx[j]] for j in range(8)]
            i1, i1_missing = ints[0]
            s_i1 = np.where(~i1_missing & (log_bin(i1) >= 3), 1.0, -1.0)
            logit = -1.2 + 0.5 * s[0] + 0.5 * s[6] + 1.2 * s[1] * s[2] + 1.0 * s_i1 * s[3] + 1.2 * s[4] * s[5] * s[7]
            label = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)
            cols["label"] = pa.array(label)
            for i, (x, miss) in enumerate(ints):
                cols[f"I{i + 1}"] = pa.array(x, mask=miss)
            for j in range(26):
                miss = rng.random(n) < cat_missing[j]
                cols[f"C{j + 1}"] = pa.array(np.where(miss, "", tokens[j][idx[j]]))
            pacsv.write_csv(pa.table(cols), fh, write_options=opts)
            done += n
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------------------------------------------
# Raw file parsing (pass 1)
# ----------------------------------------------------------------------------------------------------------------
class _Format:
    """How one raw file is laid out: delimiter, header, column names and which columns are what."""

    def __init__(self, dataset: str, path: Path, criteo_int_fields: int):
        self.dataset, self.path = dataset, path
        with open(path, "rb") as fh:
            first = fh.readline().decode("utf-8", errors="replace").rstrip("\r\n")
        if not first:
            raise CTRFormatError(f"{path}: the file is empty; expected {_LAYOUT[dataset]}")
        if dataset == "criteo":
            self.header = first.startswith("label,")
            self.delimiter = "," if self.header else "\t"
            self.columns = CRITEO_COLUMNS
            self.label = "label"
            self.int_columns = [f"I{i}" for i in range(1, criteo_int_fields + 1)]
            self.unused = [f"I{i}" for i in range(criteo_int_fields + 1, 14)]
            self.cat_columns = [f"C{i}" for i in range(1, 27)]
            self.fields = [*self.int_columns, *self.cat_columns]
        else:
            self.header, self.delimiter, self.columns, self.label = True, ",", AVAZU_COLUMNS, "click"
            self.int_columns, self.unused = [], ["id"]
            self.cat_columns = [c for c in AVAZU_COLUMNS if c not in ("id", "click", "hour")]
            self.fields = ["hour_of_day", "weekday", *self.cat_columns]
        if self.header:
            got = first.split(self.delimiter)
            if got != self.columns:
                raise CTRFormatError(
                    f"{path}:1: header {got[:6]}... does not match the {dataset} layout; expected {_LAYOUT[dataset]}"
                )

    def describe(self) -> str:
        return _LAYOUT[self.dataset]

    def check_line(self, parts: list[str]) -> str | None:
        """Problem with one split line, or None. The same rules the fast reader enforces."""
        if len(parts) != len(self.columns):
            sep = "tab" if self.delimiter == "\t" else "comma"
            return f"expected {len(self.columns)} {sep}-separated columns, found {len(parts)}"
        col = dict(zip(self.columns, parts))
        if col[self.label] not in ("0", "1"):
            return f"label {self.label!r} must be 0 or 1, found {col[self.label]!r}"
        for c in self.int_columns + [c for c in self.unused if c.startswith("I")]:
            v = col[c]
            if v == "":
                continue
            try:
                f = float(v)
            except ValueError:
                return f"integer field {c} is not a number: {v!r}"
            if not math.isfinite(f):
                return f"integer field {c} is not finite: {v!r}"
        if self.dataset == "avazu":
            h = col["hour"]
            if len(h) != 8 or not h.isdigit() or not (0 <= int(h[-2:]) < 24):
                return f"hour must be YYMMDDHH, found {h!r}"
        return None

    def locate_error(self, cause: str = "") -> CTRFormatError:
        """Scan the file in Python to name the first malformed line (only on the error path)."""
        with open(self.path, encoding="utf-8", errors="replace", newline="") as fh:
            for lineno, line in enumerate(fh, 1):
                if lineno == 1 and self.header:
                    continue
                line = line.rstrip("\r\n")
                if not line:
                    continue
                problem = self.check_line(line.split(self.delimiter))
                if problem:
                    return CTRFormatError(
                        f"{self.path}:{lineno}: {problem} (expected {self.describe()}); "
                        f"fix or drop that line. Line starts: {line[:80]!r}"
                    )
        return CTRFormatError(f"{self.path}: cannot be read as {self.describe()}: {cause}")

    def batches(self, block_size: int = 1 << 20) -> Iterator:
        """Typed Arrow record batches of the raw file (C++ block reader). Small blocks keep memory flat: with 4-16 MiB
        blocks Arrow's pool peak grew with the file (164 -> 314 MiB from 250k to 1M rows), with 1 MiB it stays
        ~44 MiB at the same parsing speed."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        types = {self.label: pa.int8()}
        types.update({c: pa.float64() for c in self.columns if c.startswith("I") and self.dataset == "criteo"})
        types.update({c: pa.string() for c in self.columns if c not in types})
        include = [c for c in self.columns if c not in self.unused]
        try:  # open_csv already parses the first block
            reader = pacsv.open_csv(
                self.path,
                read_options=pacsv.ReadOptions(
                    column_names=self.columns, skip_rows=int(self.header), block_size=block_size
                ),
                parse_options=pacsv.ParseOptions(delimiter=self.delimiter, quote_char=False),
                convert_options=pacsv.ConvertOptions(
                    column_types=types,
                    include_columns=include,
                    null_values=[""],
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
        except pa.ArrowInvalid as e:
            raise self.locate_error(str(e)) from None
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as e:
                raise self.locate_error(str(e)) from None
            yield batch


def _transform(fmt: _Format, batch):
    """Raw typed batch -> dict of arrays: label (int8), binned integer ids (int32), categorical strings."""
    import pyarrow as pa
    import pyarrow.compute as pc

    label = batch.column(fmt.label)
    if label.null_count or pc.any(pc.greater(label, 1)).as_py() or pc.any(pc.less(label, 0)).as_py():
        raise fmt.locate_error("label not in {0, 1}")
    out = {"label": label}
    for c in fmt.int_columns:
        x = batch.column(c).to_numpy(zero_copy_only=False)  # NaN for missing
        if not np.isfinite(np.nan_to_num(x, nan=0.0)).all():
            raise fmt.locate_error(f"non-finite value in {c}")
        b = log_bin(x)
        out[c] = pa.array(np.where(b < INT_BUCKETS, b + 1, 0).astype(np.int32))
    if fmt.dataset == "avazu":
        hour = batch.column("hour")
        try:
            ts = pc.strptime(hour, format="%y%m%d%H", unit="s")
        except pa.ArrowInvalid as e:
            raise fmt.locate_error(str(e)) from None
        out["hour_of_day"] = pc.cast(pc.hour(ts), pa.string())
        out["weekday"] = pc.cast(pc.day_of_week(ts), pa.string())
    for c in fmt.cat_columns:
        out[c] = batch.column(c)
    return out


# ----------------------------------------------------------------------------------------------------------------
# The processed cache
# ----------------------------------------------------------------------------------------------------------------
def _progress(**kw):
    from datasets.utils.tqdm import tqdm

    return tqdm(**kw)


def build_ctr_cache(
    raw: Path, out: Path, dataset: str, min_count: int, train_fraction: float, criteo_int_fields: int
) -> dict:
    """Passes 1-3 (see the module docstring) into ``out``; returns the metadata. Writes to a temporary folder and
    renames it at the end, so an interrupted run leaves no half cache behind."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from datasets import Dataset, Features, List, Value
    from datasets.arrow_writer import ArrowWriter

    fmt = _Format(dataset, raw, criteo_int_fields)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(work, 0o777 & ~umask)  # mkdtemp makes it private; the cache is as shareable as the raw file's folder
    try:
        raw_features = Features(
            {
                "label": Value("int8"),
                **{c: Value("int32") for c in fmt.int_columns},
                **{c: Value("string") for c in fmt.fields if c not in fmt.int_columns},
            }
        )
        per_mille = round(train_fraction * 1000)
        writers = {s: ArrowWriter(features=raw_features, path=str(work / f"raw_{s}.arrow")) for s in ("train", "test")}
        rows = 0
        bar = _progress(desc=f"Parsing {raw.name}", unit=" rows", unit_scale=True)
        for batch in fmt.batches():
            cols = _transform(fmt, batch)
            table = pa.table({name: cols[name] for name in raw_features})
            i = np.arange(rows, rows + batch.num_rows)
            is_train = pa.array((i % 1000) <= per_mille)
            writers["train"].write_table(table.filter(is_train))
            writers["test"].write_table(table.filter(pc.invert(is_train)))
            rows += batch.num_rows
            bar.update(batch.num_rows)
        bar.close()
        counts = {s: w.finalize()[0] for s, w in writers.items()}
        for w in writers.values():
            w.close()
        if rows == 0:
            raise CTRFormatError(f"{raw}: no data rows; expected {fmt.describe()}")

        # Pass 2: vocabularies from the training split (values seen more than min_count times, "" excluded).
        train_raw = Dataset.from_file(str(work / "raw_train.arrow"))
        table = train_raw.data.table
        vocab: dict[str, list[str]] = {}
        for c in _progress(iterable=[f for f in fmt.fields if f not in fmt.int_columns], desc="Counting vocabularies"):
            vc = pc.value_counts(table.column(c))
            values, n = vc.field("values"), vc.field("counts")
            keep = pc.and_(pc.greater(n, min_count), pc.not_equal(values, ""))
            values, n = values.filter(keep), n.filter(keep)
            # Most frequent first, ties by value: ids are deterministic whatever the hash order.
            order = pc.sort_indices(
                pa.table({"n": n, "v": values}), sort_keys=[("n", "descending"), ("v", "ascending")]
            )
            vocab[c] = values.take(order).to_pylist()
        del table, train_raw
        vocab_sizes = [INT_BUCKETS if f in fmt.int_columns else len(vocab[f]) for f in fmt.fields]
        value_sets = {c: pa.array(v, pa.string()) for c, v in vocab.items()}
        num_fields = len(fmt.fields)
        final_features = Features({"label": Value("int8"), "ids": List(Value("int32"), length=num_fields)})

        def encode(t):
            cols = []
            for f in fmt.fields:
                if f in fmt.int_columns:
                    cols.append(t.column(f).to_numpy())
                else:  # position in the vocabulary + 1; missing / unseen -> 0
                    pos = pc.index_in(t.column(f), value_set=value_sets[f])
                    cols.append(pc.fill_null(pc.add(pos, 1), 0).to_numpy().astype(np.int32))
            ids = np.stack(cols, axis=1).astype(np.int32).reshape(-1) if cols else np.zeros(0, np.int32)
            return pa.table(
                {"label": t.column("label"), "ids": pa.FixedSizeListArray.from_arrays(pa.array(ids), num_fields)}
            )

        # Pass 3: ids, one batched Dataset.map per split, written straight into the cache folder.
        for s in ("train", "test"):
            ds = Dataset.from_file(str(work / f"raw_{s}.arrow")).with_format("arrow")
            if len(ds) == 0:  # e.g. a file of <= 800 rows has no test rows under the row-index rule
                w = ArrowWriter(features=final_features, path=str(work / f"{s}.arrow"))
                w.finalize()
                w.close()
            else:
                ds.map(
                    encode,
                    batched=True,
                    batch_size=50_000,
                    writer_batch_size=50_000,
                    features=final_features,
                    remove_columns=ds.column_names,
                    cache_file_name=str(work / f"{s}.arrow"),
                    new_fingerprint=f"ctr-{s}-{out.name}",
                    desc=f"Encoding {s}",
                )
            del ds
            (work / f"raw_{s}.arrow").unlink()
        label_pos = {}
        for s in ("train", "test"):
            lbl = Dataset.from_file(str(work / f"{s}.arrow")).data.table.column("label")
            label_pos[s] = int(pc.sum(lbl).as_py() or 0)
        meta = {
            "format_version": FORMAT_VERSION,
            "dataset": dataset,
            "raw": str(raw),
            "rows": rows,
            "split_rows": counts,
            "positives": label_pos,
            "fields": fmt.fields,
            "vocab_sizes": vocab_sizes,
            "min_count": min_count,
            "train_fraction": train_fraction,
            "split_rule": f"train iff (i % 1000) <= {per_mille}",
            "criteo_int_fields": criteo_int_fields if dataset == "criteo" else None,
        }
        (work / "meta.json").write_text(json.dumps(meta, indent=1))
        (work / "vocab.json").write_text(json.dumps(vocab))
        for leftover in work.glob("cache-*"):
            leftover.unlink()
        if out.exists():  # a concurrent build finished first
            shutil.rmtree(work)
        else:
            os.replace(work, out)
        return meta
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _writable(folder: Path) -> bool:
    # Mode bits too: root passes os.access on folders that are meant to be read-only (shared data).
    return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)


class _Batches(Dataset):
    """Contiguous batches of a memory-mapped processed split: item k = rows [k*bs, (k+1)*bs) as (ids int64 (B, F),
    label float32 (B,)). Whole-batch slicing keeps the loader cheap; ``shuffle`` shuffles the batch order."""

    def __init__(self, path: Path, batch_size: int):
        self.path, self.batch_size = Path(path), batch_size
        self._table = None
        self.num_rows = self.table.num_rows
        self.num_fields = self.table.schema.field("ids").type.list_size

    @property
    def table(self):
        # Opened lazily per process: DataLoader workers re-map the file instead of receiving a pickled copy.
        if self._table is None:
            from datasets import Dataset as HFDataset

            self._table = HFDataset.from_file(str(self.path)).data.table
        return self._table

    def __getstate__(self):
        return {**self.__dict__, "_table": None}

    def __len__(self) -> int:
        return math.ceil(self.num_rows / self.batch_size)

    def __getitem__(self, k: int):
        if not 0 <= k < len(self):
            raise IndexError(k)
        t = self.table.slice(k * self.batch_size, self.batch_size)
        ids = t.column("ids").combine_chunks().flatten().to_numpy().reshape(-1, self.num_fields)
        label = t.column("label").to_numpy()
        return torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(label.astype(np.float32))


class CTRDataModule(LightningDataModule):
    """Criteo / Avazu CTR data with xDeepInt's reference preprocessing (see the module docstring).

    Args:
        dataset: ``"criteo"`` or ``"avazu"``.
        root: folder holding the raw file (``train.txt`` for Criteo, ``train``/``train.csv`` for Avazu, or the
            DeepCTR sample names), or the file itself. ``None``: synthetic Criteo-format data
            (:func:`write_synthetic_criteo`, ``synthetic_rows`` rows, ``synthetic_seed``).
        cache_dir: where the processed Arrow (and the synthetic raw file) go. Default: next to the raw file when its
            folder is writable, otherwise the ``datasets`` cache, ``$HF_DATASETS_CACHE/zoo-ctr``.
        min_count: a category value is kept iff it occurs more than this many times in the training split (20).
        train_fraction: the row-index split rule's fraction (0.8).
        criteo_int_fields: how many of I1..I13 are used (12, as the reference).
        batch_size / eval_batch_size: 4096 / 16384 as the reference.
        shuffle: shuffle the order of training batches (the reference reads in file order).
    """

    def __init__(
        self,
        dataset: str = "criteo",
        root: str | None = None,
        cache_dir: str | None = None,
        min_count: int = 20,
        train_fraction: float = 0.8,
        criteo_int_fields: int = 12,
        batch_size: int = 4096,
        eval_batch_size: int = 16384,
        shuffle: bool = False,
        num_workers: int = 0,
        synthetic_rows: int = 100_000,
        synthetic_seed: int = 0,
    ):
        super().__init__()
        where = "CTRDataModule"
        check_choice("dataset", dataset, sorted(_LAYOUT), where=where)
        if not 0 < train_fraction < 1:
            raise UserError(f"{where}: train_fraction must be in (0, 1), got {train_fraction}; 0.8 is the reference's.")
        if not 0 <= criteo_int_fields <= 13:
            raise UserError(
                f"{where}: criteo_int_fields must be in 0..13, got {criteo_int_fields}; 12 is the reference's."
            )
        check_positive("batch_size", batch_size, where=where)
        check_positive("eval_batch_size", eval_batch_size, where=where)
        check_positive("min_count", min_count, minimum=0, where=where)
        check_positive("num_workers", num_workers, minimum=0, where=where)
        if root is None and dataset != "criteo":
            raise UserError(
                f"{where}: root=None gives synthetic Criteo-format data only; for {dataset!r} pass root= "
                f"the folder holding {_DEFAULT_FILES[dataset][0]} ({_LAYOUT[dataset]})"
            )
        if root is None:
            check_positive("synthetic_rows", synthetic_rows, minimum=10, where=where)
        elif not Path(root).expanduser().exists():
            raise DataNotFoundError(
                f"{where}: {root} does not exist; point data.init_args.root at the {dataset} file or at a folder "
                f"holding one of {', '.join(_DEFAULT_FILES[dataset])} ({_LAYOUT[dataset]}), or use root=null for "
                "synthetic Criteo-format data."
            )
        self.save_hyperparameters()
        self._meta: dict | None = None
        self._raw: Path | None = None
        self._dir: Path | None = None
        self._splits: dict[str, _Batches] = {}

    # -- locations ------------------------------------------------------------------------------------------
    def _cache_root(self) -> Path:
        if self.hparams.cache_dir:
            return Path(self.hparams.cache_dir).expanduser()
        from datasets import config

        return Path(config.HF_DATASETS_CACHE) / "zoo-ctr"

    def raw_file(self) -> Path:
        """The raw file to read (generating the synthetic one when ``root`` is None)."""
        if self._raw is None:
            self._raw = self._find_raw()
        return self._raw

    def _find_raw(self) -> Path:
        hp = self.hparams
        if hp.root is None:
            path = self._cache_root() / f"synthetic_criteo_n{hp.synthetic_rows}_s{hp.synthetic_seed}.txt"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                log.info(
                    "root=None: writing %d rows of synthetic Criteo-format data with planted crosses to %s",
                    hp.synthetic_rows,
                    path,
                )
                write_synthetic_criteo(path, hp.synthetic_rows, hp.synthetic_seed)
            else:
                log.info("root=None: using the synthetic Criteo-format data at %s", path)
            return path
        root = Path(hp.root).expanduser()
        if root.is_file():
            return root
        if root.is_dir():
            for name in _DEFAULT_FILES[hp.dataset]:
                if (root / name).is_file():
                    return root / name
        raise DataNotFoundError(
            f"no {hp.dataset} data at {root}: expected a file, or a folder holding one of "
            f"{', '.join(_DEFAULT_FILES[hp.dataset])} ({_LAYOUT[hp.dataset]}). Download the dataset and extract it "
            "there (Criteo: dac.tar.gz -> train.txt), or use root=None for synthetic Criteo-format data."
        )

    def processed_dir(self) -> Path:
        hp = self.hparams
        raw = self.raw_file()
        st = raw.stat()
        key = json.dumps(
            [
                FORMAT_VERSION,
                hp.dataset,
                st.st_size,
                st.st_mtime_ns,
                hp.min_count,
                hp.train_fraction,
                hp.criteo_int_fields if hp.dataset == "criteo" else None,
            ]
        )
        fp = hashlib.sha1(key.encode()).hexdigest()[:16]
        if hp.cache_dir is None and hp.root is not None and _writable(raw.parent):
            return raw.parent / f"{raw.name}.zoo-ctr" / fp
        # Out of place: the raw path is part of the key, so two samples with the same file name do not collide.
        fp = hashlib.sha1((key + str(raw.resolve())).encode()).hexdigest()[:16]
        return self._cache_root() / f"{raw.name}.zoo-ctr" / fp

    # -- Lightning hooks --------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        self._ensure()

    def _ensure(self) -> dict:
        if self._meta is not None:
            return self._meta
        out = self.processed_dir()
        if not (out / "meta.json").is_file():
            raw = self.raw_file()
            log.info("Preprocessing %s (%s) into %s", raw, self.hparams.dataset, out)
            build_ctr_cache(
                raw,
                out,
                self.hparams.dataset,
                self.hparams.min_count,
                self.hparams.train_fraction,
                self.hparams.criteo_int_fields,
            )
        else:
            log.info("Using the processed %s data cached in %s", self.hparams.dataset, out)
        self._dir = out
        self._meta = json.loads((out / "meta.json").read_text())
        return self._meta

    def setup(self, stage: str | None = None) -> None:
        self._ensure()
        for s, bs in (("train", self.hparams.batch_size), ("test", self.hparams.eval_batch_size)):
            if s not in self._splits:
                self._splits[s] = _Batches(self._dir / f"{s}.arrow", bs)

    @property
    def meta(self) -> dict:
        return self._ensure()

    @property
    def vocab_sizes(self) -> list[int]:
        return list(self.meta["vocab_sizes"])

    @property
    def field_names(self) -> list[str]:
        return list(self.meta["fields"])

    @property
    def num_fields(self) -> int:
        return len(self.meta["fields"])

    def vocabulary(self) -> dict[str, list[str]]:
        """Kept category values per categorical field, in id order (id = position + 1)."""
        self._ensure()
        return json.loads((self._dir / "vocab.json").read_text())

    def split(self, name: str) -> _Batches:
        self.setup()
        return self._splits[name]

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.split(name),
            batch_size=None,
            shuffle=shuffle,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.hparams.shuffle)

    def val_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
