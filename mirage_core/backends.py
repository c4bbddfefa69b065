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

Each backend is a `Backend`: `candidates(vector, target, k, allowed) -> (rows, cosines or None)` for a target
("images", "captions" or "sentences", the captions' meaning vectors); every backend returns the same hits for the
same query, up to its recall (measured by `mirage bench search --backend`). This module knows nothing of `Index`:
it is handed matrices (or an object that has them), and `startup` puts an index and its backend together.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from .errors import MirageError
from .runtime import cpu_session, external_initializer

OVERSAMPLE = 4
MIN_CANDIDATES = 64
FAISS_FILES = {"images": "faiss-images.index", "captions": "faiss-captions.index",
               "sentences": "faiss-sentences.index"}
TARGETS = ("images", "captions", "sentences")
Progress = Callable[[int, int], None]


class Backend(Protocol):
    """Where candidate rows come from. `allowed` (a boolean mask, or None) must be honoured exactly; cosines may be
    None, and `Index.search` then computes them (it re-ranks candidates exactly in any case)."""

    name: str

    def candidates(self, vector: np.ndarray, target: str, k: int, allowed: np.ndarray | None
                   ) -> tuple[np.ndarray, np.ndarray | None]: ...


def backend_kind(spec: str) -> str:
    """'exact', 'faiss' or 'postgresql' for a MIRAGE_INDEX value; anything else is a clear error."""
    spec = (spec or "exact").strip()
    if spec in ("exact", "faiss"):
        return spec
    if spec.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        return "postgresql"
    raise MirageError(f"MIRAGE_INDEX must be 'exact', 'faiss' or a postgresql:// URL, not '{spec}'")


# -- exact ------------------------------------------------------------------------------------------------------


class ExactScan:
    """Every row is scored: an int8 scan (`Int8Scan`) per target keeps every row that could reach the top k;
    `Index.search` then scores those few exactly in float32."""

    name = "exact"

    def __init__(self, matrices: Mapping[str, tuple[np.ndarray, np.ndarray]]):
        self.matrices = matrices  # target → (rows, bias)
        self._scans: dict[str, Int8Scan] = {}
        self._lock = threading.Lock()

    def scan(self, target: str) -> Int8Scan:
        """The target's int8 copy, made on first use: a target never searched never pays for one."""
        with self._lock:
            if target not in self._scans:
                self._scans[target] = Int8Scan(*self.matrices[target])
            return self._scans[target]

    def candidates(self, vector: np.ndarray, target: str, k: int, allowed: np.ndarray | None
                   ) -> tuple[np.ndarray, None]:
        return self.scan(target).candidates(vector, k, allowed), None


class Int8Scan:
    """Ranking scores (cosine − bias) of every row from an int8 copy of the matrix, with a bound on their error.

    Rows are stored as round(x · S) with one scale S for the whole matrix, and a query as round(q / s) in 7 bits;
    ONNX Runtime multiplies them in integers (MLAS' u8×s8 kernel on the weights it packs once at load, with VNNI
    where the CPU has it: at 65,536 rows ~0.2 ms on two cores, against ~1 ms for FAISS' int8 scan, which widens
    every entry to float) and subtracts each row's bias in float32. The scan score of a row then differs from
    the exact one by at most ‖q‖·max‖x̂ − x‖ + ‖q̂ − q‖·max‖x̂‖ (the rows' rounding errors and norms are measured
    when the copy is made): every row whose scan score lies within twice that bound of the k-th best can be in
    the exact top k, and only those are kept."""

    # 7 bits: without VNNI, MLAS adds pairs of u8×s8 products in int16, which 8-bit queries could overflow
    QUERY_LEVELS = 63
    QUERY_ZERO = 64  # the uint8 that stands for 0

    def __init__(self, matrix: np.ndarray, bias: np.ndarray, chunk: int = 65536):
        rows, dim = matrix.shape
        peak = max((float(np.abs(matrix[i:i + chunk]).max()) for i in range(0, rows, chunk)), default=1.0)
        self.scale = 127.0 / max(peak, 1e-6)
        self.row_error = self.row_norm = 0.0
        transposed = np.empty((dim, rows), dtype=np.int8)  # the product's right-hand side, as MLAS packs it
        for start in range(0, rows, chunk):  # chunked: a memory-mapped matrix is never copied whole in float
            original = matrix[start:start + chunk]
            part = np.round(original * self.scale)
            transposed[:, start:start + chunk] = part.T
            stored = part / self.scale
            self.row_error = max(self.row_error, float(np.linalg.norm(stored - original, axis=1).max()))
            self.row_norm = max(self.row_norm, float(np.linalg.norm(stored, axis=1).max()))
        self.session = _integer_scan_session(transposed, np.asarray(bias, dtype=np.float32))

    def _quantised(self, vector: np.ndarray) -> tuple[np.ndarray, float]:
        step = max(float(np.abs(vector).max()), 1e-30) / self.QUERY_LEVELS
        return np.round(vector / step), step

    def error_bound(self, vector: np.ndarray, quantised: tuple[np.ndarray, float] | None = None) -> float:
        levels, step = quantised or self._quantised(vector)
        rounding = float(np.linalg.norm(levels * step - vector))
        return (float(np.linalg.norm(vector)) * self.row_error + rounding * self.row_norm) * 1.01 + 1e-5

    def candidates(self, vector: np.ndarray, k: int, allowed: np.ndarray | None) -> np.ndarray:
        levels, step = quantised = self._quantised(vector)
        query = (levels + self.QUERY_ZERO).astype(np.uint8)[None]
        scores = self.session.run(None, {"query": query, "step": np.array([step / self.scale], np.float32)})[0][0]
        if allowed is not None:
            scores[~allowed] = -np.inf
        kth = float(torch.topk(torch.from_numpy(scores), k, sorted=False).values.min())
        return np.flatnonzero(scores >= kth - 2 * self.error_bound(vector, quantised))


def _integer_scan_session(transposed: np.ndarray, bias: np.ndarray):
    """An ONNX Runtime session computing float(query_u8 − 64) · rows_s8 · step − bias for one query."""
    from onnx import TensorProto, helper, numpy_helper

    dim, rows = transposed.shape
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["query", "rows", "zero"], ["dots"]),
         helper.make_node("Cast", ["dots"], ["float_dots"], to=TensorProto.FLOAT),
         helper.make_node("Mul", ["float_dots", "step"], ["cosines"]),
         helper.make_node("Sub", ["cosines", "bias"], ["scores"])],
        "int8_scan",
        [helper.make_tensor_value_info("query", TensorProto.UINT8, [1, dim]),
         helper.make_tensor_value_info("step", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, rows])],
        initializer=[external_initializer("rows", transposed),
                     numpy_helper.from_array(np.array(Int8Scan.QUERY_ZERO, np.uint8), "zero"),
                     numpy_helper.from_array(bias, "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return cpu_session(model.SerializeToString(), external={"rows": transposed})


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first; equal scores among them in index order.

    torch.topk selects without copying the scores (5× faster than `np.argpartition(-scores)` at 65k rows);
    only the k winners are then sorted, stably by index, so results are deterministic."""
    k = max(0, min(k, len(scores)))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    candidates = np.sort(torch.topk(torch.from_numpy(np.ascontiguousarray(scores)), k, sorted=False).indices.numpy())
    return candidates[np.argsort(-scores[candidates], kind="stable")]


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
              targets: tuple[str, ...] | None = None) -> FaissSearch:
        """Train and fill one IVF index per target (default: every target the index has) from the index's
        matrices (k-means on a sample)."""
        import faiss

        n = len(index)
        nlist = nlist or default_nlist(n)
        targets = targets or index.targets
        built = {}
        total, done = len(targets) * n, 0
        for target in targets:
            matrix = index.matrix(target)[0]
            dim = matrix.shape[1]
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
    def load(cls, folder: Path, targets: tuple[str, ...] = TARGETS) -> FaissSearch | None:
        import faiss

        paths = {target: Path(folder) / FAISS_FILES[target] for target in targets}
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


def faiss_for(index, folder: Path, progress: Progress | None = None) -> FaissSearch:
    """The FAISS index saved in `folder` for every target of `index`, built and saved first when it is not
    there (or lacks a target, as one from before the captions' meaning vectors does)."""
    search = FaissSearch.load(folder, index.targets)
    if search is None:
        search = FaissSearch.build(index, progress)
        search.save(folder)
    return search


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


COLUMNS = {"images": "image", "captions": "caption", "sentences": "sentence"}


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
        column = COLUMNS[target]
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
                 targets: tuple[str, ...] | None = None) -> None:
    """Write an index (records, matrices, biases, manifest) to PostgreSQL under `key`, then build an HNSW index
    on each target's column (default: every target); the corpus row is written last, so a half-finished upload
    is never taken for a whole one."""
    table = table_name(key)
    columns = [COLUMNS[t] for t in index.targets]
    matrices = [index.matrix(t)[0] for t in index.targets]
    connection = _connect(url)
    try:
        with connection.transaction():
            connection.execute("CREATE TABLE IF NOT EXISTS mirage_corpora (key TEXT PRIMARY KEY, tab TEXT NOT NULL, "
                               "manifest TEXT NOT NULL)")
            connection.execute(f"DROP TABLE IF EXISTS {table}")
            vectors = ", ".join(f"{c} vector({m.shape[1]}) NOT NULL" for c, m in zip(columns, matrices))
            connection.execute(f"CREATE TABLE {table} (row INTEGER PRIMARY KEY, record TEXT NOT NULL, {vectors}, "
                               "image_bias REAL NOT NULL, caption_bias REAL NOT NULL)")
            with connection.cursor().copy(f"COPY {table} (row, record, {', '.join(columns)}, image_bias, "
                                          "caption_bias) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "text", *["vector"] * len(columns), "float4", "float4"])
                for row, record in enumerate(index.records):
                    copy.write_row([row, json.dumps(record.to_dict(), ensure_ascii=False),
                                    *(m[row] for m in matrices), float(index.image_bias[row]),
                                    float(index.caption_bias[row])])
                    if progress and row % 1000 == 0:
                        progress(row, len(index))
            connection.execute("SET LOCAL maintenance_work_mem = '512MB'")  # the graph is built in memory
            for target in targets or index.targets:
                connection.execute(f"CREATE INDEX ON {table} USING hnsw ({COLUMNS[target]} vector_ip_ops)")
            connection.execute("INSERT INTO mirage_corpora VALUES (%s, %s, %s) ON CONFLICT (key) DO UPDATE "
                               "SET tab = EXCLUDED.tab, manifest = EXCLUDED.manifest",
                               (key, table, json.dumps(index.manifest)))
    finally:
        connection.close()
    if progress:
        progress(len(index), len(index))


def download_rows(url: str, key: str) -> tuple[dict, list[dict], dict[str, np.ndarray], np.ndarray] | None:
    """What `upload_index` stored under `key`: (manifest, record dicts, target → matrix, bias [2, n]); None when
    nothing is stored there."""
    connection = _connect(url)
    try:
        exists = connection.execute("SELECT to_regclass('mirage_corpora')").fetchone()[0]
        found = connection.execute("SELECT tab, manifest FROM mirage_corpora WHERE key = %s", (key,)).fetchone() \
            if exists else None
        if found is None:
            return None
        table, manifest = found[0], json.loads(found[1])
        present = {name for (name,) in connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,)).fetchall()}
        targets = [t for t in TARGETS if COLUMNS[t] in present]
        rows = connection.execute(f"SELECT record, {', '.join(COLUMNS[t] for t in targets)}, image_bias, "
                                  f"caption_bias FROM {table} ORDER BY row").fetchall()
    finally:
        connection.close()
    records = [json.loads(row[0]) for row in rows]
    matrices = {t: np.stack([_array(row[1 + i]) for row in rows]) if rows else np.zeros((0, 1), np.float32)
                for i, t in enumerate(targets)}
    bias = np.array([[row[-2] for row in rows], [row[-1] for row in rows]], dtype=np.float32).reshape(2, -1)
    return manifest, records, matrices, bias


def _array(value) -> np.ndarray:
    """A pgvector value as float32 (pgvector-python hands back numpy arrays or its own `Vector`)."""
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)
