"""Where an index finds its nearest rows: exact scan, FAISS, or pgvector in PostgreSQL — one setting apart.

`MIRAGE_INDEX` (or `index = …` in mirage.toml) names the backend:

* `exact` (default): every row scored (`index.ExactScan`); right up to ~10⁵ rows.
* `faiss`: an inverted-file index of float16 rows (faiss `IndexIVFScalarQuantizer`, inner product) saved
  beside the index files, for 10⁵–10⁷ rows on one machine. It finds `OVERSAMPLE`× k candidates, which
  `Index.search` re-scores exactly (cosine minus hubness bias); modality and licence filters are passed to
  FAISS as an ID selector, so they stay exact.
* `postgresql://…`: the whole index — records, both embedding matrices, biases — lives in PostgreSQL with
  pgvector HNSW indexes, so every app replica and the CLI share one corpus and a replica needs no local
  index files. Filters are SQL conditions; the HNSW scan is iterative, so a filter never starves the top k.

Each backend answers `candidates(vector, target, k, allowed) -> (rows, cosines or None)`; every backend
returns the same hits for the same query, up to its recall (measured by `mirage bench search --backend`).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .errors import MirageError

OVERSAMPLE = 4
MIN_CANDIDATES = 64
FAISS_FILES = {"images": "faiss-images.index", "captions": "faiss-captions.index"}
Progress = Callable[[int, int], None]


def backend_kind(spec: str) -> str:
    """'exact', 'faiss' or 'postgresql' for a MIRAGE_INDEX value; anything else is a clear error."""
    spec = (spec or "exact").strip()
    if spec in ("exact", "faiss"):
        return spec
    if spec.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        return "postgresql"
    raise MirageError(f"MIRAGE_INDEX must be 'exact', 'faiss' or a postgresql:// URL, not '{spec}'")


# -- FAISS ---------------------------------------------------------------------------------------------------


class FaissSearch:
    """Approximate candidates from a FAISS IVF index per target (images, captions)."""

    name = "faiss"

    def __init__(self, indexes: dict, nprobe: int | None = None):
        self.indexes = indexes
        for ivf in indexes.values():
            ivf.nprobe = nprobe or default_nprobe(ivf.nlist)

    @classmethod
    def build(cls, index, progress: Progress | None = None, nlist: int | None = None,
              targets: tuple[str, ...] = ("images", "captions")) -> FaissSearch:
        """Train and fill one IVF index per target from the index's matrices (k-means on a sample)."""
        import faiss

        n, dim = len(index), index.dim
        nlist = nlist or default_nlist(n)
        built = {}
        total, done = len(targets) * n, 0
        for target in targets:
            matrix = index.images if target == "images" else index.captions
            quantizer = faiss.IndexFlatIP(dim)
            ivf = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_fp16,
                                                faiss.METRIC_INNER_PRODUCT)
            ivf.cp.niter = 10  # k-means iterations: 10 place the lists as well as FAISS's 25 for search
            sample = np.random.default_rng(0).choice(n, size=min(n, 64 * nlist), replace=False)
            ivf.train(np.ascontiguousarray(matrix[np.sort(sample)], dtype=np.float32))
            for start in range(0, n, 65536):
                ivf.add(np.ascontiguousarray(matrix[start : start + 65536], dtype=np.float32))
                done += min(65536, n - start)
                if progress:
                    progress(done, total)
            built[target] = ivf
        return cls(built)

    def save(self, folder: Path) -> None:
        """Each target's file swapped in whole: a reader never sees half of one."""
        import faiss

        from .files import atomic_path

        for target, ivf in self.indexes.items():
            with atomic_path(Path(folder) / FAISS_FILES[target]) as temporary:
                faiss.write_index(ivf, str(temporary))

    @classmethod
    def load(cls, folder: Path) -> FaissSearch | None:
        import faiss

        paths = {target: Path(folder) / name for target, name in FAISS_FILES.items()}
        if not all(path.exists() for path in paths.values()):
            return None
        try:
            return cls({target: faiss.read_index(str(path)) for target, path in paths.items()})
        except RuntimeError as error:
            raise MirageError(f"the FAISS index in {folder} is damaged ({str(error).splitlines()[0]}): "
                              "rebuild it with `mirage build-index`") from None

    def candidates(self, vector: np.ndarray, target: str, k: int, allowed: np.ndarray | None
                   ) -> tuple[np.ndarray, None]:
        import faiss

        ivf = self.indexes[target]
        wanted = max(OVERSAMPLE * k, MIN_CANDIDATES)
        selector = bits = None
        if allowed is not None:
            bits = np.packbits(allowed, bitorder="little")  # must outlive the search: FAISS keeps a pointer
            selector = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
        params = faiss.SearchParametersIVF(nprobe=ivf.nprobe, sel=selector)
        _, rows = ivf.search(np.ascontiguousarray(vector[None], dtype=np.float32), wanted, params=params)
        rows = rows[0]
        return rows[rows >= 0], None


def default_nlist(n: int) -> int:
    """About 4·√n inverted lists (FAISS's guidance), at least 1 and at most n / 39 so each trains on 39+ rows."""
    return max(1, min(int(4 * math.sqrt(n)), n // 39 or 1))


def default_nprobe(nlist: int) -> int:
    """Lists visited per query, 3·√nlist (4.7 % of the rows at 10⁶): recall@10 ≥ 0.95 in `mirage bench search
    --backend faiss` and the tests; set `FaissSearch(nprobe=…)` to trade recall for speed."""
    return max(1, min(nlist, math.ceil(3 * math.sqrt(nlist))))


def attach_faiss(index, folder: Path, progress: Progress | None = None) -> None:
    """Use the FAISS index saved in `folder`, building and saving it first when it is not there."""
    search = FaissSearch.load(folder)
    if search is None:
        search = FaissSearch.build(index, progress)
        search.save(folder)
    index.backend = search


# -- pgvector ------------------------------------------------------------------------------------------------


def _connect(url: str):
    import psycopg
    from pgvector.psycopg import register_vector

    url = url.replace("postgresql+psycopg://", "postgresql://", 1)
    try:
        connection = psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as error:
        raise MirageError(f"cannot reach the index database: {str(error).strip().splitlines()[0]}") from None
    connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(connection)
    return connection


def table_name(key: str) -> str:
    """A safe SQL identifier for one index (encoder fingerprint + corpus): letters, digits, underscores."""
    return "mirage_rows_" + hashlib.sha1(key.encode()).hexdigest()[:16]


class PgVectorSearch:
    """Candidates (and their exact cosines) from PostgreSQL: HNSW on each target, filters in SQL."""

    name = "pgvector"

    def __init__(self, url: str, key: str, ef_search: int = 100):
        self.url, self.table, self.ef_search = url, table_name(key), ef_search
        self._connection = None
        self._lock = threading.Lock()  # one psycopg connection is not for two threads at once

    def _run(self, sql: str, params: tuple):
        import psycopg

        with self._lock:
            for attempt in (1, 2):  # a server restart leaves a dead connection: reconnect once
                try:
                    if self._connection is None or self._connection.closed:
                        self._connection = _connect(self.url)
                    with self._connection.transaction():
                        self._connection.execute(f"SET LOCAL hnsw.ef_search = {int(self.ef_search)}")
                        self._connection.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                        return self._connection.execute(sql, params).fetchall()
                except psycopg.OperationalError as error:
                    self._connection = None
                    if attempt == 2:
                        raise MirageError(f"the index database is unavailable ({str(error).strip()}): try again "
                                          "in a moment") from None

    def candidates(self, vector: np.ndarray, target: str, k: int, allowed: np.ndarray | None
                   ) -> tuple[np.ndarray, np.ndarray]:
        column = "image" if target == "images" else "caption"
        wanted = max(OVERSAMPLE * k, MIN_CANDIDATES)
        where, params = "", [vector]
        if allowed is not None:
            where = "WHERE row = ANY(%s)"
            params.append(np.flatnonzero(allowed).astype(np.int32).tolist())
        rows = self._run(
            f"SELECT row, -({column} <#> %s) AS cosine FROM {self.table} {where} "
            f"ORDER BY {column} <#> %s LIMIT {int(wanted)}", (*params, vector))
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        found = np.array(rows, dtype=np.float64)
        return found[:, 0].astype(np.int64), found[:, 1].astype(np.float32)


def upload_index(index, url: str, key: str, progress: Progress | None = None,
                 targets: tuple[str, ...] = ("image", "caption")) -> None:
    """Write an index (records, matrices, biases, manifest) to PostgreSQL under `key`, then build its HNSW
    indexes; the corpus row is written last, so a half-finished upload is never taken for a whole one."""
    table = table_name(key)
    connection = _connect(url)
    try:
        with connection.transaction():
            connection.execute("CREATE TABLE IF NOT EXISTS mirage_corpora (key TEXT PRIMARY KEY, tab TEXT NOT NULL, "
                               "manifest TEXT NOT NULL)")
            connection.execute(f"DROP TABLE IF EXISTS {table}")
            connection.execute(f"CREATE TABLE {table} (row INTEGER PRIMARY KEY, record TEXT NOT NULL, "
                               f"image vector({index.dim}) NOT NULL, caption vector({index.dim}) NOT NULL, "
                               "image_bias REAL NOT NULL, caption_bias REAL NOT NULL)")
            with connection.cursor().copy(f"COPY {table} (row, record, image, caption, image_bias, caption_bias) "
                                          "FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "text", "vector", "vector", "float4", "float4"])
                for row, record in enumerate(index.records):
                    copy.write_row([row, json.dumps(record.to_dict(), ensure_ascii=False), index.images[row],
                                    index.captions[row], float(index.image_bias[row]),
                                    float(index.caption_bias[row])])
                    if progress and row % 1000 == 0:
                        progress(row, len(index))
            connection.execute("SET LOCAL maintenance_work_mem = '512MB'")  # the graph is built in memory
            for column in targets:
                connection.execute(f"CREATE INDEX ON {table} USING hnsw ({column} vector_ip_ops)")
            connection.execute("INSERT INTO mirage_corpora VALUES (%s, %s, %s) ON CONFLICT (key) DO UPDATE "
                               "SET tab = EXCLUDED.tab, manifest = EXCLUDED.manifest",
                               (key, table, json.dumps(index.manifest)))
    finally:
        connection.close()
    if progress:
        progress(len(index), len(index))


def download_index(url: str, key: str):
    """The index stored under `key`, with its search done in PostgreSQL; None when there is none."""
    from .index import Index, record_from_dict

    connection = _connect(url)
    try:
        exists = connection.execute("SELECT to_regclass('mirage_corpora')").fetchone()[0]
        found = connection.execute("SELECT tab, manifest FROM mirage_corpora WHERE key = %s", (key,)).fetchone() \
            if exists else None
        if found is None:
            return None
        rows = connection.execute(f"SELECT record, image, caption, image_bias, caption_bias FROM {found[0]} "
                                  "ORDER BY row").fetchall()
    finally:
        connection.close()
    records = [record_from_dict(json.loads(row[0])) for row in rows]
    images = np.stack([_array(row[1]) for row in rows])
    captions = np.stack([_array(row[2]) for row in rows])
    bias = np.array([[row[3] for row in rows], [row[4] for row in rows]], dtype=np.float32)
    index = Index(images, captions, records, json.loads(found[1]), bias)
    index.backend = PgVectorSearch(url, key)
    return index


def _array(value) -> np.ndarray:
    """A pgvector value as float32 (pgvector-python hands back numpy arrays or its own `Vector`)."""
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)
