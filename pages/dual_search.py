"""Dual search: query − subtract + add, the results before and after, and the move drawn on a PCA map."""

import streamlit as st

from app_shared import (
    UPLOAD_TYPES,
    frame,
    get_preset_effects,
    get_projection,
    path_figure,
    read_upload,
    show_hits,
    show_verdict,
)
from mirage_core.arithmetic import PRESETS, Term, concept_walk, dual_search
from mirage_core.display import inert
from mirage_core.errors import MirageError
from mirage_core.projection import CENTRING_NOTE, picture_of
from mirage_core.relevance import assess

encoder, index = frame()
st.title("Dual search")
st.caption("v = normalise(w·query − Σ w·subtract + Σ w·add) — watch where the query moves.")

effects = get_preset_effects()
by_name = {p.name: p for p in PRESETS}
preset = st.selectbox("Preset", [*by_name, "(your own)"],
                      format_func=lambda name: f"{name} — {effects[name].describe()}" if name in effects else name)
chosen = by_name.get(preset, PRESETS[0])
query_text, minus_texts, plus_texts = chosen.query, list(chosen.subtract), list(chosen.add)


def term_inputs(kind: str, defaults: list[str]) -> list[Term]:
    count = st.number_input(f"{kind} terms", 0, 4, len(defaults), key=f"{preset}-{kind}-n")
    terms = []
    for i in range(int(count)):
        text = st.text_input(f"{kind} {i + 1}", defaults[i] if i < len(defaults) else "",
                             key=f"{preset}-{kind}-{i}")
        weight = st.slider(f"weight of {kind.lower()} {i + 1}", 0.0, 2.0, 1.0, 0.1, key=f"{preset}-{kind}-w{i}")
        upload = st.file_uploader(f"…or an image for {kind.lower()} {i + 1}", type=UPLOAD_TYPES,
                                  key=f"{preset}-{kind}-img{i}")
        image = read_upload(upload)
        terms.append(Term(image, weight, label=upload.name) if image is not None else Term(text, weight))
    return terms


left, middle, right = st.columns(3)
with left:
    query = st.text_input("Query", query_text, key=f"{preset}-query")
    query_weight = st.slider("weight of the query", 0.0, 2.0, 1.0, 0.1, key=f"{preset}-query-w")
with middle:
    subtract = term_inputs("Subtract", minus_texts)
with right:
    add = term_inputs("Add", plus_texts)
k = st.slider("Results", 4, 16, 8, step=4)

try:
    result = dual_search(index, encoder, Term(query, query_weight), subtract, add, k=k)
except MirageError as error:
    st.error(inert(error))
    st.stop()
st.session_state["dual_vector"] = result.composition.result
st.session_state["dual_label"] = result.composition.expression()

projector = st.toggle("Projector view: the map first, in large type", key="projector-view")
picture = picture_of(get_projection(), result.composition, result.modified, index)
first, second = picture.projection.explained_variance
map_note = (f"{CENTRING_NOTE} The two axes explain {first:.0%} and {second:.0%} of the sample's variance; "
            "distances in 2D are only a rough guide to distances in the full space.")
if projector:
    st.subheader("Where the vector moved")
    st.plotly_chart(path_figure(picture, projector=True), width="stretch")
    st.caption(map_note)

before, after = st.columns(2)
with before:
    st.subheader(f"Original: “{inert(query)}”")
    show_hits(result.original, key="original", columns=2, more_like_this=False)
with after:
    st.subheader("After the arithmetic")
    if show_verdict(assess(index, result.modified, kind="vector"), key="dual"):
        show_hits(result.modified, key="modified", columns=2, more_like_this=False)

if not projector:
    st.subheader("Where the vector moved")
    st.plotly_chart(path_figure(picture), width="stretch")
    st.caption(map_note)

st.subheader("Concept walk")
a_col, b_col = st.columns(2)
# Keyed by their defaults: the ends follow the current query and first added term, and a student's own edit
# stays until those change
walk_from, walk_to = query, add[0].describe() if add else "MRI of the brain"
concept_a = a_col.text_input("From", walk_from, key=f"walk-a-{walk_from}")
concept_b = b_col.text_input("To", walk_to, key=f"walk-b-{walk_to}")
t = st.slider("Position", 0.0, 1.0, 0.5, 0.05, key="walk-t")
try:
    show_hits(concept_walk(index, encoder, concept_a, concept_b, t), key="walk", more_like_this=False)
except MirageError as error:
    st.error(inert(error))
