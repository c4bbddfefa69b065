"""Settings in one place: which encoder, corpus, language model and generator; where data lives.

Defaults work offline on this repository's machines (the lite encoder and the ROCO demo corpus beside the
repository). A deployer overrides them with environment variables (`MIRAGE_ENCODER`, `MIRAGE_CORPUS`,
`MIRAGE_SPLIT`, `MIRAGE_LICENCES`, `MIRAGE_HOME`, `MIRAGE_DEVICE`, `MIRAGE_QUIZ_DB`,
`MIRAGE_DATABASE_URL`, `MIRAGE_INDEX`, `MIRAGE_BUNDLE_URL`, `MIRAGE_BUNDLE_SHA256`, `MIRAGE_LLM`, `MIRAGE_LLM_BASE_URL`,
`MIRAGE_GENERATOR`) or a `mirage.toml` at the repository root with the
same keys in lower case (`encoder = "open_clip:hf-hub:…"`); environment variables win.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# Run from a source checkout (the app, `make test`) rather than from an installed wheel
SOURCE_CHECKOUT = (REPO_ROOT / "streamlit_app.py").exists()
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "roco-demo" / "data" / "test" / "radiology"


def shipped(name: str) -> Path:
    """A folder of the shipped weights (`lite-encoder`, `lite-generator`): package data of `mirage_assets`
    (the repository's `assets/`), found with importlib.resources, so an installed wheel has them too."""
    from importlib import resources

    try:
        return Path(str(resources.files("mirage_assets") / name))
    except ModuleNotFoundError:  # a source tree used without installing it
        return REPO_ROOT / "assets" / name


def default_home() -> Path:
    """`.mirage` in a source checkout; in an installed package, or a checkout this user cannot write (a read-only
    clone, as Spaces and Cloud may run it), the user's cache folder — said once in the log."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mirage"
    if not SOURCE_CHECKOUT:
        return cache
    home = REPO_ROOT / ".mirage"
    if _writable(home):
        return home
    _say_once(f"the checkout {REPO_ROOT} is not writable: MIRAGE keeps its index and caches in {cache}")
    return cache


def _writable(folder: Path) -> bool:
    """Whether this user can create files in `folder` (or create it), on a file system not mounted read-only."""
    existing = folder if folder.exists() else folder.parent
    try:
        return os.access(existing, os.W_OK | os.X_OK) and not os.statvfs(existing).f_flag & os.ST_RDONLY
    except OSError:
        return False


@functools.cache
def _say_once(line: str) -> None:
    logging.getLogger("mirage").warning(line)


@dataclass(frozen=True)
class Settings:
    encoder: str = "lite"
    corpus: str = str(DEFAULT_CORPUS)  # one path, or several joined by ':' (a list in mirage.toml)
    split: str = ""
    licences: str = ""
    home: str = dataclasses.field(default_factory=lambda: str(default_home()))
    device: str = "cpu"
    quiz_db: str = ""
    database_url: str = ""  # postgresql://… for progress shared by replicas; else SQLite at progress_db()
    index: str = "exact"  # exact, faiss or postgresql://… (see backends)
    bundle_url: str = ""  # a corpus bundle (path or http(s) URL) to start from instead of the corpus; see bundle
    bundle_sha256: str = ""
    # No language model unless a deployment names one: the offline SmolLM2-135M is too weak for its text to pass
    # the report checks (it cited none of 20 held-out topics), and loading it costs 0.6 GB for nothing.
    llm: str = ""
    llm_base_url: str = ""  # for llm = "openai:<model>"; its key comes only from MIRAGE_LLM_API_KEY (a secret)
    generator: str = "lite"

    def index_dir(self, fingerprint: str) -> Path:
        """Indexes are keyed by encoder fingerprint and corpus, so a stale one is never picked up."""
        from .corpus import corpus_paths

        paths = os.pathsep.join(str(path.resolve()) for path in corpus_paths(self.corpus))
        corpus_key = hashlib.sha1(f"{paths}|{self.split}|{self.licences}".encode())
        return Path(self.home) / "indexes" / f"{fingerprint}-{corpus_key.hexdigest()[:10]}"

    def progress_db(self) -> str:
        """The quiz progress database: `database_url`, else the SQLite file `quiz_db`, else `progress.sqlite`
        in the MIRAGE home folder."""
        if self.database_url:
            return self.database_url
        return str(Path(self.quiz_db) if self.quiz_db else Path(self.home) / "progress.sqlite")

    def generator_work_dir(self) -> Path:
        """Checkpoints and cached training data of `mirage train-generator`."""
        return Path(self.home) / "generator-work"

    def load_corpus(self):
        from .corpus import load_corpora

        return load_corpora(self.corpus, split=self.split or None, licences=self.licences or None)

    def with_overrides(self, **values) -> Settings:
        return replace(self, **{k: v for k, v in values.items() if v is not None})


def load_settings(config_file: Path | None = None) -> Settings:
    if config_file is None:  # the working folder's mirage.toml, else the checkout's
        candidates = [Path.cwd() / "mirage.toml", REPO_ROOT / "mirage.toml"]
        config_file = next((c for c in candidates if c.exists()), candidates[-1])
    values: dict[str, str] = {}
    if config_file.exists():
        values.update({k: os.pathsep.join(map(str, v)) if isinstance(v, list) else str(v)
                       for k, v in tomllib.loads(config_file.read_text()).items()})
    for item in fields(Settings):
        env = os.environ.get(f"MIRAGE_{item.name.upper()}")
        if env is not None:
            values[item.name] = env
    return Settings(**{k: v for k, v in values.items() if k in {f.name for f in fields(Settings)}})
