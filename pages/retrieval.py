"""Retrieval: a text query or an uploaded image → real images (or captions), with filters."""

import streamlit as st

from app_shared import UPLOAD_TYPES, frame, read_upload, show_hits, show_record_image, show_verdict
from mirage_core.display import inert
from mirage_core.errors import MirageError
from mirage_core.labels import MODALITIES
from mirage_core.query import as_unit_vector
from mirage_core.relevance import assess
from mirage_core.search import more_like_this, search_text

PRESETS = [
    "chest x-ray pneumothorax", "axial CT of the abdomen with a liver lesion", "MRI brain T2 hyperintensity",
    "ultrasound of the gallbladder", "coronary angiography stenosis", "panoramic dental radiograph",
]

encoder, index = frame()
st.title("Retrieval")

with st.sidebar:
    st.markdown("#### Filters")
    modalities = st.multiselect("Modality", [m for m in MODALITIES if m in set(index.modalities)])
    licences = st.multiselect("Licence", sorted(set(index.licences)))
    k = st.slider("Results", 4, 32, 12, step=4)

similar_to = st.session_state.get("similar_to")
if similar_to:
    st.subheader("More like this image")
    if st.button("Back to search"):
        del st.session_state["similar_to"]
        st.rerun()
    if similar_to in index:
        left, right = st.columns([1, 3])
        with left:
            show_record_image(index, similar_to)
        with right:
            record = index.records[index.row_of(similar_to)]
            st.markdown(f"**The image you started from** ({inert(record.modality)} · {inert(record.region)})")
            st.markdown(inert(record.caption, limit=400))
        st.markdown("**Nearest images in the corpus**")
    try:
        show_hits(more_like_this(index, similar_to, k), key="similar")
    except MirageError as error:
        st.error(inert(error))
    st.stop()

by_text, by_image = st.tabs(["Text query", "Image query"])
with by_text:
    preset = st.pills("Presets", PRESETS, key="preset")
    with st.form("text-search"):
        query = st.text_input("Describe what you want to see", value=preset or "",
                              placeholder="e.g. chest x-ray pneumothorax")
        if st.form_submit_button("Search", type="primary"):
            st.session_state["text_query"] = query
    if preset and preset != st.session_state.get("last_preset"):
        st.session_state["text_query"] = st.session_state["last_preset"] = preset
    if "text_query" in st.session_state:
        try:
            text = st.session_state["text_query"]
            hits = search_text(index, encoder, text, k, modalities=modalities, licences=licences)
            if show_verdict(assess(index, hits, text), key="text"):
                show_hits(hits, key="text")
        except MirageError as error:
            st.error(inert(error))

with by_image:
    uploaded = st.file_uploader("Upload a radiology image (PNG, JPEG or DICOM)", type=UPLOAD_TYPES)
    image = read_upload(uploaded)
    if image is not None:
        try:
            vector = as_unit_vector(encoder, image)  # one embedding serves both lists below
        except MirageError as error:
            st.error(inert(error))
            st.stop()
        left, right = st.columns([1, 3])
        left.image(image, caption="your image", width="stretch")
        with right:
            st.markdown("**Captions that describe it best** (written by the articles' authors)")
            for rank, hit in enumerate(index.search(vector, 5, target="captions"), 1):
                st.markdown(f"{rank}\\. {inert(hit.record.caption)}")
                st.caption(f"score {hit.ranking:.3f} · {inert(hit.record.id)}")
        st.markdown("**Similar images**")
        show_hits(index.search(vector, k, modalities=modalities, licences=licences), key="image")
