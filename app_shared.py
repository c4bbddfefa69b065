"""What every page of the dashboard shares: cached models and index, and how a result is drawn.

Models, the index and the PCA are `st.cache_resource` (one copy per server process, read-only); anything
per user lives in `st.session_state`. The logic itself is in `mirage_core`; this module only adapts it
to Streamlit (caching, error display, the result grid).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import streamlit as st

from mirage_core.bundle import bundle_folder
from mirage_core.config import load_settings
from mirage_core.corpus import Record
from mirage_core.display import highlighted, inert, link
from mirage_core.encoders import Encoder, create_encoder
from mirage_core.errors import MirageError
from mirage_core.generation import ImageGenerator, create_generator, sizes_of
from mirage_core.images import open_image, square
from mirage_core.index import Hit, Index, index_exists, index_stamp
from mirage_core.llm import ChatEndpoint, LanguageModel, llm_for
from mirage_core.projection import Projection, fit_projection, place_labels
from mirage_core.quiz import ProgressStore
from mirage_core.quiz.classes import InstructorGate
from mirage_core.search import why
from mirage_core.startup import open_configured_index

DISCLAIMER = "For education only — not for diagnosis."
PAGES = [  # (script, title, icon): the navigation, drawn by `frame` on every page
    ("pages/home.py", "Home", ":material/home:"),
    ("pages/retrieval.py", "Retrieval", ":material/image_search:"),
    ("pages/dual_search.py", "Dual search", ":material/calculate:"),
    ("pages/quiz.py", "Quiz", ":material/school:"),
    ("pages/generation.py", "Generation", ":material/palette:"),
    ("pages/reports.py", "Reports", ":material/description:"),
    ("pages/classes.py", "Class", ":material/groups:"),
]
UPLOAD_TYPES = ["png", "jpg", "jpeg", "dcm", "dicom"]
MATCH_NOTE = ("Ranked by match (0–100): text search gathers cases from three channels — the image match (the joint "
              "image–text space), the caption's meaning and the caption's words — and a small model trained on "
              "tuning questions scores each from how its caption reads against your query and whether it is the "
              "modality you named: 50 is even odds that it shows what you asked. Caption words that match your "
              "query are in bold.")
SCORE_NOTE = ("Ranked by similarity in the joint image–text space (the cosine: 1 is identical), less a correction for "
              "'hub' images that resemble every query.")


@st.cache_resource(show_spinner="Loading the encoder…")
def get_encoder(name: str, device: str) -> Encoder:
    return create_encoder(name, device)


@st.cache_resource(show_spinner="Loading the index…")
def _index(name: str, device: str, corpus: str, backend: str, bundle: str, build: str) -> Index:
    return open_configured_index(load_settings(), get_encoder(name, device))


@st.cache_resource(show_spinner="Fitting the 2D projection…")
def _projection(*key: str) -> Projection:
    return fit_projection(_index(*key))


@st.cache_resource
def _served_builds() -> dict[tuple[str, ...], str]:
    """The build of each configured index this server process is serving (see `ensure_index`)."""
    return {}


def _index_key(settings) -> tuple[str, ...]:
    return settings.encoder, settings.device, settings.corpus, settings.index, settings.bundle_url


def ensure_index() -> tuple[Encoder, Index]:
    """The encoder and index of the configured profile; a first start installs the bundle or embeds the
    corpus under a progress bar (once), later starts only load."""
    settings = load_settings()
    encoder = get_encoder(settings.encoder, settings.device)
    if settings.bundle_url:
        installed = bundle_folder(settings.bundle_url, settings.home, settings.bundle_sha256) / "bundle.json"
        pending = not installed.exists()
        words = "Downloading the corpus bundle"
    else:
        pending = _local_index(settings) and not index_exists(settings.index_dir(encoder.fingerprint)) \
            and _index_key(settings) not in _served_builds()
        words = "Embedding the corpus"
    if pending:
        bar = st.progress(0.0, text=f"First start: {words.lower()} (once)…")
        open_configured_index(settings, encoder, progress=lambda done, total: bar.progress(
            min(done / max(total, 1), 1.0), text=f"{words}: {done:,}/{total:,}"))
        bar.empty()
    return encoder, _index(*_index_key(settings), _serving_build(settings, encoder))


def _local_index(settings) -> bool:
    return not settings.bundle_url and settings.index in ("exact", "faiss")


def _serving_build(settings, encoder: Encoder) -> str:
    """The build to serve: a rebuilt or replaced index folder is loaded at the next page run (the old one let go, so
    a small deployment never holds two); a removed folder keeps the build in memory serving until the next start."""
    key, served = _index_key(settings), _served_builds()
    build = (index_stamp(settings.index_dir(encoder.fingerprint)) if _local_index(settings) else "") or ""
    if not build and key in served:
        return served[key]
    if key in served and served[key] != build:
        for computed in (_index, _projection, _preset_effects):
            computed.clear()
    served[key] = build
    return build


def frame() -> tuple[Encoder, Index]:
    """What every page draws first — page config, the sidebar with the disclaimer and corpus — and the encoder
    and index it works on. Each page calls it, so a page is whole however Streamlit reaches it."""
    st.set_page_config(page_title="MIRAGE", page_icon=":material/radiology:", layout="wide")
    with st.sidebar:  # drawn before the index, so a first start's embedding shows under a whole frame
        st.markdown("### MIRAGE")
        with st.container(key="mirage-nav"):
            for path, title, icon in PAGES:
                st.page_link(path, label=title, icon=icon)
        st.warning(DISCLAIMER, icon=":material/warning:")
        about = st.empty()
    try:
        encoder, index = ensure_index()
    except MirageError as error:
        st.error(f"MIRAGE cannot start: {inert(error)}")
        st.stop()
    corpus = " + ".join("/".join(Path(name).parts[-3:]) for name in index.manifest.get("corpus", "?").split(":"))
    about.caption(f"Encoder: {inert(encoder.name)}  \nCorpus: …/{inert(corpus)} · {len(index):,} images")
    return encoder, index


def _served_key() -> tuple[str, ...]:
    """The index key with the build being served: what everything computed from the index is cached by."""
    key = _index_key(load_settings())
    return (*key, _served_builds().get(key, ""))


def get_projection() -> Projection:
    return _projection(*_served_key())


def read_upload(uploaded) -> object | None:
    """A PIL image from an uploaded file, or None after showing why it could not be read."""
    if uploaded is None:
        return None
    try:
        return open_image(uploaded.getvalue(), uploaded.name)
    except MirageError as error:
        st.error(inert(error))
        return None


@st.cache_resource(show_spinner="Loading the language model…")
def get_llm(spec: str) -> LanguageModel | ChatEndpoint:
    return llm_for(load_settings(), spec)


@st.cache_resource(show_spinner="Loading the generator…")
def _generator(profile: str, encoder_name: str, device: str) -> ImageGenerator:
    return create_generator(profile, get_encoder(encoder_name, device), device)


def get_generator() -> ImageGenerator:
    settings = load_settings()
    return _generator(settings.generator, settings.encoder, settings.device)


def generator_sizes() -> list[int | None]:
    """The sizes the configured generator draws at, without loading it."""
    return sizes_of(load_settings().generator)


@st.cache_resource
def _progress_store(path: str) -> ProgressStore:
    return ProgressStore(path)


def get_progress_store() -> ProgressStore:
    """The configured progress store. When it cannot be opened (a read-only home, a database down at start), a
    store of this browser session's own in a temporary folder, with a warning on the page: the quiz keeps working,
    and nothing is acknowledged as saved that will not be."""
    try:
        return _progress_store(load_settings().progress_db())
    except MirageError as error:
        if "session_progress" not in st.session_state:
            import tempfile

            folder = Path(tempfile.mkdtemp(prefix="mirage-session-"))
            st.session_state["session_progress"] = ProgressStore(folder / "progress.sqlite")
        st.warning(f"Your answers are kept for this browser session only and will not be saved: {inert(error)}",
                   icon=":material/cloud_off:")
        return st.session_state["session_progress"]


@st.cache_resource
def _instructor_gate(key: str) -> InstructorGate:
    return InstructorGate(key)


def get_instructor_gate() -> InstructorGate:
    """The instructor key's gate, one per server process and key (its throttle counts every session's failures).
    The key comes from the environment or Streamlit's secrets, never from a page."""
    import os

    key = os.environ.get("MIRAGE_INSTRUCTOR_KEY", "")
    if not key:
        try:
            key = str(st.secrets.get("MIRAGE_INSTRUCTOR_KEY", ""))
        except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
            key = ""  # no secrets file: the instructor area stays off
    return _instructor_gate(key)


@st.cache_resource(show_spinner="Measuring the dual-search presets…")
def _preset_effects(*key: str) -> dict:
    from mirage_core.arithmetic import PRESETS, preset_effect

    encoder, index = get_encoder(key[0], key[1]), _index(*key)
    return {preset.name: preset_effect(index, encoder, preset) for preset in PRESETS}


def get_preset_effects() -> dict:
    """Each preset's before → after figure on this corpus (`arithmetic.preset_effect`), measured once a process."""
    return _preset_effects(*_served_key())


@st.cache_resource(ttl=600, show_spinner="Checking the deployment…")
def _findings(*key: str) -> list:
    from mirage_core.doctor import diagnose

    return diagnose(load_settings(), get_encoder(key[0], key[1]))


def deployment_findings() -> list:
    """`mirage doctor`'s findings for this deployment, checked at most every ten minutes."""
    return _findings(*_index_key(load_settings()))


def show_record_image(index: Index, record_id: str, width: int | str = "stretch") -> None:
    """A corpus image with its PMC and licence links underneath."""
    record = index.records[index.row_of(record_id)]
    try:
        st.image(open_image(record.image_path), width=width)
    except MirageError:
        st.warning("image unavailable")
    st.caption(source_line(record))


def source_line(record: Record) -> str:
    """'PMC id (linked) · licence (linked)' for a real image."""
    parts = [link(record.pmc_id, record.article_url)] if record.article_url else []
    parts.append(link(record.licence, record.licence_url))
    return " · ".join(parts)


def show_hits(hits: Sequence[Hit], key: str, columns: int = 4, more_like_this: bool = True,
              explain: bool = True) -> None:
    """A grid of results: image, caption, score, modality, licence and PMC link; 'more like this'.
    `explain=False` leaves out the note on the score, for a page that shows several grids under one note."""
    if not hits:
        st.info("No results match the filters.")
        return
    if explain:
        st.caption(MATCH_NOTE if hits[0].match is not None else SCORE_NOTE)
    grid = st.columns(columns)
    for rank, hit in enumerate(hits):
        with grid[rank % columns]:
            with st.container(border=True):
                try:
                    st.image(square(open_image(hit.record.image_path)), width="stretch")
                except MirageError:
                    st.warning("image unavailable")
                st.caption(f"**{rank + 1}.** {inert(why(hit))} · {inert(hit.record.modality)} · "
                           f"{inert(hit.record.id)}")
                st.markdown(highlighted(hit.record.caption, hit.matched, limit=220))
                st.markdown(source_line(hit.record))
                if more_like_this and st.button("More like this", key=f"{key}-more-{hit.record.id}"):
                    st.session_state["similar_to"] = hit.record.id
                    st.switch_page("pages/retrieval.py")


def show_verdict(verdict, key: str) -> bool:
    """Say when a search found nothing relevant; True when its results should be shown as they are."""
    if verdict.level == "off_topic":
        st.warning(f"Nothing relevant found: {verdict.reason}.", icon=":material/search_off:")
        return st.toggle("Show the nearest images anyway", key=f"anyway-{key}", value=False)
    if verdict.level == "weak":
        st.info(f"Weak match: {verdict.reason}.", icon=":material/help:")
    return True


def dual_search_vector() -> tuple[object, str] | None:
    """The Dual search page's last result vector and its expression, or None after saying how to get one."""
    vector = st.session_state.get("dual_vector")
    if vector is None:
        st.info("Run a dual search first (Dual search page); its result vector is used here.")
        return None
    label = st.session_state.get("dual_label", "")
    st.markdown(f"Vector from the Dual search page: **{inert(label)}**")
    return vector, label


MODALITY_COLOURS = {"X-ray": "#8fb3ff", "CT": "#ffb454", "MRI": "#c792ea", "ultrasound": "#7fd88f",
                    "angiography": "#ff6b81", "fluoroscopy": "#4dd0e1", "nuclear/PET": "#ffe066",
                    "mammography": "#f48fb1", "unknown": "#6b7280"}
PATH_COLOUR, HIT_COLOUR = "#4fa3ff", "#ff7a59"  # read on light and dark themes alike


def path_figure(picture, projector: bool = False):
    """Plotly figure of a `PathPicture`: the corpus sample coloured by modality with its largest groups named as
    landmarks, the query's path as arrows, the hits as stars; labels placed so that none collide. `projector`:
    large type (≥ 18 px), each step named in plain words, the four largest modalities in the legend and the rest
    as one entry, a taller plot."""
    import plotly.graph_objects as go

    sample = picture.projection
    figure = go.Figure()
    counts = {m: int((sample.sample_modalities == m).sum()) for m in MODALITY_COLOURS}
    shown = sorted((m for m in counts if counts[m] and m != "unknown"), key=counts.get, reverse=True)
    named = set(shown[:4]) if projector else set(counts)
    for modality, colour in MODALITY_COLOURS.items():
        members = sample.sample_modalities == modality
        if members.any() and modality in named:
            figure.add_scatter(x=sample.sample_images[members, 0], y=sample.sample_images[members, 1],
                               mode="markers", name=f"{modality} images", hoverinfo="name",
                               marker=dict(size=6, color=colour, opacity=0.55))
    rest = ~np.isin(sample.sample_modalities, list(named))
    if rest.any():
        figure.add_scatter(x=sample.sample_images[rest, 0], y=sample.sample_images[rest, 1], mode="markers",
                           name="other images", hoverinfo="name", marker=dict(size=5, color="#6b7280", opacity=0.4))
    if not projector:
        figure.add_scatter(x=sample.sample_captions[:, 0], y=sample.sample_captions[:, 1], mode="markers",
                           name="captions", hoverinfo="name", visible="legendonly",
                           marker=dict(size=5, color="#9ca3af", opacity=0.4, symbol="diamond"))
    points = picture.path_points
    steps = picture.step_names if projector and picture.step_names else picture.path_labels
    figure.add_scatter(x=points[:, 0], y=points[:, 1], mode="markers", name="query path",
                       hovertext=steps, hoverinfo="text", marker=dict(size=16 if projector else 12,
                                                                      color=PATH_COLOUR))
    for start, end in zip(points[:-1], points[1:]):
        figure.add_annotation(x=end[0], y=end[1], ax=start[0], ay=start[1], xref="x", yref="y", axref="x",
                              ayref="y", showarrow=True, arrowhead=3, arrowsize=1.4, arrowwidth=2.5,
                              arrowcolor=PATH_COLOUR)
    figure.add_scatter(x=picture.hit_points[:, 0], y=picture.hit_points[:, 1], mode="markers", name="top results",
                       hovertext=picture.hit_labels, hoverinfo="text",
                       marker=dict(size=16 if projector else 12, color=HIT_COLOUR, symbol="star"))
    x_range, y_range = picture.view()
    landmarks = sample.landmarks[:4] if projector else sample.landmarks
    texts = list(steps) + [landmark.name for landmark in landmarks]
    anchors = np.concatenate([points, np.array([landmark.point for landmark in landmarks]).reshape(-1, 2)])
    step_font, landmark_font = (22.0, 18.0) if projector else (16.0, 13.0)
    fonts = [step_font] * len(points) + [landmark_font] * len(landmarks)
    colours = [PATH_COLOUR] * len(points) + [MODALITY_COLOURS.get(landmark.name.split(" · ")[0], "#d1d5db")
                                             for landmark in landmarks]
    # the arrows' midpoints are obstacles too, so that no label sits on a move it names
    midpoints = (points[:-1] + points[1:]) / 2 if len(points) > 1 else np.zeros((0, 2))
    obstacles = np.concatenate([picture.hit_points.reshape(-1, 2), midpoints])
    placed = place_labels(anchors, texts, x_range, y_range, fonts, obstacles=obstacles)
    for (x, y), text, label, font, colour in zip(anchors, texts, placed, fonts, colours):
        figure.add_annotation(x=x, y=y, ax=label.dx, ay=-label.dy, text=text, showarrow=True, arrowhead=0,
                              arrowwidth=1, arrowcolor=colour, font=dict(size=font, color=colour))
    axis_font = dict(size=18) if projector else None
    figure.update_layout(height=760 if projector else 620,
                         xaxis=dict(title="PC 1", range=x_range, tickfont=axis_font),
                         yaxis=dict(title="PC 2", range=y_range, tickfont=axis_font),
                         legend=dict(orientation="h", font=dict(size=18) if projector else None),
                         font=dict(size=18) if projector else None, margin=dict(t=20, b=20, l=20, r=20))
    return figure
