"""Quiz: guided practice with feedback and hints, spaced review, progress charts, instructor packs, presenter mode.
The flow between screens is `mirage_core.quiz.flow.QuizFlow`; the views are `app_quiz`."""

import streamlit as st

import app_quiz as views
from app_classes import class_box
from app_shared import frame, get_progress_store
from mirage_core.display import inert
from mirage_core.errors import MirageError
from mirage_core.quiz import KINDS, LETTERS, make_pack, parse_pack
from mirage_core.quiz.classes import Classroom
from mirage_core.quiz.flow import QuizFlow, Screen, quiz_topics
from mirage_core.quiz.schedule import when_due

encoder, index = frame()
store = get_progress_store()
room = Classroom(store)
flow: QuizFlow = st.session_state.setdefault("quiz_flow", QuizFlow())


def make(n: int, kinds: list[str], difficulty: str, topic: str, seed: int | None = None):
    return flow.generate(index, encoder, n, kinds, difficulty, topic, seed)


def act(move, *arguments) -> None:
    """Make a move of the flow and draw the page again, or show why the move was refused (nothing changed)."""
    try:
        move(*arguments)
    except MirageError as error:
        st.error(inert(error))
    else:
        st.rerun()


def practice_tab() -> None:
    views.show_notes(flow.notes if flow.screen is not Screen.CHOOSING else [])
    if flow.screen is Screen.CHOOSING:
        if (started := class_box(room, flow.learner)) is not None:  # a class's open assignments come first
            act(flow.take, started.assignment.questions, started.assignment.title)
        with st.form("new-quiz"):
            topic, difficulty, kinds, right = views.choose_settings("quiz", quiz_topics(index.records))
            length = right.slider("Questions", 3, 30, 10, key="quiz-length")
            if st.form_submit_button("Start", type="primary"):
                act(flow.start_practice, store, length, lambda n: make(n, kinds, difficulty, topic))
        if not flow.learner:
            st.caption("Without a nickname your answers are not saved.")
        return
    session = flow.session
    if flow.screen is Screen.FINISHED:
        views.show_score(session.summary())
        if st.button("Start another quiz", type="primary"):
            act(flow.new_quiz)
        return
    st.progress(session.position / len(session.questions),
                text=f"{inert(session.title)} — question {session.position + 1} of {len(session.questions)}")
    result = session.answered_current
    views.show_question(index, session.current, reveal=result is not None, chosen=result.chosen if result else None)
    if flow.screen is Screen.FEEDBACK:
        views.explain(index, result)
        if st.button("Next question", type="primary"):
            act(flow.next)
        return
    if session.hint_shown:
        st.info(f"Hint: {inert(session.current.hint)}")
    elif st.button("Show a hint", key="hint"):
        act(flow.hint)
    with st.form(f"answer-{session.position}"):
        letters = list(LETTERS[: len(session.current.options)])
        choice = st.radio("Your answer", letters, index=None, horizontal=True, key=f"choice-{session.position}")
        if st.form_submit_button("Submit", type="primary"):
            act(flow.answer, choice, store)  # refused (e.g. the database is down): the question stays open


def review_tab() -> None:
    review = flow.review_state(store)
    st.metric("Questions due", len(review.due))
    if review.upcoming is not None:
        st.info(f"Next review {when_due(review.upcoming)}.")
    if review.due and st.button("Review them now", type="primary"):
        act(flow.start_review, store)
    if review.schedule:
        st.dataframe([{"question": question.summary(70), "returns": when_due(due)}
                      for question, due in review.schedule], hide_index=True, width="stretch")
    st.caption(views.REVIEW_NOTE)


def progress_tab() -> None:
    progress = flow.progress_state(store)
    if not progress.days:
        st.info("No answers yet: start a quiz.")
    if (weakest := views.offer_weakest(progress.weakest)) is not None:
        act(lambda: flow.take(make(10, list(KINDS), "medium", weakest.topic), f"Practice: {weakest.name}"))
    for figure in views.mastery_figures(progress):
        st.plotly_chart(figure, width="stretch")
    st.download_button("Download my answers (CSV)", store.export_csv(flow.learner), f"mirage-{flow.learner}.csv",
                       "text/csv")
    views.offer_reset(store, flow.learner)


def packs_tab() -> None:
    st.markdown("#### Build a pack")
    with st.form("build-pack"):
        topic, difficulty, kinds, right = views.choose_settings("pack", quiz_topics(index.records))
        seed = right.number_input("Seed", 0, 10**6, 0)
        candidates = st.slider("Candidates to choose from", 4, 40, 12)
        if st.form_submit_button("Generate candidates"):
            act(lambda: setattr(flow, "candidates", make(candidates, kinds, difficulty, topic, seed)))
    views.show_notes(flow.notes if flow.candidates else [])
    if chosen := views.pick_candidates(index, flow.candidates):
        title, author = st.text_input("Pack title", "Radiology quiz"), st.text_input("Author")
        if views.pack_downloads(make_pack(chosen, title, author, str(index.manifest.get("corpus", "")))):
            act(flow.present, chosen, title)
    st.markdown("#### Import a pack")
    uploaded = st.file_uploader("Pack file (JSON or YAML)", type=["json", "yaml", "yml"])
    try:
        if uploaded is not None:
            header, questions = parse_pack(uploaded.getvalue(), uploaded.name, index)
            st.success(f"“{inert(header['title'])}” by {inert(header['author'] or 'unknown')}: "
                       f"{len(questions)} questions.")
            left, right = st.columns(2)
            if left.button("Take this quiz", type="primary"):
                act(flow.take, questions, header["title"])
            if right.button("Present it", icon=":material/co_present:"):
                act(flow.present, questions, header["title"])
    except MirageError as error:
        st.error(inert(error))


if flow.screen is Screen.PRESENTING:
    views.present(index, flow.presentation, flow.leave_presenter)
    st.stop()

st.title("Quiz")
views.learner_inputs(flow, room)
tabs = st.tabs(["Practice", "Review", "Progress", "Instructor packs"], key="quiz-tab", on_change="rerun")
for tab, draw, needs_learner in zip(tabs, (practice_tab, review_tab, progress_tab, packs_tab),
                                    (None, "the questions due for review", "your progress", None)):
    with tab:
        if needs_learner and not flow.learner:
            st.info(f"Enter a nickname to see {needs_learner}.")
            continue
        try:
            draw()
        except MirageError as error:  # the progress store refused (a database down): this tab says so, the rest work
            st.error(inert(error))
