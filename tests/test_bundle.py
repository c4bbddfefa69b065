"""Corpus bundles: made from a corpus, installed from a path or a loopback HTTP server, searched without
re-embedding; truncated downloads, wrong checksums and hostile archives are refused and leave nothing used."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import write_csv_slice

from mirage_core.bundle import BundleError, bundle_folder, create_bundle, install_bundle, load_bundle_index
from mirage_core.cli import main
from mirage_core.corpus import load_corpus
from mirage_core.index import build_index


@pytest.fixture(scope="module")
def bundle_file(tmp_path_factory, demo_slice, lite_encoder) -> Path:
    folder = tmp_path_factory.mktemp("bundle")
    corpus = load_corpus(write_csv_slice(folder / "slice.csv", demo_slice.records[:20]))
    out = folder / "corpus.tar.gz"
    create_bundle(corpus, build_index(corpus, lite_encoder), out)
    return out


class _Handler(BaseHTTPRequestHandler):
    files: dict = {}

    def log_message(self, *args):
        pass

    def do_GET(self):
        data, declared = self.files.get(self.path, (None, None))
        if data is None:
            return self.send_error(404)
        self.send_response(200)
        self.send_header("Content-Length", str(declared or len(data)))
        self.end_headers()
        self.wfile.write(data)  # a declared length above len(data) is a download cut short


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _nothing_installed(home: Path) -> bool:
    bundles = home / "bundles"
    return not bundles.exists() or not any(bundles.iterdir())


def test_a_bundle_installs_from_http_and_searches_without_embedding(bundle_file, server, tmp_path, lite_encoder):
    data = bundle_file.read_bytes()
    _Handler.files["/corpus.tar.gz"] = (data, None)
    digest = hashlib.sha256(data).hexdigest()
    folder = install_bundle(f"{server}/corpus.tar.gz", tmp_path / "home", digest)
    index = load_bundle_index(folder, lite_encoder)
    assert len(index) == 20 and all(Path(r.image_path).is_relative_to(folder) for r in index.records)
    assert all(Path(r.image_path).exists() for r in index.records)
    assert index.search(lite_encoder.encode_text(["chest x-ray"])[0], 3)
    assert install_bundle(f"{server}/corpus.tar.gz", tmp_path / "home", digest) == folder  # installed once


def test_the_cli_and_settings_start_from_a_local_bundle(bundle_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MIRAGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MIRAGE_BUNDLE_URL", str(bundle_file))
    monkeypatch.setenv("MIRAGE_CORPUS", str(tmp_path / "no-such-corpus"))  # the bundle replaces the corpus
    assert main(["search", "chest x-ray", "--k", "2", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert len(results) == 2 and str(tmp_path / "home" / "bundles") in results[0]["image"]
    assert not (tmp_path / "home" / "indexes").exists()  # nothing was embedded


def test_an_unreachable_truncated_or_wrong_checksum_bundle_is_refused(bundle_file, server, tmp_path):
    data = bundle_file.read_bytes()
    _Handler.files["/cut.tar.gz"] = (data[: len(data) // 2], len(data))
    with pytest.raises(BundleError, match="stopped at|cannot download"):
        install_bundle(f"{server}/cut.tar.gz", tmp_path / "home")
    assert _nothing_installed(tmp_path / "home")
    _Handler.files["/ok.tar.gz"] = (data, None)
    with pytest.raises(BundleError, match="SHA-256"):
        install_bundle(f"{server}/ok.tar.gz", tmp_path / "home", "0" * 64)
    assert _nothing_installed(tmp_path / "home")
    with pytest.raises(BundleError, match="http"):
        install_bundle("file:///etc/passwd", tmp_path / "home")
    import socket

    with socket.socket() as probe:  # a port nothing listens on: the bundle's server is unreachable
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(BundleError, match="cannot download the bundle .*refused"):
        install_bundle(f"http://127.0.0.1:{port}/corpus.tar.gz", tmp_path / "home", timeout=5)
    assert _nothing_installed(tmp_path / "home")


def _archive(tmp_path: Path, name: str, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return path


def _file(name: str, data: bytes = b"x", size: int | None = None) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data) if size is None else size
    return info, data


def _link(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, b""


def _with_members(bundle_file: Path, tmp_path: Path, name: str, extra, drop: str = "", corrupt: str = "") -> Path:
    members = []
    with tarfile.open(bundle_file, "r:gz") as tar:
        for member in tar:
            data = tar.extractfile(member).read()
            if member.name == drop:
                continue
            if member.name == corrupt:
                data = b"y" + data[1:]
            members.append((member, data))
    return _archive(tmp_path, name, members + extra)


@pytest.mark.parametrize("case, message", [
    ("climbs", "not a plain file"), ("absolute", "not a plain file"), ("symlink", "not a plain file"),
    ("unlisted", "do not match"), ("missing", "do not match"), ("corrupt", "checksum"),
    ("garbage", "not a readable"), ("no-manifest", "manifest"),
])
def test_hostile_or_damaged_archives_are_refused(bundle_file, tmp_path, case, message):
    if case == "garbage":
        path = tmp_path / "garbage.tar.gz"
        path.write_bytes(b"\x1f\x8b" + b"not really gzip" * 100)
    elif case == "no-manifest":
        path = _with_members(bundle_file, tmp_path, "x.tar.gz", [], drop="bundle.json")
    else:
        extra = {"climbs": [_file("images/../../escaped.txt")], "absolute": [_file("/tmp/escaped.txt")],
                 "symlink": [_link("images/link.jpg", "/etc/passwd")], "unlisted": [_file("images/extra.jpg")],
                 "missing": [], "corrupt": []}[case]
        path = _with_members(bundle_file, tmp_path, f"{case}.tar.gz", extra,
                             drop="ATTRIBUTION.md" if case == "missing" else "",
                             corrupt="index/manifest.json" if case == "corrupt" else "")
    with pytest.raises(BundleError, match=message):
        install_bundle(str(path), tmp_path / "home")
    assert _nothing_installed(tmp_path / "home")
    assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/escaped.txt").exists()
    assert not (bundle_folder(str(path), tmp_path / "home") / "bundle.json").exists()


def test_an_app_starts_from_a_bundle(bundle_file, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MIRAGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MIRAGE_BUNDLE_URL", str(bundle_file))
    at = AppTest.from_file("../streamlit_app.py", default_timeout=240)
    at.run()
    assert not at.exception and not at.error
    assert "20 images" in "\n".join(c.value for c in at.sidebar.caption)
