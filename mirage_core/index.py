"""The embedding index: an artifact on disk that the CLI builds and the app only loads.

An index folder holds `images.npy` and `captions.npy` (float32 [N, D], L2-normalised rows: each record's
image and caption embeddings), `bias.npy` (float32 [2, N], hubness corrections, see `hubness`),
`records.jsonl` (one `Record` a line) and `manifest.json` (encoder name and
fingerprint, dimension, count, corpus, date, what was skipped). It is written to a temporary folder and
renamed into place, so a crash never leaves half an index. Loading checks the manifest against the encoder
that will query it. Search is exact, in two passes: a scan of an int8 copy of the matrix (a quarter of the
memory traffic of float32, which is what a matrix–vector product over a large index waits on) finds every
row that could be in the top k, then those few rows are scored again in float32 and ranked (see `Index.search`).

Hubness: in a small joint space a few images sit close to every caption and crowd every result list. Each
row therefore carries a bias, its mean similarity to its `HUB_K` nearest neighbours in the encoder's
reference bank of the other modality (the training set's embeddings), and ranking subtracts it. This is
CSLS (Lample et al., 2018) with the query's own term dropped, as it does not change a query's ranking.
Reported scores stay plain cosines.
"""

from __future__ import annotations

import functools
import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .concepts import concept_names
from .corpus import Corpus, Record
from .encoders.base import Encoder
from .errors import ImageError, IndexMismatchError, MirageError, QueryError
from .files import atomic_folder, check_writable, recover_folder
from .images import open_image
from .runtime import cpu_session, external_initializer

FORMAT_VERSION = 2
HUB_K = 20
CAPTION_CHUNK = 512
SEARCH_METHOD = "int8 scan with an exact error bound, float32 ranking of the rows that can reach the top k"
Progress = Callable[[int, int], None]
WORD = re.compile(r"[a-z][a-z-]{2,}")


@dataclass(frozen=True)
class Hit:
    record: Record
    score: float  # the cosine similarity
    row: int
    ranking: float = 0.0  # what results are ranked by and show: the cosine corrected for the row's hubness
    finding_bonus: float = 0.0  # the part of `ranking` that the finding channel added (see `findings`)


class Index:
    """Image and caption embeddings of a corpus plus its records; read-only once built."""

    def __init__(
        self, images: np.ndarray, captions: np.ndarray, records: Sequence[Record], manifest: dict,
        bias: np.ndarray | None = None,
    ):
        bias = np.zeros((2, len(images)), dtype=np.float32) if bias is None else bias
        if (images.ndim != 2 or images.shape != captions.shape or len(images) != len(records)
                or bias.shape != (2, len(images))):
            raise MirageError("index parts disagree in size: rebuild it with `mirage build-index`")
        if not (np.isfinite(images).all() and np.isfinite(captions).all() and np.isfinite(bias).all()):
            raise MirageError("the index holds values that are not finite (NaN or ∞): rebuild it with "
                              "`mirage build-index`")
        if len({r.id for r in records}) != len(records):
            raise MirageError("the index holds the same record id twice: rebuild it with `mirage build-index`")
        self.images = _read_only(images)
        self.captions = _read_only(captions)
        self.bias = _read_only(bias)
        self.image_bias, self.caption_bias = self.bias
        self.records = list(records)
        self.manifest = manifest
        self.modalities = np.array([r.modality for r in self.records])
        self.licences = np.array([r.licence for r in self.records])
        self._rows = {r.id: i for i, r in enumerate(self.records)}
        self.backend = ExactScan(self)  # where candidate rows are found; see `backends` for FAISS and pgvector
        # The ranking subtracts each row's bias less the typical one: the same order as subtracting the bias,
        # on the scale of a cosine (so a shown score reads like a similarity, not a negative number)
        self.typical_bias = {"images": float(np.median(self.image_bias)) if len(self) else 0.0,
                             "captions": float(np.median(self.caption_bias)) if len(self) else 0.0}

    def __len__(self) -> int:
        return len(self.records)

    @property
    def dim(self) -> int:
        return int(self.images.shape[1])

    def __contains__(self, record_id: str) -> bool:
        return record_id in self._rows

    @functools.cached_property
    def postings(self) -> dict[str, np.ndarray]:
        """Each word (3+ letters) of the captions and keywords → the rows whose caption or keywords hold it."""
        rows: dict[str, list[int]] = {}
        for row, record in enumerate(self.records):
            for word in set(WORD.findall(record.caption.lower())) | {k.lower() for k in record.keywords}:
                rows.setdefault(word, []).append(row)
        return {word: np.array(found, dtype=np.int32) for word, found in rows.items()}

    @functools.cached_property
    def vocabulary(self) -> list[str]:
        """The words of `postings`, sorted (for prefix lookups)."""
        return sorted(self.postings)

    @functools.cached_property
    def word_counts(self) -> Counter:
        """In how many records each word (3+ letters) of the captions and keywords occurs."""
        return Counter({word: len(rows) for word, rows in self.postings.items()})

    @functools.cached_property
    def concept_names(self) -> dict[str, str]:
        """UMLS CUI → a name derived from this corpus' captions (see `mirage_core.concepts`)."""
        return concept_names(self.records)

    @functools.cached_property
    def caption_words(self) -> frozenset[str]:
        """Every word (3+ letters) of the captions and every keyword: what this corpus talks about."""
        return frozenset(self.word_counts)

    def row_of(self, record_id: str) -> int:
        if record_id not in self._rows:
            raise MirageError(f"no record {record_id} in this index")
        return self._rows[record_id]

    def mask(self, modalities: Sequence[str] | None = None, licences: Sequence[str] | None = None,
             exclude: Sequence[int] = ()) -> np.ndarray | None:
        """Rows allowed by the filters and not excluded, or None when nothing is filtered."""
        if not modalities and not licences and not len(exclude):
            return None
        allowed = np.ones(len(self), dtype=bool)
        if modalities:
            allowed &= np.isin(self.modalities, list(modalities))
        if licences:
            allowed &= np.isin(self.licences, list(licences))
        allowed[list(exclude)] = False
        return allowed

    def search(
        self, vector: np.ndarray, k: int = 10, target: str = "images", modalities: Sequence[str] | None = None,
        licences: Sequence[str] | None = None, exclude: Sequence[int] = (),
    ) -> list[Hit]:
        """The k records whose image (or caption, with target='captions') is nearest to `vector`, ranked by
        cosine minus the row's hubness bias; filters are exact whatever the backend."""
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.dim:
            raise IndexMismatchError(f"query has {vector.shape[0]} dimensions, the index {self.dim}")
        if not np.isfinite(vector).all():
            raise QueryError("the query vector has infinite or undefined entries")
        allowed = self.mask(modalities, licences, exclude)
        k = min(k, len(self) if allowed is None else int(allowed.sum()))
        if k <= 0:
            return []
        rows, cosines = self.backend.candidates(vector, target, k, allowed)
        cosines, ranking = self.rank(vector, rows, target, cosines)  # a backend may have found rows only
        best = top_k(ranking, k)
        return [Hit(self.records[rows[j]], float(cosines[j]), int(rows[j]), float(ranking[j])) for j in best]

    def rank(self, vector: np.ndarray, rows: np.ndarray, target: str = "images",
             cosines: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Cosines of these rows to the vector (computed exactly unless given), and their ranking scores: the
        cosine less the row's hubness bias, what `search` ranks by."""
        if cosines is None:
            cosines = (self.images if target == "images" else self.captions)[rows] @ np.asarray(vector, np.float32)
        bias = self.image_bias if target == "images" else self.caption_bias
        return cosines, cosines - (bias[rows] - self.typical_bias[target])

    def check_encoder(self, encoder: Encoder) -> None:
        built_with = self.manifest.get("fingerprint")
        if built_with != encoder.fingerprint:
            raise IndexMismatchError(
                f"this index was built by encoder '{self.manifest.get('encoder')}' ({built_with}), not by "
                f"'{encoder.name}' ({encoder.fingerprint}): rebuild it with `mirage build-index`"
            )


class ExactScan:
    """Every row is scored: an int8 scan (`Int8Scan`) keeps every row that could reach the top k; `Index.search`
    then scores those few exactly in float32."""

    name = "exact"

    def __init__(self, index: Index):
        self.index = index

    @functools.cached_property
    def scans(self) -> dict[str, Int8Scan]:  # made on first use: an index searched elsewhere never pays
        return {"images": Int8Scan(self.index.images, self.index.image_bias),
                "captions": Int8Scan(self.index.captions, self.index.caption_bias)}

    def candidates(self, vector: np.ndarray, target: str, k: int, allowed: np.ndarray | None
                   ) -> tuple[np.ndarray, None]:
        return self.scans[target].candidates(vector, k, allowed), None


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


def hubness(vectors: np.ndarray, bank: np.ndarray | None, k: int = HUB_K) -> np.ndarray:
    """Mean cosine of each vector to its k nearest bank rows (zeros without a bank)."""
    if bank is None or not len(bank):
        return np.zeros(len(vectors), dtype=np.float32)
    k = min(k, len(bank))
    result = np.empty(len(vectors), dtype=np.float32)
    for start in range(0, len(vectors), 4096):  # bounded memory for large corpora
        scores = vectors[start : start + 4096] @ bank.T
        result[start : start + 4096] = np.partition(scores, len(bank) - k, axis=1)[:, -k:].mean(1)
    return result


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=np.float32)
    array.setflags(write=False)
    return array


class _ImageDataset(Dataset):
    def __init__(self, records: Sequence[Record], encoder: Encoder):
        self.records, self.encoder = records, encoder

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        try:
            return i, self.encoder.preprocess(open_image(self.records[i].image_path)), None
        except ImageError as error:
            return i, None, str(error)


def _collate(items):
    return items


def build_index(
    corpus: Corpus, encoder: Encoder, batch_size: int = 16, workers: int | None = None,
    progress: Progress | None = None,
) -> Index:
    """Embed every record's image and caption; images that fail to decode are skipped and counted.

    Images decode in a loader worker when there are cores to spare; on two cores a worker only competes
    with the encoder's own threads, so decoding stays in this process. Batches of 16 images: the backbone's
    activations for 32 lifted a first start's peak memory past Community Cloud's budget (2,014–2,251 MiB
    against 1,868 in `mirage bench tour`), for a few per cent of speed."""
    if workers is None:
        workers = 1 if (os.cpu_count() or 1) > 2 else 0
    if not corpus.records:
        raise MirageError(f"the corpus {corpus.name} has no usable records ({dict(corpus.skipped) or 'empty'})")
    skipped = Counter(corpus.skipped)
    loader = DataLoader(
        _ImageDataset(corpus.records, encoder), batch_size=batch_size, num_workers=workers, collate_fn=_collate,
    )
    kept, image_rows, total = [], [], 2 * len(corpus.records)
    for batch in loader:
        good = [(i, pixels) for i, pixels, problem in batch if pixels is not None]
        skipped["unreadable image"] += len(batch) - len(good)
        if good:
            kept += [corpus.records[i] for i, _ in good]
            image_rows.append(encoder.encode_pixels(torch.stack([p for _, p in good])))
        if progress:
            progress(len(kept) + skipped["unreadable image"], total)
    if not kept:
        raise MirageError(f"none of the {len(corpus.records)} images of {corpus.name} could be read")
    caption_rows = []  # captions in large chunks: encode_text sorts by length, so less padding
    for start in range(0, len(kept), CAPTION_CHUNK):
        caption_rows.append(encoder.encode_text([r.caption for r in kept[start : start + CAPTION_CHUNK]]))
        if progress:
            progress(total - len(kept) + min(start + CAPTION_CHUNK, len(kept)), total)
    manifest = {
        "format_version": FORMAT_VERSION,
        "encoder": encoder.name,
        "fingerprint": encoder.fingerprint,
        "dim": encoder.dim,
        "count": len(kept),
        "corpus": corpus.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "skipped": {k: v for k, v in skipped.items() if v},
    }
    images, captions = np.concatenate(image_rows), np.concatenate(caption_rows)
    bank = getattr(encoder, "reference_bank", None)
    bias = np.stack([
        hubness(images, bank["captions"] if bank else None), hubness(captions, bank["images"] if bank else None)
    ])
    manifest["hubness_bank"] = len(bank["captions"]) if bank else 0
    return Index(images, captions, kept, manifest, bias)


def save_index(index: Index, folder: str | Path) -> Path:
    """Write atomically: a temporary sibling folder, then a rename over the old one."""
    folder = Path(folder)
    with atomic_folder(folder) as staging:
        np.save(staging / "images.npy", index.images)
        np.save(staging / "captions.npy", index.captions)
        np.save(staging / "bias.npy", index.bias)
        with open(staging / "records.jsonl", "w", encoding="utf-8") as handle:
            for record in index.records:
                handle.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
        (staging / "manifest.json").write_text(json.dumps(index.manifest, indent=2))
    return folder


def load_index(folder: str | Path, encoder: Encoder | None = None) -> Index:
    """Load an index folder; with `encoder`, refuse one built by another model."""
    folder = Path(folder)
    manifest_file = folder / "manifest.json"
    if not manifest_file.exists():
        raise MirageError(f"no index at {folder}: build one with `mirage build-index`")
    manifest = _read_manifest(manifest_file)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise MirageError(f"the index at {folder} has format {manifest.get('format_version')}: rebuild it")
    parts = {}
    try:
        for name in ("images", "captions", "bias"):
            part = folder / f"{name}.npy"
            parts[name] = np.load(part, allow_pickle=False)
        part = folder / "records.jsonl"
        with open(part, encoding="utf-8") as handle:
            records = [record_from_dict(json.loads(line)) for line in handle if line.strip()]
    except (OSError, ValueError, TypeError, KeyError, EOFError, AttributeError) as error:
        raise MirageError(f"the index at {folder} is damaged ({part.name}: {error or type(error).__name__}): "
                          "rebuild it with `mirage build-index`") from None
    images, captions, bias = parts["images"], parts["captions"], parts["bias"]
    index = Index(images, captions, records, manifest, bias)
    if encoder is not None:
        index.check_encoder(encoder)
    return index


def record_from_dict(data: dict) -> Record:
    """A stored record; one saved before regions existed gets its labels derived afresh."""
    if not isinstance(data, dict):
        raise ValueError(f"a line holds a {type(data).__name__}, not a record")
    record = Record.from_dict(data)
    return record if "region" in data else record.labelled()


def _read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise MirageError(f"the index manifest {path} is damaged ({error}): rebuild the index") from None
    if not isinstance(manifest, dict):
        raise MirageError(f"the index manifest {path} is damaged: rebuild the index")
    return manifest


def index_exists(folder: str | Path) -> bool:
    """Whether a complete index is at `folder`, after finishing any swap a killed rebuild left half done."""
    return recover_folder(folder, complete_marker="manifest.json") and (Path(folder) / "manifest.json").exists()


def open_or_build_index(folder: str | Path, encoder: Encoder, load_corpus: Callable[[], Corpus],
                        progress: Progress | None = None, backend: str = "exact") -> Index:
    """The index for this encoder and corpus, searched by `backend` (see `backends`): loaded from `folder`
    (or, for a postgresql:// backend, from the database) when it exists; otherwise built from the corpus,
    saved, and (for PostgreSQL) uploaded for the other replicas."""
    from .backends import attach_faiss, backend_kind, download_index, upload_index

    folder = Path(folder)
    kind = backend_kind(backend)
    if kind == "postgresql" and (shared := download_index(backend, folder.name)) is not None:
        shared.check_encoder(encoder)
        return shared
    if index_exists(folder):
        index = load_index(folder, encoder)
    else:
        check_writable(folder.parent, "the index folder")
        index = build_index(load_corpus(), encoder, progress=progress)
        save_index(index, folder)
    if kind == "faiss":
        attach_faiss(index, folder, progress)
    elif kind == "postgresql":
        from .backends import PgVectorSearch

        upload_index(index, backend, folder.name, progress)
        index.backend = PgVectorSearch(backend, folder.name)
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
