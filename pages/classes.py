"""Class: an instructor's classes — create one, assign a pack, and the class dashboard. Behind the instructor key;
students join a class on the Quiz page."""

from datetime import UTC, datetime, time

import streamlit as st

import app_classes as views
from app_shared import frame, get_instructor_gate, get_progress_store
from mirage_core.display import inert
from mirage_core.errors import MirageError
from mirage_core.quiz.classes import Classroom, show_code

encoder, index = frame()
st.title("Class")
if not views.signed_in(get_instructor_gate()):
    st.stop()
room = Classroom(get_progress_store())
overview, assign, board = st.tabs(["Classes", "Assign a pack", "Dashboard"], key="class-tab", on_change="rerun")


def overview_tab() -> None:
    with st.form("create-class"):
        name = st.text_input("New class name", max_chars=60)
        if st.form_submit_button("Create", type="primary"):
            info = room.create(name)
            st.success(f"Students join “{inert(info.name)}” on the Quiz page with the code")
            st.markdown(f"## {show_code(info.code)}")
    rows = [{"class": c.name, "join code": show_code(c.code), "students": c.members, "assignments": c.assignments}
            for c in room.classes()]
    if rows:
        st.dataframe(rows, hide_index=True, width="stretch")
    else:
        st.info("No classes yet.")
    st.caption(views.PRIVACY_NOTE)


def pick_class(key: str):
    classes = room.classes()
    if not classes:
        st.info("Create a class first.")
        return None
    return st.selectbox("Class", classes, key=key, format_func=lambda c: f"{c.name} ({show_code(c.code)})")


def assign_tab() -> None:
    if (chosen := pick_class("assign-class")) is None:
        return
    with st.form("assign-pack"):
        uploaded = st.file_uploader("Pack file (JSON or YAML, from the Quiz page's instructor packs)",
                                    type=["json", "yaml", "yml"])
        due = st.date_input("Due (optional)", value=None)
        if st.form_submit_button("Assign", type="primary") and uploaded is not None:
            moment = datetime.combine(due, time(23, 59), UTC) if due else None
            assignment = room.assign(chosen.code, uploaded.getvalue(), uploaded.name, index, moment)
            st.success(f"“{inert(assignment.title)}” ({len(assignment.questions)} questions) assigned.")


def board_tab() -> None:
    if (chosen := pick_class("board-class")) is None:
        return
    projector = st.toggle("Projector view (large type, no sidebar)", key="class-projector")
    report = room.report(chosen.code)
    with st.container(key="dashboard"):
        views.dashboard(report, projector)
    st.download_button("Download the class report (CSV)", report.to_csv(), f"mirage-class-{chosen.code}.csv",
                       "text/csv")


for tab, draw in zip((overview, assign, board), (overview_tab, assign_tab, board_tab)):
    with tab:
        try:
            draw()
        except MirageError as error:
            st.error(inert(error))
if st.sidebar.button("Sign out of the instructor area", icon=":material/logout:"):
    del st.session_state["instructor_token"]
    st.rerun()
