"""Reports: a grounded, cited summary of the nearest real cases; optionally a local LLM's version beside it."""

import streamlit as st

from app_shared import (
    UPLOAD_TYPES,
    dual_search_vector,
    frame,
    get_llm,
    read_upload,
    show_hits,
    show_record_image,
)
from mirage_core.config import load_settings
from mirage_core.display import inert
from mirage_core.errors import MirageError
from mirage_core.llm import Enrichment, enrich_report
from mirage_core.reports import enrich_query, grounded_report

encoder, index = frame()
settings = load_settings()
st.title("Reports")
st.caption("A structured educational summary composed only from retrieved real cases; every statement cites "
           "its sources. Not a diagnosis.")

source = st.radio("Report on", ["Text query", "Uploaded image", "Dual-search vector"], horizontal=True)
k = st.slider("Cases to ground the report in", 3, 16, 8)
query = None
if source == "Text query":
    with st.form("report-query"):
        text = st.text_input("Topic or question", placeholder="e.g. chest x-ray pneumothorax")
        if st.form_submit_button("Write the report", type="primary"):
            st.session_state["report_text"] = text
    query = st.session_state.get("report_text")
elif source == "Uploaded image":
    image = read_upload(st.file_uploader("Radiology image (PNG, JPEG or DICOM)", type=UPLOAD_TYPES))
    if image is not None:
        st.image(image, caption="your image", width=300)
        query = image
elif chosen := dual_search_vector():
    query = chosen[0]

if query is None:
    st.stop()
try:
    report = grounded_report(index, encoder, query, k=k)
except MirageError as error:
    st.error(inert(error))
    st.stop()

# The toggle is offered only where the deployment names a model worth asking (MIRAGE_LLM).
use_llm = bool(settings.llm) and st.toggle(f"Also ask a language model ({inert(settings.llm)}) to explain it",
                                           value=False)
enrichment: Enrichment | None = None
if use_llm and not report.nothing_found:
    try:
        with st.spinner("The language model is writing (a minute or so on a CPU)…"):
            enrichment = enrich_report(get_llm(settings.llm), report)
    except MirageError as error:
        st.error(inert(error))

grounded_column, llm_column = st.columns(2) if enrichment is not None else (st.container(), None)
with grounded_column:
    st.markdown("#### Grounded report")
    st.markdown(report.to_markdown(level=4, title=False, linked=True))
if llm_column is not None:
    with llm_column:
        st.markdown(f"#### :material/smart_toy: Written by a language model ({inert(enrichment.model)})")
        if enrichment.accepted:
            st.warning("Model-written text: it may be wrong. Check each claim against the numbered sources.",
                       icon=":material/smart_toy:")
            st.markdown(inert(enrichment.text))
            speed = enrichment.generation
            st.caption(f"{speed.new_tokens} tokens in {speed.seconds:.1f} s ({speed.tokens_per_s:.1f} tokens/s)")
        else:
            st.info(f"The model's text was not shown: {inert(enrichment.reason)}. The grounded report stands.")

markdown = report.to_markdown() + (enrichment.markdown_section() if enrichment is not None else "")
st.download_button("Download the report (Markdown)", markdown, "mirage-report.md", "text/markdown")

if report.sources:
    st.markdown("#### The cases, in ranking order")
    columns = st.columns(4)
    for source_case, column in zip(report.sources, columns * 4):
        with column:  # each [n] of the report links here
            st.subheader(f"\\[{source_case.number}\\] {inert(source_case.record_id)}", anchor=source_case.anchor)
            if source_case.flag:
                st.warning(f"{source_case.flag.capitalize()}, not a patient", icon=":material/pets:")
            show_record_image(index, source_case.record_id)

if source == "Text query":
    st.markdown("#### Query enrichment")
    st.caption("The query is expanded with related terms (from the language model when it is on, keeping only "
               "terms the corpus uses; else from the key concepts of the cases above) and searched again. "
               "“Before” is the list the report above is grounded in.")
    if st.button("Enrich the query and re-rank"):
        try:
            result = enrich_query(index, encoder, query, get_llm(settings.llm) if use_llm else None)
            st.markdown(f"Expansion ({'language model' if result.method == 'llm' else 'key concepts'}): "
                        f"**{inert(result.expansion) or 'none found'}**")
            before, after = st.columns(2)
            with before:
                st.markdown("**Before**")
                show_hits(result.before[:4], key="enrich-before", columns=2, more_like_this=False)
            with after:
                st.markdown("**After**")
                show_hits(result.after[:4], key="enrich-after", columns=2, more_like_this=False)
        except MirageError as error:
            st.error(inert(error))
