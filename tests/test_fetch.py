"""fetch-roco against a local HTTP server on 127.0.0.1 serving small fake PMC packages."""

import functools
import gzip
import io
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import write_roco_split
from PIL import Image

from mirage_core.cli import main
from mirage_core.corpus import load_corpus
from mirage_core.fetch import fetch_roco


class _RangeHandler(SimpleHTTPRequestHandler):
    """Serves files and honours `Range: bytes=N-` (as the PMC server does); counts requests."""

    requests: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).requests.append((self.path, self.headers.get("Range")))
        range_header = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not range_header:
            return super().do_GET()
        try:
            data = open(path, "rb").read()
        except OSError:
            return self.send_error(404)
        start = int(range_header.split("=")[1].rstrip("-"))
        self.send_response(206)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def pmc_server(tmp_path):
    """Metadata of a 4-record ROCO split, and packages PMC100..PMC103 served from 127.0.0.1."""
    metadata = write_roco_split(tmp_path / "meta", n=4, with_images=False)
    root = tmp_path / "www" / "pub" / "pmc"
    root.mkdir(parents=True)
    for i in range(4):
        if i == 2:
            continue  # this package is missing on the server
        buffer = io.BytesIO()
        Image.new("L", (900, 600), 30 + 60 * i).save(buffer, "PNG")
        with tarfile.open(root / f"PMC10{i}.tar.gz", "w:gz") as tar:
            info = tarfile.TarInfo(f"PMC10{i}/fig{i}.jpg")
            info.size = len(buffer.getvalue())
            tar.addfile(info, io.BytesIO(buffer.getvalue()))
    (metadata / "dlinks.txt").write_text("".join(
        f"ROCO_{i + 1:05d}\twget -r ftp://ftp.ncbi.nlm.nih.gov/pub/pmc/PMC10{i}.tar.gz -P /path/to/Dir\tfig{i}.jpg\n"
        for i in range(4)
    ))
    _RangeHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_RangeHandler, directory=str(tmp_path / "www")))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield metadata, f"http://127.0.0.1:{server.server_address[1]}/pub/pmc/", root
    server.shutdown()


def test_fetch_writes_roco_layout_and_resumes(pmc_server, tmp_path):
    metadata, base_url, _ = pmc_server
    out = tmp_path / "out"
    report = fetch_roco(metadata, out, base_url=base_url)
    assert report.fetched == 3 and sum(report.failed.values()) == 1
    corpus = load_corpus(out)
    assert sorted(r.id for r in corpus.records) == ["ROCO_00001", "ROCO_00002", "ROCO_00004"]
    assert max(Image.open(corpus.records[0].image_path).size) == 512  # re-encoded at max side 512
    assert corpus.records[0].licence == "CC BY" and corpus.records[0].pmc_id == "PMC100"
    assert (out / "licences.txt").read_text().startswith("ROCO_ID,PMC_ID,CC")

    requests_before = len(_RangeHandler.requests)
    again = fetch_roco(metadata, out, base_url=base_url)
    assert again.already_there == 3 and again.fetched == 0
    assert len(_RangeHandler.requests) - requests_before == 1  # only the missing package is asked for again


def test_interrupted_download_resumes_with_range(pmc_server, tmp_path):
    metadata, base_url, root = pmc_server
    out = tmp_path / "out"
    cache = out / ".packages"
    cache.mkdir(parents=True)
    whole = (root / "PMC100.tar.gz").read_bytes()
    (cache / "PMC100.tar.gz.part").write_bytes(whole[:100])
    report = fetch_roco(metadata, out, base_url=base_url, limit=1)
    assert report.fetched == 1
    assert ("/pub/pmc/PMC100.tar.gz", "bytes=100-") in _RangeHandler.requests
    assert (cache / "PMC100.tar.gz").read_bytes() == whole


def test_licence_filter_and_limit_via_cli(pmc_server, tmp_path, capsys):
    metadata, base_url, _ = pmc_server
    out = tmp_path / "out"
    assert main(["fetch-roco", "--roco", str(metadata), "--out", str(out), "--licences", "CC0",
                 "--base-url", base_url, "--json"]) == 0
    assert '"fetched": 1' in capsys.readouterr().out
    assert [r.licence for r in load_corpus(out).records] == ["CC0"]


def test_missing_dlinks_is_a_clear_error(tmp_path, capsys):
    metadata = write_roco_split(tmp_path / "meta", n=2, with_images=False)
    (metadata / "dlinks.txt").unlink()
    assert main(["fetch-roco", "--roco", str(metadata), "--out", str(tmp_path / "o")]) == 2
    assert "dlinks.txt" in capsys.readouterr().err


def test_hostile_servers_ids_and_archives_are_refused(pmc_server, tmp_path, capsys, monkeypatch):
    import time as clock

    from mirage_core.errors import MirageError
    from mirage_core.fetch import _download, _extract

    metadata, base_url, root = pmc_server
    assert main(["fetch-roco", "--roco", str(metadata), "--out", str(tmp_path / "o"), "--base-url",
                 "file:///etc/"]) == 2
    assert "http(s)" in capsys.readouterr().err

    class Drip(SimpleHTTPRequestHandler):  # a byte every 0.3 s: every read is on time, the whole never ends
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):
                self.wfile.write(b"x")
                self.wfile.flush()
                clock.sleep(0.3)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    started = clock.monotonic()
    stalled = f"http://127.0.0.1:{server.server_address[1]}"
    with pytest.raises(MirageError, match="took longer"):
        _download(f"{stalled}/x.tar.gz", tmp_path / "x.tar.gz", timeout=5, deadline=1.5)
    assert clock.monotonic() - started < 10
    assert not list(tmp_path.glob("*.part"))  # a stalled download leaves no partial file
    monkeypatch.setattr("mirage_core.fetch.MAX_DOWNLOAD_SECONDS", 1.5)
    out = tmp_path / "stalled"  # the command says so and fails, instead of "fetched 0" and exit 0
    assert main(["fetch-roco", "--roco", str(metadata), "--out", str(out), "--base-url", stalled + "/pub/pmc/",
                 "--limit", "1"]) == 2
    assert "could not be fetched" in capsys.readouterr().err
    assert not list(out.rglob("*.part"))
    server.shutdown()

    sparse = tmp_path / "sparse.tar.gz"  # a member declaring 2 GB: refused before a byte is read
    info = tarfile.TarInfo("PMC1/fig.jpg")
    info.size = 2 * 1024**3
    sparse.write_bytes(gzip.compress(info.tobuf(tarfile.GNU_FORMAT) + bytes(512)))  # header only, no body
    with pytest.raises(MirageError, match="too large"):
        _extract(sparse, "fig.jpg")


def test_a_roco_id_that_climbs_writes_nothing_outside(pmc_server, tmp_path):
    metadata, base_url, root = pmc_server
    with (metadata / "captions.txt").open("a") as handle:
        handle.write("../../pwned\tan id that climbs out\n")
    with (metadata / "dlinks.txt").open("a") as handle:
        handle.write("../../pwned\twget -r ftp://ftp.ncbi.nlm.nih.gov/pub/pmc/PMC100.tar.gz -P x\tfig0.jpg\n")
    fetch_roco(metadata, tmp_path / "out", base_url=base_url)
    assert not (tmp_path / "pwned.jpg").exists() and not any(tmp_path.parent.glob("pwned*"))
    assert all(p.name.startswith("ROCO_") for p in (tmp_path / "out" / "images").iterdir())
