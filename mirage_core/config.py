"""Settings in one place: which encoder, corpus, language model and generator; where data lives.

Defaults work offline on this repository's machines (the lite encoder and the ROCO demo corpus beside the
repository). A deployer overrides them with environment variables (`MIRAGE_ENCODER`, `MIRAGE_CORPUS`,
`MIRAGE_SPLIT`, `MIRAGE_LICENCES`, `MIRAGE_HOME`, `MIRAGE_DEVICE`, `MIRAGE_QUIZ_DB`,
`MIRAGE_DATABASE_URL`, `MIRAGE_INDEX`, `MIRAGE_BUNDLE_URL`, `MIRAGE_BUNDLE_SHA256`, `MIRAGE_LLM`, `MIRAGE_LLM_BASE_URL`,
`MIRAGE_GENERATOR`) or a `mirage.toml` at the repository root with the
same keys in lower case (`encoder = "open_clip:hf-hub:…"`); environment variables win. `pydantic-settings` reads
both, typed: an unknown key or a value of the wrong type in `mirage.toml` is a one-line error naming the key and
the valid ones, never a silent fall back to a default.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tomllib
from pathlib import Path
from typing import ClassVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, TomlConfigSettingsSource

from .errors import MirageError
from .files import writable

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
    if writable(home):
        return home
    _say_once(f"the checkout {REPO_ROOT} is not writable: MIRAGE keeps its index and caches in {cache}")
    return cache


@functools.cache
def _say_once(line: str) -> None:
    logging.getLogger("mirage").warning(line)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MIRAGE_", extra="forbid", frozen=True, strict=True)
    toml_file: ClassVar[Path | None] = None  # the mirage.toml `load_settings` found

    encoder: str = "lite"
    corpus: str = str(DEFAULT_CORPUS)  # one path, or several joined by ':' (a list in mirage.toml)
    split: str = ""
    licences: str = ""
    home: str = Field(default_factory=lambda: str(default_home()))
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

    @field_validator("corpus", mode="before")
    @classmethod
    def _joined(cls, value):
        """mirage.toml may list several corpus folders; they are one value joined by ':'."""
        return os.pathsep.join(map(str, value)) if isinstance(value, list | tuple) else value

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        sources = (init_settings, env_settings)  # arguments, then MIRAGE_* variables, then mirage.toml
        if cls.toml_file is not None and cls.toml_file.exists():
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_file),)
        return sources

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
        return self.model_copy(update={k: v for k, v in values.items() if v is not None})


def load_settings(config_file: Path | None = None) -> Settings:
    """The settings: MIRAGE_* environment variables over `mirage.toml` (the working folder's, else the
    checkout's) over the defaults; a mistake in either is a `MirageError` naming the key and the valid ones."""
    if config_file is None:
        candidates = [Path.cwd() / "mirage.toml", REPO_ROOT / "mirage.toml"]
        config_file = next((c for c in candidates if c.exists()), candidates[-1])
    Settings.toml_file = Path(config_file)
    try:
        return Settings()
    except ValidationError as error:
        raise MirageError(_explain(error, Path(config_file))) from None
    except tomllib.TOMLDecodeError as error:
        raise MirageError(f"{config_file} is not valid TOML: {error}") from None


def _explain(error: ValidationError, config_file: Path) -> str:
    problem = error.errors()[0]
    key = ".".join(str(part) for part in problem["loc"]) or "?"
    valid = ", ".join(Settings.model_fields)
    if problem["type"] == "extra_forbidden":
        return f"unknown setting '{key}' in {config_file}: the settings are {valid}"
    return (f"the setting '{key}' (mirage.toml or MIRAGE_{key.upper()}) is not valid: {problem['msg'].lower()} "
            f"(got {problem.get('input')!r})")
