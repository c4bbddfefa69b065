"""The embedding index: an artifact on disk that the CLI builds and the app only loads.

An index folder holds `images.npy` and `captions.npy` (float32 [N, D], L2-normalised rows: each record's
image and caption embeddings in the joint space), `sentences.npy` (float32 [N, S]: each caption's meaning
vector from the encoder's sentence model, which the hybrid text search compares with the query's — see
`search`), `bias.npy` (float32 [2, N], hubness corrections, see `hubness`), `records.jsonl` (one `Record` a
line) and `manifest.json` (encoder name and fingerprint, dimensions, count, corpus, date, what was skipped).
It is written to a temporary folder and renamed into place, so a crash never leaves half an index. Loading
checks the format and the manifest against the encoder that will query it. Where candidate rows come from is
the index's `backend` (`backends`: an exact int8 scan by default, FAISS or pgvector); `Index.search` ranks
them exactly in float32 whatever found them.

Hubness: in a small joint space a few images sit close to every caption and crowd every result list. Each
row therefore carries a bias, its mean similarity to its `HUB_K` nearest neighbours in the encoder's
reference bank of the other modality (the training set's embeddings), and ranking subtracts it. This is
CSLS (Lample et al., 2018) with the query's own term dropped, as it does not change a query's ranking.
Reported scores stay plain cosines.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .backends import Backend, ExactScan, top_k
from .concepts import concept_names
from .corpus import Corpus, Record
from .encoders.base import Encoder, hubness
from .errors import ImageError, IndexMismatchError, MirageError, QueryError
from .files import atomic_folder, recover_folder
from .images import open_image
from .text import words

FORMAT_VERSION = 3  # 3: the captions' meaning vectors (sentences.npy) for hybrid text search
CAPTION_CHUNK = 512
SEARCH_METHOD = "int8 scan with an exact error bound, float32 ranking of the rows that can reach the top k"
Progress = Callable[[int, int], None]


class IndexFormatError(MirageError):
    """An index written by another release of MIRAGE, in a layout this one does not read."""


@dataclass(frozen=True)
class Hit:
    record: Record
    score: float  # the cosine similarity in the joint space
    row: int
    ranking: float = 0.0  # the cosine corrected for the row's hubness: what dense search ranks by
    match: float | None = None  # hybrid text search: 0–100, how high the channels together placed it
    channels: tuple[str, ...] = ()  # hybrid text search: the channels that found it ("image", "meaning", "words")
    matched: tuple[str, ...] = ()  # hybrid text search: the caption's words that match the query's
    meaning: float | None = None  # hybrid text search: cosine of the query's and the caption's meaning vectors
    query_best: float | None = None  # hybrid text search: the best `ranking` any row reached for this query (the
    # joint space's top match, which the relevance test judges, whether or not the fusion shows that row)


class Index:
    """Image and caption embeddings of a corpus plus its records; read-only once built."""

    def __init__(
        self, images: np.ndarray, captions: np.ndarray, records: Sequence[Record], manifest: dict,
        bias: np.ndarray | None = None, sentences: np.ndarray | None = None, backend: Backend | None = None,
    ):
        bias = np.zeros((2, len(images)), dtype=np.float32) if bias is None else bias
        if (images.ndim != 2 or images.shape != captions.shape or len(images) != len(records)
                or bias.shape != (2, len(images))
                or (sentences is not None and (sentences.ndim != 2 or len(sentences) != len(images)))):
            raise MirageError("index parts disagree in size: rebuild it with `mirage build-index`")
        parts = [images, captions, bias] + ([sentences] if sentences is not None else [])
        if not all(np.isfinite(part).all() for part in parts):
            raise MirageError("the index holds values that are not finite (NaN or ∞): rebuild it with "
                              "`mirage build-index`")
        if len({r.id for r in records}) != len(records):
            raise MirageError("the index holds the same record id twice: rebuild it with `mirage build-index`")
        self.images = _read_only(images)
        self.captions = _read_only(captions)
        self.bias = _read_only(bias)
        self.image_bias, self.caption_bias = self.bias
        self.sentences = None if sentences is None else _read_only(sentences)
        self.records = list(records)
        self.manifest = manifest
        self.modalities = np.array([r.modality for r in self.records])
        self.licences = np.array([r.licence for r in self.records])
        self._rows = {r.id: i for i, r in enumerate(self.records)}
        # where candidate rows are found: an exact scan unless the index was opened with another (`startup`)
        self.backend: Backend = backend or ExactScan({target: self.matrix(target) for target in self.targets})
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

    @property
    def targets(self) -> tuple[str, ...]:
        """What a vector can be compared with: "images", "captions" and, where stored, "sentences"."""
        return ("images", "captions") + (("sentences",) if self.sentences is not None else ())

    def matrix(self, target: str) -> tuple[np.ndarray, np.ndarray]:
        """A target's rows and the bias ranking subtracts from their cosines (none for the meaning vectors)."""
        if target == "images":
            return self.images, self.image_bias
        if target == "captions":
            return self.captions, self.caption_bias
        if target == "sentences" and self.sentences is not None:
            return self.sentences, self._no_bias
        raise MirageError(f"this index has no '{target}' to search: rebuild it with `mirage build-index`")

    @functools.cached_property
    def _no_bias(self) -> np.ndarray:
        return np.zeros(len(self), dtype=np.float32)

    def using(self, backend: Backend) -> Index:
        """The same index searched through another backend (the matrices are shared, not copied)."""
        other = copy.copy(self)
        other.backend = backend
        return other

    @functools.cached_property
    def lexical(self):
        """BM25 over the captions and keywords (`lexical.LexicalIndex`), built on first use."""
        from .lexical import LexicalIndex, document_of

        return LexicalIndex([document_of(record) for record in self.records])

    @functools.cached_property
    def concept_names(self) -> dict[str, str]:
        """UMLS CUI → a name derived from this corpus' captions (see `mirage_core.concepts`)."""
        return concept_names(self.records)

    @functools.cached_property
    def word_frequency(self) -> Counter:
        """In how many records each word (3+ letters, as written) of the captions and keywords occurs."""
        return Counter(word for record in self.records
                       for word in set(words(record.caption)) | {k.lower() for k in record.keywords})

    @functools.cached_property
    def caption_words(self) -> frozenset[str]:
        """Every word (3+ letters) of the captions and every keyword: what this corpus talks about."""
        return frozenset(self.word_frequency)

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
        """The k records whose image (or caption, with target='captions', or caption meaning, with
        target='sentences') is nearest to `vector`, ranked by cosine minus the row's hubness bias; filters are
        exact whatever the backend."""
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        width = self.matrix(target)[0].shape[1]
        if vector.shape[0] != width:
            raise IndexMismatchError(f"the query has {vector.shape[0]} dimensions and this index {width}: it was "
                                     "built by another encoder; rebuild it with `mirage build-index`")
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
        matrix, bias = self.matrix(target)
        if cosines is None:
            cosines = matrix[rows] @ np.asarray(vector, np.float32)
        return cosines, cosines - (bias[rows] - self.typical_bias.get(target, 0.0))

    def check_encoder(self, encoder: Encoder) -> None:
        built_with = self.manifest.get("fingerprint")
        if built_with != encoder.fingerprint:
            raise IndexMismatchError(
                f"this index was built by encoder '{self.manifest.get('encoder')}' ({built_with}), not by "
                f"'{encoder.name}' ({encoder.fingerprint}): rebuild it with `mirage build-index`"
            )


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
    caption_rows, sentence_rows = [], []  # captions in large chunks: sorted by length, so less padding
    for start in range(0, len(kept), CAPTION_CHUNK):
        joint, meaning = encoder.encode_captions([r.caption for r in kept[start : start + CAPTION_CHUNK]])
        caption_rows.append(joint)
        if meaning is not None:
            sentence_rows.append(meaning)
        if progress:
            progress(total - len(kept) + min(start + CAPTION_CHUNK, len(kept)), total)
    manifest = {
        "format_version": FORMAT_VERSION,
        "encoder": encoder.name,
        "fingerprint": encoder.fingerprint,
        "dim": encoder.dim,
        "sentence_model": encoder.sentence_model,
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
    return Index(images, captions, kept, manifest, bias,
                 sentences=np.concatenate(sentence_rows) if sentence_rows else None)


def save_index(index: Index, folder: str | Path) -> Path:
    """Write atomically: a temporary sibling folder, then a rename over the old one."""
    folder = Path(folder)
    with atomic_folder(folder) as staging:
        np.save(staging / "images.npy", index.images)
        np.save(staging / "captions.npy", index.captions)
        np.save(staging / "bias.npy", index.bias)
        if index.sentences is not None:
            np.save(staging / "sentences.npy", index.sentences)
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
        raise IndexFormatError(
            f"the index at {folder} was written by another release of MIRAGE (format "
            f"{manifest.get('format_version')}, this release reads {FORMAT_VERSION}; format 3 added the captions' "
            "meaning vectors that hybrid search needs): rebuild it with `mirage build-index`")
    parts = {"sentences": None}
    with_sentences = manifest.get("sentence_model") or (folder / "sentences.npy").exists()
    names = ("images", "captions", "bias") + (("sentences",) if with_sentences else ())
    try:
        for name in names:  # an index built by `build_index` names its sentence model, and then needs its vectors
            part = folder / f"{name}.npy"
            parts[name] = np.load(part, allow_pickle=False)
        part = folder / "records.jsonl"
        with open(part, encoding="utf-8") as handle:
            records = [record_from_dict(json.loads(line)) for line in handle if line.strip()]
    except (OSError, ValueError, TypeError, KeyError, EOFError, AttributeError) as error:
        raise MirageError(f"the index at {folder} is damaged ({part.name}: {error or type(error).__name__}): "
                          "rebuild it with `mirage build-index`") from None
    index = Index(parts["images"], parts["captions"], records, manifest, parts["bias"], parts["sentences"])
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


def index_stamp(folder: str | Path) -> str | None:
    """Which build is at `folder` (its manifest file's identity; a rebuild swaps in a new one), None when none is:
    how a running app notices that its index was rebuilt or replaced under it."""
    try:
        info = (Path(folder) / "manifest.json").stat()
    except OSError:
        return None
    return f"{info.st_ino}:{info.st_mtime_ns}"
