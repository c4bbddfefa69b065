"""`mirage doctor`: what this deployment will use, and what is missing or risky — one finding a line.

Each check reads and never writes (no index is built, no database migrated, no model downloaded): the encoder
and its weights, the corpus or bundle, the index, the search backend and the progress database, the language
model endpoint (its key's presence, never its value), whether the MIRAGE home is writable, free memory against
the measured peak, and the torch build. A deployment "will work" when no finding is a failure; warnings are risks
worth reading. The Home page shows the same findings in a collapsed section.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

MEASURED_PEAK_MIB = 1709  # `mirage bench tour`, 2026-12-05, first start embedding the demo corpus (README)
TIMEOUT = 5.0


@dataclass(frozen=True)
class Finding:
    check: str
    status: str  # "ok", "warn" or "fail"
    detail: str

    def line(self) -> str:
        return f"{self.status.upper():<4}  {self.check:<10} {self.detail}"


def _reachable(url: str, headers: dict | None = None) -> str:
    """'' when the URL answers (any HTTP status below 500), else why not."""
    try:
        request = urllib.request.Request(url, method="HEAD", headers=headers or {})
        with urllib.request.urlopen(request, timeout=TIMEOUT):
            return ""
    except urllib.error.HTTPError as error:
        return "" if error.code < 500 else f"HTTP {error.code}"
    except (urllib.error.URLError, OSError, ValueError) as error:
        return str(getattr(error, "reason", error))


def check_encoder(settings) -> tuple[Finding, object]:
    from .encoders import create_encoder
    from .errors import MirageError

    try:
        encoder = create_encoder(settings.encoder, settings.device)
    except MirageError as error:
        return Finding("encoder", "fail", str(error)), None
    return Finding("encoder", "ok", f"{encoder.name} (fingerprint {encoder.fingerprint}, {encoder.dim}-d)"), encoder


def check_corpus(settings) -> Finding:
    from .corpus import corpus_paths

    if settings.bundle_url:
        where = settings.bundle_url
        if where.startswith(("http://", "https://")):
            problem = _reachable(where)
            if problem:
                return Finding("corpus", "fail", f"the bundle {where} cannot be reached: {problem}")
        elif not Path(where).exists():
            return Finding("corpus", "fail", f"the bundle {where} does not exist")
        if not settings.bundle_sha256:
            return Finding("corpus", "warn", f"bundle {where}: no MIRAGE_BUNDLE_SHA256 to check it against")
        return Finding("corpus", "ok", f"bundle {where}, checked against its SHA-256 when installed")
    missing = [str(path) for path in corpus_paths(settings.corpus) if not path.exists()]
    if missing:
        return Finding("corpus", "fail", f"not found: {', '.join(missing)} (set MIRAGE_CORPUS or MIRAGE_BUNDLE_URL)")
    return Finding("corpus", "ok", settings.corpus)


def check_index(settings, encoder) -> Finding:
    from .index import FORMAT_VERSION

    if settings.bundle_url or encoder is None:
        return Finding("index", "ok" if settings.bundle_url else "warn",
                       "comes with the bundle" if settings.bundle_url else "unknown without an encoder")
    folder = settings.index_dir(encoder.fingerprint)
    manifest = folder / "manifest.json"
    if not manifest.exists():
        return Finding("index", "warn", f"not built yet: the first start embeds the corpus into {folder}")
    try:
        version = json.loads(manifest.read_text()).get("format_version")
    except (OSError, ValueError):
        return Finding("index", "fail", f"{folder} is damaged: rebuild it with `mirage build-index`")
    if version != FORMAT_VERSION:
        return Finding("index", "warn", f"{folder} has format {version}: the next start rebuilds it")
    return Finding("index", "ok", f"built, format {version}, at {folder}")


def check_databases(settings) -> list[Finding]:
    from .backends import backend_kind
    from .errors import MirageError

    findings = []
    try:
        kind = backend_kind(settings.index)
        findings.append(Finding("backend", "ok", kind if kind != "postgresql" else "postgresql (pgvector)"))
    except MirageError as error:
        findings.append(Finding("backend", "fail", str(error)))
    targets = {"index database": settings.index} if settings.index.startswith("postgres") else {}
    if settings.database_url:
        targets["progress"] = settings.database_url
    for name, url in targets.items():
        findings.append(_check_postgres(name, url))
    if not settings.database_url:
        path = Path(settings.progress_db())
        folder = path.parent if path.parent.exists() else Path(settings.home)
        status = "ok" if os.access(folder if folder.exists() else folder.parent, os.W_OK) else "warn"
        findings.append(Finding("progress", status, f"SQLite at {path}" + (
            "" if status == "ok" else ": not writable — answers are kept for a browser session only")))
    return findings


def _check_postgres(name: str, url: str) -> Finding:
    import sqlalchemy as sa

    from .quiz.store import database_url

    shown = sa.engine.make_url(database_url(url)).render_as_string(hide_password=True)
    try:
        engine = sa.create_engine(database_url(url), connect_args={"connect_timeout": int(TIMEOUT)})
        with engine.connect() as connection:
            tables = set(sa.inspect(connection).get_table_names())
        engine.dispose()
    except Exception as error:  # noqa: BLE001 (any driver error is a finding, not a crash)
        return Finding(name, "fail", f"{shown} cannot be reached: {str(error).splitlines()[0][:200]}")
    if name == "progress" and "answers" not in tables:
        return Finding(name, "ok", f"{shown}: reachable, empty (MIRAGE creates its tables on first start)")
    return Finding(name, "ok", f"{shown}: reachable")


def check_llm(settings) -> Finding:
    if not settings.llm:
        return Finding("llm", "ok", "none configured: reports are the grounded ones alone")
    if not settings.llm.startswith("openai:"):
        return Finding("llm", "warn", f"{settings.llm}: a local model, loaded into this process's memory")
    key = bool(os.environ.get("MIRAGE_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY"))
    base = settings.llm_base_url
    if not base:
        return Finding("llm", "fail", f"{settings.llm} needs MIRAGE_LLM_BASE_URL")
    problem = _reachable(base.rstrip("/") + "/models")
    if problem:
        return Finding("llm", "fail", f"{base} cannot be reached: {problem}")
    return Finding("llm", "ok" if key else "warn",
                   f"{settings.llm} at {base}; API key {'present' if key else 'missing (MIRAGE_LLM_API_KEY)'}")


def check_instructor_key() -> Finding:
    """Whether the Class page's instructor area is on: the key's presence and strength, never the key."""
    key = os.environ.get("MIRAGE_INSTRUCTOR_KEY", "")
    if not key:
        return Finding("instructors", "ok", "no MIRAGE_INSTRUCTOR_KEY in the environment: the Class page is off "
                                            "(unless the app's Streamlit secrets set one)")
    if len(key) < 12:
        return Finding("instructors", "warn", f"MIRAGE_INSTRUCTOR_KEY is {len(key)} characters: use 12 or more")
    return Finding("instructors", "ok", "MIRAGE_INSTRUCTOR_KEY is set: the Class page's instructor area is on")


def check_home(settings) -> Finding:
    from .files import writable

    home = Path(settings.home)
    if writable(home):
        return Finding("home", "ok", f"{home} is writable")
    return Finding("home", "warn", f"{home} is not writable: an index must already be there, and quiz progress "
                                   "needs MIRAGE_DATABASE_URL to be kept")


def check_memory() -> Finding:
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        available = int(fields["MemAvailable"].split()[0]) // 1024
    except (OSError, KeyError, ValueError):
        return Finding("memory", "warn", "free memory unknown (no /proc/meminfo)")
    status = "ok" if available >= MEASURED_PEAK_MIB * 1.2 else "warn" if available >= MEASURED_PEAK_MIB else "fail"
    return Finding("memory", status, f"{available:,} MiB available; the measured peak is {MEASURED_PEAK_MIB:,} MiB")


def check_torch() -> Finding:
    import torch

    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU"
    devices = f", {torch.cuda.device_count()} GPU(s) visible" if torch.version.cuda and torch.cuda.is_available() \
        else ""
    return Finding("torch", "ok", f"torch {torch.__version__}, {build} build{devices}")


def diagnose(settings, encoder=None) -> list[Finding]:
    """Every finding, in the order a deployer reads them (`encoder`: one already loaded, not loaded again)."""
    if encoder is None:
        encoder_finding, encoder = check_encoder(settings)
    else:
        encoder_finding = Finding("encoder", "ok", f"{encoder.name} (fingerprint {encoder.fingerprint}, "
                                                   f"{encoder.dim}-d)")
    return [encoder_finding, check_corpus(settings), check_index(settings, encoder), *check_databases(settings),
            check_llm(settings), check_instructor_key(), check_home(settings), check_memory(), check_torch()]


def will_work(findings: list[Finding]) -> bool:
    return not any(f.status == "fail" for f in findings)


def as_json(findings: list[Finding]) -> str:
    return json.dumps({"will_work": will_work(findings), "findings": [asdict(f) for f in findings]}, indent=2)
