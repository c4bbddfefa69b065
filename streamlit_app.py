"""MIRAGE dashboard: navigation, the sidebar every page shares, and the first-start index build."""

from pathlib import Path

import streamlit as st

from app_shared import DISCLAIMER, ensure_index
from mirage_core.display import inert
from mirage_core.errors import MirageError

st.set_page_config(page_title="MIRAGE", page_icon=":material/radiology:", layout="wide")

pages = st.navigation([
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/retrieval.py", title="Retrieval", icon=":material/image_search:"),
    st.Page("app_pages/dual_search.py", title="Dual search", icon=":material/calculate:"),
    st.Page("app_pages/quiz.py", title="Quiz", icon=":material/school:"),
    st.Page("app_pages/generation.py", title="Generation", icon=":material/palette:"),
    st.Page("app_pages/reports.py", title="Reports", icon=":material/description:"),
])

try:
    encoder, index = ensure_index()
except MirageError as error:
    st.error(f"MIRAGE cannot start: {inert(error)}")
    st.stop()

with st.sidebar:
    st.markdown("### MIRAGE")
    corpus = "/".join(Path(index.manifest.get("corpus", "?")).parts[-3:])
    st.caption(f"Encoder: `{encoder.name}`  \nCorpus: `…/{corpus}` · {len(index):,} images")
    st.warning(DISCLAIMER, icon=":material/warning:")

pages.run()
