"""Official weights on load (zoo/convert.py), end to end against a real HTTP server on 127.0.0.1.

The server serves an EMO-1M checkpoint laid out with the official key names (``to_official_state_dict`` of a zoo
EMO-1M, saved as the authors save ``net.pth``). ``zoo.load("emo-1m")`` must download it once, convert it, load it
strictly and cache the converted safetensors; the next load works offline with the server gone and no conversion.
Broken downloads (short, corrupt, a pickle that is not plain tensors) are clear errors that leave nothing in the cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import os
import threading

import pytest
import torch

import zoo
from zoo import convert, registry
from zoo.models.emo.convert import to_official_state_dict
from zoo.models.emo.model import emo_1m


class _Server:
    """``http.server`` on 127.0.0.1 in a thread; ``files``: path -> bytes; ``truncate``: bytes to hold back while
    announcing the full Content-Length."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.truncate = 0
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) - server.truncate])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def official_emo():
    """A randomly initialised EMO-1M (the real architecture of the entry) and its official-layout net.pth bytes."""
    torch.manual_seed(0)
    net = emo_1m().eval()
    return net, _saved(to_official_state_dict(net.state_dict()))


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.stop()


@pytest.fixture
def online(tmp_path, monkeypatch):
    """An empty zoo cache, and network allowed (the conftest's socket guard still permits loopback only)."""
    from huggingface_hub import constants

    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "zoo_cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return tmp_path / "zoo_cache"


def _serve_as_emo_1m(server, monkeypatch, body: bytes, hash_of: bytes | None = None):
    server.files["/EMO_1M/net.pth"] = body
    entry = dataclasses.replace(
        registry.get("emo-1m"),
        official_url=f"{server.url}/EMO_1M/net.pth",
        official_hash=f"git-blob-sha1:{_git_blob_sha1(body if hash_of is None else hash_of)}",
    )
    monkeypatch.setitem(registry._load(), "emo-1m", entry)
    return entry


def _files(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


def _same_outputs(net, module):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(module(x), net(x))


def test_first_load_downloads_and_converts_then_offline_from_the_cache(official_emo, server, online, monkeypatch):
    net, body = official_emo
    _serve_as_emo_1m(server, monkeypatch, body)
    assert registry.get("emo-1m").weights == "official" and "emo-1m" in zoo.list_models(pretrained=True)

    first = zoo.load("emo-1m")
    assert not first.training and server.requests == ["/EMO_1M/net.pth"]
    _same_outputs(net, first)
    assert _files(online) == [
        "converted/emo-1m/README.md",
        "converted/emo-1m/config.json",
        "converted/emo-1m/model.safetensors",
        "official/emo-1m/net.pth",
    ]

    # the server is gone, the Hub is offline, and converting again would fail: the cache serves the load
    server.stop()
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    def no_conversion(*a, **k):
        raise AssertionError("the second load must not convert")

    monkeypatch.setattr(convert, "read_official", no_conversion)
    second = zoo.create("emo-1m", pretrained=True)
    _same_outputs(net, second)
    assert server.requests == ["/EMO_1M/net.pth"]


def test_offline_names_the_url_and_where_to_put_the_file(official_emo, server, online, monkeypatch):
    from huggingface_hub import constants

    net, body = official_emo
    entry = _serve_as_emo_1m(server, monkeypatch, body)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE=1") as ei:
        zoo.load("emo-1m")
    where = online / "official" / "emo-1m" / "net.pth"
    assert entry.official_url in str(ei.value) and str(where) in str(ei.value)
    assert server.requests == [] and not online.exists()
    # doing what the message says works, still offline
    where.parent.mkdir(parents=True)
    where.write_bytes(body)
    _same_outputs(net, zoo.load("emo-1m"))
    assert server.requests == []


def test_a_truncated_download_is_an_error_and_caches_nothing(official_emo, server, online, monkeypatch):
    _serve_as_emo_1m(server, monkeypatch, official_emo[1])
    server.truncate = 1000
    with pytest.raises(convert.DownloadError, match="cut short") as ei:
        zoo.load("emo-1m")
    assert "try again" in str(ei.value)
    assert _files(online) == [], "nothing half-written in the cache"
    server.truncate = 0  # the next attempt downloads again and succeeds
    _same_outputs(official_emo[0], zoo.load("emo-1m"))


def test_a_download_that_does_not_match_its_hash_caches_nothing(official_emo, server, online, monkeypatch):
    _serve_as_emo_1m(server, monkeypatch, official_emo[1], hash_of=b"the file the authors published")
    with pytest.raises(convert.DownloadError, match="git-blob-sha1"):
        zoo.load("emo-1m")
    assert _files(online) == []


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_holding_anything_but_tensors_is_refused_and_runs_nothing(tmp_path, server, online, monkeypatch):
    marker = tmp_path / "pwned"
    evil = _saved({"stage0.0.convs.0.0.weight": torch.zeros(1), "x": _RunsACommand(marker)})
    _serve_as_emo_1m(server, monkeypatch, evil)
    with pytest.raises(ValueError, match=r"weights_only=True.*Nothing in it was run"):
        zoo.load("emo-1m")
    assert not marker.exists()
    assert _files(online) == [], "the refused file is not kept where a later load would find it"


def test_the_cache_location_follows_zoo_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "c"))
    assert convert.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("ZOO_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert convert.cache_dir() == tmp_path / "xdg" / "zoo"
    assert convert.official_file(registry.get("emo-1m")) == tmp_path / "xdg" / "zoo" / "official" / "emo-1m" / "net.pth"


def test_emo_entries_point_at_the_pinned_official_files():
    for size in ("1m", "2m", "5m", "6m"):
        e = registry.get(f"emo-{size}")
        assert e.official_url == (
            f"https://github.com/zhangzjn/EMO/raw/27d9b40fea9c2a12a2fe7acc51032184852a99d8/"
            f"resources/EMO_{size.upper()}/net.pth"
        )
        assert e.official_hash.startswith("git-blob-sha1:") and len(e.official_hash.split(":")[1]) == 40


def test_no_network_gives_the_offline_hint_and_leaves_no_cache_folder(official_emo, server, online, monkeypatch):
    """HF_HUB_OFFLINE unset but the server cannot be reached: the same 'save the file here' way out as offline mode
    (before: a bare 'cannot download' error and an empty official/emo-1m/ folder in the cache)."""
    net, body = official_emo
    entry = _serve_as_emo_1m(server, monkeypatch, body)
    server.stop()  # nothing listens on the port any more: connection refused
    with pytest.raises(FileNotFoundError, match="the download failed") as ei:
        zoo.load("emo-1m")
    where = online / "official" / "emo-1m" / "net.pth"
    msg = str(ei.value)
    assert entry.official_url in msg and str(where) in msg and f"curl -L -o {where}" in msg
    assert not online.exists(), _files(online)
    from zoo.errors import user_error_message

    assert user_error_message(ei.value) == " ".join(msg.split())  # `zoo` prints it as one line
    where.parent.mkdir(parents=True)  # doing what the message says works, still without a server
    where.write_bytes(body)
    _same_outputs(net, zoo.load("emo-1m"))
