"""The Quiz page's views: a question with its options, the feedback after an answer, and the presenter's
projector screen. Drawing only: what happens when is `mirage_core.quiz.flow`."""

import plotly.express as px
import streamlit as st

from app_shared import DISCLAIMER, show_record_image, source_line
from mirage_core.display import inert
from mirage_core.errors import MirageError
from mirage_core.quiz import DIFFICULTIES, KINDS, LETTERS, Presentation, why_right, why_wrong
from mirage_core.quiz.flow import ProgressState
from mirage_core.quiz.packs import dump_pack, pack_filename
from mirage_core.quiz.questions import KIND_NAMES
from mirage_core.quiz.store import topic_name

ANSWER_MARK = " :green[:material/check_circle: **answer**]"  # an icon font: emoji draw as boxes on many PCs
PICK_MARK = " :red[:material/cancel: **your answer**]"
# Presenter mode fills a projector: no sidebar or toolbar, the full width, type readable from the back row.
PRESENTER_CSS = """<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stHeader"] {display: none;}
[data-testid="stMainBlockContainer"] {max-width: 100%; padding: 1rem 2.5rem 0;}
.st-key-presenter p, .st-key-presenter li {font-size: clamp(1.1rem, 3.2vh, 2rem); line-height: 1.25;}
.st-key-presenter blockquote p {font-size: clamp(1rem, 2.8vh, 1.7rem);}
.st-key-presenter h1 {font-size: clamp(1.2rem, 3.4vh, 2.2rem); padding: 0;}
.st-key-presenter h2 {font-size: clamp(1.4rem, 4.2vh, 2.8rem); padding: 0.2rem 0;}
.st-key-presenter img {max-height: 40vh; width: auto !important; max-width: 100%; object-fit: contain;}
.st-key-presenter [data-testid="stCaptionContainer"] p {font-size: 0.95rem;}
.st-key-presenter-controls {position: fixed; bottom: 0; left: 0; right: 0; z-index: 100; padding: 0.5rem 2.5rem;
  background: #0b0d10;}
[data-testid="stMainBlockContainer"] {padding-bottom: 5.5rem;}
</style>"""
REVIEW_NOTE = ("Missed questions return after 10 minutes; the ones you get right return later and later, as your "
               "memory of them grows (FSRS spaced repetition, the scheduler Anki uses).")
FORWARD_LABELS = {"answer": "Show the answer", "why the others are wrong": "Why the others are wrong",
                  "source": "Show the source", "next question": "Next question"}


def show_question(index, question, reveal: bool = False, chosen: int | None = None) -> None:
    """The question's prompt and subject, and its options (images in a row, texts lettered); revealed, the answer
    is marked, and so is the student's own pick when it was wrong."""
    asked, quoted = question.prompt_parts
    st.markdown(f"**{inert(asked)}**")
    if quoted:
        st.markdown(f"> {inert(quoted)}")
    if question.kind in ("image_to_caption", "modality", "region"):
        show_record_image(index, question.subject_id, width=380)
    marks = [ANSWER_MARK if reveal and i == question.answer else PICK_MARK if reveal and i == chosen else ""
             for i in range(len(question.options))]
    if question.options[0].record_id and question.kind in ("caption_to_image", "arithmetic"):
        columns = st.columns(len(question.options))
        for letter, option, mark, column in zip(LETTERS, question.options, marks, columns):
            with column:
                st.markdown(f"**{letter}**{mark}")
                show_record_image(index, option.record_id)
    else:
        for letter, option, mark in zip(LETTERS, question.options, marks):
            st.markdown(f"**{letter}.** {inert(option.text)}{mark}")


def explain(index, result) -> None:
    """Feedback: right or wrong, why the answer is right and why the pick was wrong, the true caption, the source."""
    question = result.question
    if result.correct:
        st.success(f"Right — {LETTERS[question.answer]}. {why_right(question)}")
    else:
        st.error(f"Not quite — you chose {LETTERS[result.chosen]}; the answer is {LETTERS[question.answer]}.")
        st.markdown(f"**Why {LETTERS[question.answer]} is right:** {inert(why_right(question))}")
    record = index.records[index.row_of(question.subject_id)] if question.subject_id else None
    if record is not None:
        st.markdown(f"**True caption** (by the article's authors): {inert(record.caption)}")
        terms = inert(", ".join(question.correct.findings)) if question.correct.record_id == record.id else ""
        st.markdown(f"**Labels:** {inert(record.modality)} · {inert(record.region)}"
                    + (f"  \n**Key terms:** {terms}" if terms else ""))
        st.markdown(f"**Source:** {source_line(record)}")
    if not result.correct:
        chosen = question.options[result.chosen]
        st.markdown(f"**Why {LETTERS[result.chosen]} (your answer) is wrong:** "
                    f"{inert(why_wrong(question, result.chosen))}")
        if chosen.record_id:
            other = index.records[index.row_of(chosen.record_id)]
            st.markdown(f"Its own caption reads: “{inert(other.caption)}” ({source_line(other)})")


def present(index, show: Presentation, leave) -> None:
    """The presenter: the page is the question, revealed step by step; arrow keys or a clicker drive it."""
    st.html(PRESENTER_CSS)
    question = show.current
    with st.container(key="presenter"):
        st.markdown(f"# {inert(show.title)} · {show.position + 1} / {len(show.questions)}")
        asked, quoted = question.prompt_parts
        st.markdown(f"## {inert(asked)}")
        if quoted:
            st.markdown(f"> {inert(quoted)}")
        marks = [ANSWER_MARK if show.shows("answer") and i == question.answer else "" for i in range(4)]
        # each distractor's reason sits under it, so the whole question stays on one projected screen
        reasons = [f":red[✗ {inert(why_wrong(question, i))}]"
                   if show.shows("why the others are wrong") and i != question.answer else ""
                   for i in range(len(question.options))]
        if question.options[0].record_id and question.kind in ("caption_to_image", "arithmetic"):
            for letter, option, mark, reason, column in zip(LETTERS, question.options, marks, reasons, st.columns(4)):
                with column:
                    st.markdown(f"## {letter}{mark}")
                    show_record_image(index, option.record_id)
                    if reason:
                        st.caption(reason)
        else:
            picture, options = st.columns([2, 3], gap="large")
            with picture:
                show_record_image(index, question.subject_id)
            with options:
                for letter, option, mark, reason in zip(LETTERS, question.options, marks, reasons):
                    st.markdown(f"**{letter}.** {inert(option.text, limit=140)}{mark}")
                    if reason:
                        st.caption(reason)
        if show.shows("source") and question.subject_id:
            record = index.records[index.row_of(question.subject_id)]
            st.markdown(f"**The case:** {inert(record.caption, limit=300)}")
            st.caption(f"Source: {source_line(record)}")
    controls = st.container(key="presenter-controls")  # kept on screen (sticky) whatever the question's length
    back, forward, close = controls.columns(3)
    if back.button("Previous question", icon=":material/arrow_back:", shortcut="ArrowLeft",
                   disabled=show.position == 0, width="stretch"):
        show.previous()
        st.rerun()
    if forward.button(FORWARD_LABELS.get(show.coming, "The end"), icon=":material/arrow_forward:", type="primary",
                      shortcut="ArrowRight", disabled=show.coming is None, key="present-forward", width="stretch"):
        show.advance()
        st.rerun()
    if close.button("Leave presenter mode", icon=":material/close:", shortcut="Escape", width="stretch"):
        leave()
        st.rerun()
    st.caption(f"← → (or a clicker) step through; Esc leaves. {DISCLAIMER}")


def choose_settings(key: str, topics: list[str]) -> tuple[str, str, list[str], object]:
    """Topic, difficulty and question types (inside a form), and the free third column for the caller's widget."""
    left, middle, right = st.columns(3)
    topic = left.selectbox("Topic", topics, key=f"{key}-topic", format_func=topic_name)
    difficulty = middle.select_slider("Difficulty", DIFFICULTIES, value="medium", key=f"{key}-difficulty")
    kinds = st.multiselect("Question types", KINDS, default=list(KINDS), format_func=KIND_NAMES.get,
                           key=f"{key}-kinds")
    return topic, difficulty, kinds, right


def show_notes(notes: list[str]) -> None:
    for note in notes:
        st.info(inert(note), icon=":material/info:")


def show_score(summary: dict) -> None:
    st.subheader(f"Score: {summary['right']} / {summary['answered']}")
    st.caption(f"{summary['hints']} hint(s) used. Missed questions come back in your reviews.")
    st.table([{"topic": t, "right": c.get("right", 0), "answered": c["answered"]}
              for t, c in summary["by_topic"].items()])


def mastery_figures(progress: ProgressState) -> list:
    """Mastery by topic (bars) and by day (lines); none before the first answer."""
    if not progress.days:
        return []
    by_topic = progress.by_topic
    bars = px.bar(x=[m.share for m in by_topic], y=[m.name for m in by_topic], orientation="h", range_x=[0, 1.05],
                  text=[f"{m.share:.0%} of {m.answers}" for m in by_topic], labels={"x": "share right", "y": ""},
                  title="Mastery by topic")
    bars.update_traces(textposition="outside", cliponaxis=False)
    days = [{**row, "topic": topic_name(row["topic"])} for row in progress.days]
    line = px.line(days, x="day", y="accuracy", color="topic", markers=True, range_y=[0, 1.05],
                   labels={"accuracy": "share right that day", "day": ""}, title="By day")
    return [bars.update_yaxes(automargin=True), line.update_xaxes(type="category")]  # whole days, not hours


def pack_downloads(pack: dict) -> bool:
    """The pack as JSON and YAML downloads; whether "Present these" was pressed."""
    title = pack["title"]
    left, middle, right = st.columns(3)
    left.download_button("Download JSON", dump_pack(pack, "json"), pack_filename(title, "json"), "application/json")
    middle.download_button("Download YAML", dump_pack(pack, "yaml"), pack_filename(title, "yaml"),
                           "application/yaml")
    return right.button("Present these", icon=":material/co_present:")


def offer_weakest(weakest: list):
    """The weakest topics, and the one to practise now if its button was pressed (else None)."""
    if not weakest:
        return None
    st.markdown("Your weakest topics: " + ", ".join(f"**{inert(m.name)}** ({m.share:.0%})" for m in weakest) + ".")
    pressed = st.button(f"Practise {weakest[0].name} now", type="primary", key="practise-weakest")
    return weakest[0] if pressed else None


def offer_reset(store, learner: str) -> None:
    with st.expander("Reset my progress"):
        sure = st.checkbox(f"Delete every answer of '{learner}' — this cannot be undone")
        if st.button("Reset", disabled=not sure):
            st.success(f"Deleted {store.reset(learner)} answers.")


def pick_candidates(index, candidates: list) -> list:
    """Each candidate question, revealed, with a box to keep it; the kept ones."""
    chosen = []
    for number, question in enumerate(candidates, 1):
        with st.expander(f"{number}. {KIND_NAMES[question.kind]} — {inert(topic_name(question.topic))} — "
                         f"{inert(question.summary())}"):
            show_question(index, question, reveal=True)
        if st.checkbox(f"Include question {number}", value=True, key=f"include-{question.id}"):
            chosen.append(question)
    return chosen


def learner_inputs(flow, room) -> None:
    """The nickname, and its PIN when the nickname belongs to a class member; the flow checks both."""
    left, right = st.columns([3, 1])
    nickname = left.text_input("Your nickname (progress is saved under it)", max_chars=40, key="learner_input",
                               value=flow.learner)
    pin = right.text_input("PIN", type="password", max_chars=7, key="learner_pin") \
        if flow.claimed(nickname, room) else ""
    try:
        flow.name_learner(nickname, pin, room)
    except MirageError as error:
        st.error(inert(error))
