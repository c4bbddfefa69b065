"""Opening the index a deployment names: from a folder, a corpus bundle or PostgreSQL, built on first use, and
searched through the configured backend. This is the one module that puts `index`, `backends` and `bundle`
together; the app, the CLI and the benchmarks open indexes through it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from .backends import PgVectorSearch, backend_kind, download_rows, faiss_for, upload_index
from .corpus import Corpus
from .encoders.base import Encoder
from .files import check_writable
from .index import (
    FORMAT_VERSION,
    Index,
    IndexFormatError,
    build_index,
    index_exists,
    load_index,
    record_from_dict,
    save_index,
)

Progress = Callable[[int, int], None]
log = logging.getLogger("mirage")


def download_index(url: str, key: str) -> Index | None:
    """The index stored in PostgreSQL under `key`, searched there; None when there is none, or when it was
    uploaded by a release whose layout this one does not read (it is then built and uploaded again)."""
    stored = download_rows(url, key)
    if stored is None:
        return None
    manifest, records, matrices, bias = stored
    if manifest.get("format_version") != FORMAT_VERSION or "sentences" not in matrices:
        log.warning("the index in the database has format %s, not %s: it will be rebuilt",
                    manifest.get("format_version"), FORMAT_VERSION)
        return None
    return Index(matrices["images"], matrices["captions"], [record_from_dict(r) for r in records], manifest, bias,
                 sentences=matrices["sentences"], backend=PgVectorSearch(url, key))


def open_or_build_index(folder: str | Path, encoder: Encoder, load_corpus: Callable[[], Corpus],
                        progress: Progress | None = None, backend: str = "exact") -> Index:
    """The index for this encoder and corpus, searched by `backend` (see `backends`): loaded from `folder`
    (or, for a postgresql:// backend, from the database) when it exists; otherwise built from the corpus,
    saved, and (for PostgreSQL) uploaded for the other replicas. The folder is MIRAGE's own cache, so an index
    an earlier release wrote there is rebuilt, with a line in the log."""
    folder = Path(folder)
    kind = backend_kind(backend)
    if kind == "postgresql" and (shared := download_index(backend, folder.name)) is not None:
        shared.check_encoder(encoder)
        return shared
    index = None
    if index_exists(folder):
        try:
            index = load_index(folder, encoder)
        except IndexFormatError as error:
            log.warning("%s; rebuilding it now", error)
    if index is None:
        check_writable(folder.parent, "the index folder")
        index = build_index(load_corpus(), encoder, progress=progress)
        save_index(index, folder)
    if kind == "faiss":
        return index.using(faiss_for(index, folder, progress))
    if kind == "postgresql":
        upload_index(index, backend, folder.name, progress)
        return index.using(PgVectorSearch(backend, folder.name))
    return index


def open_configured_index(settings, encoder: Encoder, progress: Progress | None = None) -> Index:
    """The index the settings name: the corpus bundle's when `bundle_url` is set (installed on first use),
    else the corpus' own index through the configured backend (built on first use)."""
    if settings.bundle_url:
        from .bundle import install_bundle, load_bundle_index

        folder = install_bundle(settings.bundle_url, settings.home, settings.bundle_sha256, progress)
        return load_bundle_index(folder, encoder)
    return open_or_build_index(settings.index_dir(encoder.fingerprint), encoder, settings.load_corpus, progress,
                               backend=settings.index)
