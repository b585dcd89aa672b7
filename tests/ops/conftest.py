"""tests/ops: Triton kernels run in Triton's CPU interpreter (``TRITON_INTERPRET=1``).

Triton decorates its own library functions (``tl.zeros``, ``tl.sum``, ...) when it is imported, so the variable
must be set before the first ``import triton`` — and importing lightning (other test modules do) imports triton.
So: when this conftest is loaded before triton, it imports triton in interpreter mode and the tests run in this
process (the variable is set per test, so other test modules never see it); otherwise
each test module is run once in a fresh ``TRITON_INTERPRET=1`` pytest subprocess and every test here reports the
outcome it had there (``pytest_pyfunc_call`` below), so the kernels are exercised either way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

if "triton" not in sys.modules and not torch.cuda.is_available():  # with a GPU, triton stays compiled-mode for
    # tests/test_ops_gpu.py and these tests take the subprocess path below
    # Import triton in interpreter mode now, then put the variable back as it was, so that test modules outside
    # tests/ops do not run with it; the fixture below sets it for each test here.
    _previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        import triton.language  # noqa: F401
    except Exception:  # no Triton: the fixture skips with the reason
        pass
    finally:
        if _previous is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = _previous

_RESULTS: dict[Path, dict[str, tuple[str, str]]] = {}


def _interpreter_ready() -> bool:
    from zoo.ops import _dispatch

    return _dispatch.interpreter_ready()


def _subprocess_results(path: Path, tmp_dir: Path) -> dict[str, tuple[str, str]]:
    if path not in _RESULTS:
        xml = tmp_dir / f"{path.stem}.xml"
        env = {**os.environ, "TRITON_INTERPRET": "1"}
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", str(path), "-q", "-p", "no:cacheprovider", f"--junitxml={xml}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        results = {}
        if xml.exists():
            for case in ET.parse(xml).getroot().iter("testcase"):
                bad = [c for c in case if c.tag in ("failure", "error", "skipped")]
                results[case.get("name")] = (
                    (bad[0].tag, (bad[0].get("message") or "") + "\n" + (bad[0].text or "")) if bad else ("passed", "")
                )
        results["__output__"] = ("", proc.stdout[-4000:] + proc.stderr[-4000:])
        _RESULTS[path] = results
    return _RESULTS[path]


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    from zoo.ops import _dispatch

    if _dispatch.triton_import_error() is not None or _interpreter_ready():
        return None  # run here (the fixture below skips when there is no Triton at all)
    tmp_dir = pyfuncitem.config._tmp_path_factory.mktemp("ops_interpret")
    results = _subprocess_results(Path(pyfuncitem.path), tmp_dir)
    outcome, message = results.get(pyfuncitem.name, ("missing", results["__output__"][1]))
    if outcome != "passed":
        pytest.fail(f"{outcome} in the TRITON_INTERPRET=1 subprocess:\n{message}", pytrace=False)
    return True


@pytest.fixture(autouse=True)
def triton_interpreter(monkeypatch):
    from zoo.ops import _dispatch

    if _dispatch.triton_import_error() is not None:
        pytest.skip(f"kernel tests need Triton: {_dispatch.triton_import_error()}")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    torch.manual_seed(0)
    yield
