"""The Class page's views and the Quiz page's class box: the dashboard's charts and tables (Plotly, in the
presenter's large type on a projector), the sign-in, and a student's join form and open assignments.
Drawing only: what a class holds is `mirage_core.quiz.classes`."""

import plotly.express as px
import streamlit as st

from mirage_core.display import inert
from mirage_core.errors import MirageError
from mirage_core.quiz.classes import AssignmentProgress, ClassReport, Classroom, InstructorGate, show_code

PRIVACY_NOTE = ("Only nicknames are stored — no names, e-mail addresses or passwords. Joining a class gives your "
                "nickname a PIN, so only you can open your answers; your instructor sees the class's figures.")
PROJECTOR_CSS = """<style>
[data-testid="stSidebar"], [data-testid="stHeader"] {display: none;}
[data-testid="stMainBlockContainer"] {max-width: 100%; padding: 1rem 2.5rem;}
.st-key-dashboard p, .st-key-dashboard li, .st-key-dashboard td {font-size: clamp(1.1rem, 3vh, 1.9rem);}
.st-key-dashboard h2, .st-key-dashboard h3 {font-size: clamp(1.4rem, 4vh, 2.6rem);}
</style>"""
KEY_HELP = ("The instructor area is off: this deployment has no instructor key. To turn it on, set "
            "`MIRAGE_INSTRUCTOR_KEY` in the server's environment, or on Streamlit Community Cloud add "
            "`MIRAGE_INSTRUCTOR_KEY = \"…\"` under the app's Settings → Secrets, and restart the app. Share the key "
            "only with instructors.")


def signed_in(gate: InstructorGate) -> bool:
    """Whether this session holds the instructor key; if not, the sign-in form (or why there is none)."""
    if not gate.enabled:
        st.info(KEY_HELP, icon=":material/lock:")
        return False
    if gate.admits(st.session_state.get("instructor_token")):
        return True
    with st.form("instructor-sign-in"):
        attempt = st.text_input("Instructor key", type="password")
        if st.form_submit_button("Sign in", type="primary"):
            token = gate.sign_in(attempt)
            if token:
                st.session_state["instructor_token"] = token
                st.rerun()
            st.error("That is not the instructor key.")
    st.caption("Students: join your class on the Quiz page with the code your instructor gives you.")
    return False


def dashboard(report: ClassReport, projector: bool) -> None:
    """Mastery per topic and question kind, participation, completion, and the most missed questions."""
    if projector:
        st.html(PROJECTOR_CSS)
    size = 22 if projector else 13
    st.subheader(f"{inert(report.info.name)} · {show_code(report.info.code)} · {len(report.members)} students")
    if not report.days:
        st.info("No answers from this class yet.")
    left, right = st.columns(2)
    if report.topics:
        topics = sorted(report.topics, key=lambda row: row["share"], reverse=True)
        figure = px.bar(topics, x="share", y="name", color="dimension", orientation="h", range_x=[0, 1.05],
                        text=[f"{row['share']:.0%} of {row['answers']}" for row in topics],
                        labels={"share": "share right", "name": "", "dimension": ""}, title="Mastery")
        left.plotly_chart(figure.update_layout(font_size=size), width="stretch")
    if report.days:
        figure = px.bar(report.days, x="day", y="answers", hover_data=["students"], title="Participation",
                        labels={"day": "", "answers": "answers"})
        right.plotly_chart(figure.update_xaxes(type="category").update_layout(font_size=size), width="stretch")
    if report.completion:
        rows = [{"assignment": row["title"], "due": row["due"] or "—", "done": f"{row['done']} / {row['members']}",
                 "started": row["started"]} for row in report.completion]
        st.markdown("### Assignments")
        st.dataframe(rows, hide_index=True, width="stretch")
    if report.missed:
        st.markdown("### Most missed")
    for missed in report.missed:
        st.markdown(f"**{inert(missed.question.summary(140))}** — {missed.wrong} of {missed.answers} wrong")
        for text, chosen, why in missed.distractors:
            st.markdown(f"- {inert(text, limit=120)} — chosen {chosen}×: {inert(why)}")


def class_box(room: Classroom, learner: str) -> AssignmentProgress | None:
    """A student's classes: the join form, then each open assignment with a Start button; the one started."""
    if not learner:
        return None
    with st.expander("My class", icon=":material/groups:"):
        with st.form("join-class"):
            code = st.text_input("Join code from your instructor", max_chars=9, placeholder="ABCD-EFGH")
            if st.form_submit_button("Join"):
                try:
                    pin = room.join(code, learner, st.session_state.get("learner_pin", ""))
                    if pin:  # this session keeps the nickname open; the student keeps the PIN for the next
                        st.session_state["learner_pin"] = pin
                    st.success(f"You joined: your PIN is **{pin}** — write it down; it opens your nickname from now "
                               "on." if pin else "You are in this class.")
                except MirageError as error:
                    st.error(inert(error))
        st.caption(PRIVACY_NOTE)
    chosen = None
    for number, progress in enumerate(room.open_assignments(learner)):
        assignment = progress.assignment
        due = f", due {assignment.due.date().isoformat()}" if assignment.due else ""
        left, right = st.columns([4, 1])
        left.markdown(f":material/assignment: **{inert(assignment.title)}** — {progress.answered} of "
                      f"{len(assignment.questions)} answered{due}")
        if right.button("Start it", key=f"assignment-{number}", type="primary"):
            chosen = progress
    return chosen
