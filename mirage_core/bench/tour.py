"""A class's first day on one app process: the first start (embedding the corpus into a fresh home), then
every page — a search, a dual search, a quiz answer, a generation, a report — and the peak resident memory.

The tour runs the real pages through Streamlit's AppTest in a fresh Python process (the same scripts and
cached models as a server process, without a browser), so `peak_rss_mib` is what a deployment must fit:
Community Cloud gives an app about 2.7 GB. With `bundle`, the first start installs a corpus bundle (a path or
URL, see `mirage bundle`) instead of embedding.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from . import BenchResult

_TOUR = r"""
import json, sys, time
started = time.perf_counter()
from streamlit.testing.v1 import AppTest
from mirage_core.bench import peak_rss_mib, resident_split_mib
marks = {}

def page(at, path):
    at.switch_page(path).run()
    assert not at.exception, f"{path}: {at.exception}"

at = AppTest.from_file(sys.argv[1], default_timeout=1800)
at.run()
assert not at.exception, at.exception
marks["first_start_s"] = time.perf_counter() - started
page(at, "pages/retrieval.py")
at.text_input[0].input("chest x-ray pneumothorax")
at.button[0].click().run()
marks["first_result_s"] = time.perf_counter() - started
page(at, "pages/dual_search.py")
page(at, "pages/quiz.py")
at.text_input(key="learner_input").input("tour").run()
at.slider(key="quiz-length").set_value(3)
next(b for b in at.button if b.label == "Start").click().run()
session = at.session_state["quiz_flow"].session
at.radio(key=f"choice-{session.position}").set_value("A")
next(b for b in at.button if b.label == "Submit").click().run()
page(at, "pages/generation.py")
next(b for b in at.button if b.label == "Generate").click().run()
page(at, "pages/reports.py")
at.text_input[0].input("chest x-ray pneumothorax")
next(b for b in at.button if b.label == "Write the report").click().run()
page(at, "pages/classes.py")
page(at, "pages/home.py")
marks["tour_s"] = time.perf_counter() - started
marks["errors"] = len(at.exception) + len(at.error)
marks["peak_rss_mib"] = peak_rss_mib()
marks["resident_end_mib"] = resident_split_mib()
print(json.dumps(marks))
"""


@dataclasses.dataclass
class TourResult(BenchResult):
    peak_rss_mib: float
    first_start_s: float
    first_result_s: float
    tour_s: float
    errors: int
    corpus: str
    bundle: str
    resident_end_mib: dict  # at the end, split: the process's own memory and mapped library/file pages
    budget_mib: int = 2000

    def describe(self) -> str:
        verdict = "within" if self.peak_rss_mib <= self.budget_mib else "OVER"
        source = f"bundle {self.bundle}" if self.bundle else f"corpus {self.corpus}"
        return (f"first start {self.first_start_s:.1f} s ({source}),"
                f" first search result at {self.first_result_s:.1f} s, whole tour {self.tour_s:.1f} s, "
                f"{self.errors} errors\npeak RSS {self.peak_rss_mib:,.0f} MiB — {verdict} the "
                f"{self.budget_mib:,} MiB budget; at the end {self.resident_end_mib}")


def bench_tour(settings, bundle: str = "") -> TourResult:
    """The tour in a fresh process with an empty MIRAGE home (so the first start really embeds or installs)."""
    from ..config import REPO_ROOT, SOURCE_CHECKOUT
    from ..errors import MirageError

    if not SOURCE_CHECKOUT:
        raise MirageError("bench tour runs the dashboard's pages: run it from a source checkout")
    with tempfile.TemporaryDirectory(prefix="mirage-tour-") as home:
        env = {**os.environ, "MIRAGE_HOME": home, "MIRAGE_CORPUS": settings.corpus, "MIRAGE_ENCODER": settings.encoder,
               "MIRAGE_LLM": settings.llm, "MIRAGE_INDEX": "exact", "MIRAGE_QUIZ_DB": str(Path(home) / "p.sqlite")}
        if bundle:
            env["MIRAGE_BUNDLE_URL"] = bundle
        done = subprocess.run([sys.executable, "-c", _TOUR, str(REPO_ROOT / "streamlit_app.py")], env=env,
                              capture_output=True, text=True, cwd=REPO_ROOT)
    if done.returncode != 0:
        raise MirageError("the tour failed: " + (done.stderr.strip().splitlines() or ["?"])[-1])
    marks = json.loads(done.stdout.strip().splitlines()[-1])
    return TourResult(peak_rss_mib=round(marks["peak_rss_mib"]), first_start_s=round(marks["first_start_s"], 1),
                      first_result_s=round(marks["first_result_s"], 1), tour_s=round(marks["tour_s"], 1),
                      errors=marks["errors"], corpus=settings.corpus, bundle=bundle,
                      resident_end_mib=marks["resident_end_mib"])
