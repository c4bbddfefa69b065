"""MIRAGE dashboard: the navigation. Each page in `pages/` draws the shared frame itself (`app_shared.frame`,
which also draws the page links), so that a page is whole however Streamlit reaches it — through this
navigation, or through Streamlit's own `pages/` runner, which serves a deep link such as /retrieval when it is
the first request after a start, before this script has run."""

import streamlit as st

from app_shared import PAGES

st.navigation([st.Page(path, title=title, icon=icon, default=path == PAGES[0][0]) for path, title, icon in PAGES],
              position="hidden").run()
