"""One run per folder: `zoo fit` holds its default_root_dir (zoo/files.py run_lock) for the whole run."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # the demo config names its data relative to the repository root


def test_two_runs_never_share_one_folder(tmp_path):
    """Two `zoo fit` into one default_root_dir interleaved their logs and last.ckpt held the other run's state: a
    live run's folder is refused with one line; a lock left by a killed run is taken over."""
    import json
    import socket
    import subprocess
    import sys

    from zoo.cli import main
    from zoo.files import run_lock

    root = tmp_path / "run"
    with run_lock(root, "fit run"):
        rc = main(
            [
                "fit",
                "--config",
                "configs/demo/emo.yaml",
                f"--trainer.default_root_dir={root}",
                "--trainer.max_steps=1",
                "--trainer.limit_val_batches=0",
            ]
        )
        assert rc == 2
        assert not (root / "checkpoints").exists() and not (root / "logs").exists()
    assert not (root / ".zoo-run.lock").exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (root / ".zoo-run.lock").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    with run_lock(root):  # stale: its process has ended
        pass
    assert not (root / ".zoo-run.lock").exists()


def test_a_busy_folder_is_one_line(tmp_path, capsys):
    from zoo.cli import main
    from zoo.files import run_lock

    with run_lock(tmp_path, "fit run"):
        assert (
            main(
                [
                    "fit",
                    "--config",
                    "configs/demo/emo.yaml",
                    f"--trainer.default_root_dir={tmp_path}",
                    "--trainer.max_steps=1",
                ]
            )
            == 2
        )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "in use by another zoo fit run" in err[0] and "--trainer.default_root_dir" in err[0]
