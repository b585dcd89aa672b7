"""Test set-up: offline (any non-loopback connection fails loudly), shared data fixtures."""

from __future__ import annotations

import os
import socket
from pathlib import Path

# huggingface_hub reads these once at import: set them before anything imports it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ZOO_SHARED_DATA", REPO.parent / "shared" / "data"))

_real_connect = socket.socket.connect


def _loopback_only(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if (
        isinstance(host, str)
        and (host.startswith("127.") or host in ("localhost", "::1", ""))
        or self.family == socket.AF_UNIX
    ):
        return _real_connect(self, address)
    raise RuntimeError(f"tests must not use the network (tried to connect to {address!r})")


@pytest.fixture(autouse=True, scope="session")
def _no_network():
    socket.socket.connect = _loopback_only
    yield
    socket.socket.connect = _real_connect


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        raise FileNotFoundError(
            f"the shared test data is not at {SHARED_DATA}; check out the project beside shared/ or set ZOO_SHARED_DATA"
        )
    return SHARED_DATA


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty, private huggingface_hub cache for this test."""
    from huggingface_hub import constants

    cache = tmp_path / "hf_cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.fixture
def run_script(tmp_path):
    """Run ``text`` as a fresh Python process in ``tmp_path`` (a 2-process DDP launch: Lightning starts the second
    rank by re-running the script), one intra-op thread each; fail with its stderr unless it exits 0."""
    import subprocess
    import sys

    def run(name: str, text: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
        script = tmp_path / name
        script.write_text(text)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PL_DISABLE_FORK": "1"}
        env.pop("LOCAL_RANK", None)
        proc = subprocess.run(
            [sys.executable, str(script), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    return run
