"""Quiz: guided practice with feedback and hints, spaced review, progress charts, instructor packs, presenter mode."""

import random

import plotly.express as px
import streamlit as st

from app_shared import DISCLAIMER, frame, get_progress_store, show_record_image, source_line
from mirage_core.display import inert
from mirage_core.errors import MirageError
from mirage_core.labels import MODALITIES, REGIONS, UNKNOWN
from mirage_core.quiz import (
    DIFFICULTIES,
    KINDS,
    LETTERS,
    Presentation,
    QuestionGenerator,
    QuizSession,
    check_learner,
    make_pack,
    parse_pack,
    why_right,
    why_wrong,
)
from mirage_core.quiz.packs import dump_pack, pack_filename
from mirage_core.quiz.schedule import when_due
from mirage_core.quiz.store import mastery_by_topic, topic_name, weakest_topics

KIND_NAMES = {"image_to_caption": "Image → caption", "caption_to_image": "Caption → image", "modality": "Modality",
              "region": "Body region", "arithmetic": "Latent arithmetic"}
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
FORWARD_LABELS = {"answer": "Show the answer", "why the others are wrong": "Why the others are wrong",
                  "source": "Show the source", "next question": "Next question"}

encoder, index = frame()
store = get_progress_store()


def topics() -> list[str]:
    present_modalities = {r.modality for r in index.records}
    present_regions = {r.region for r in index.records}
    return (["mixed"] + [f"modality:{m}" for m in MODALITIES if m in present_modalities and m != UNKNOWN]
            + [f"region:{r}" for r in REGIONS if r in present_regions and r != UNKNOWN])


def generate(n: int, kinds: list[str], difficulty: str, topic: str, seed: int | None = None):
    """Questions, and what could not be made is said on the page (kept until the next quiz), not in a toast."""
    generator = QuestionGenerator(index, encoder, seed=random.randrange(2**31) if seed is None else seed)
    questions = generator.questions(n, kinds, difficulty, topic, allow_fewer=True)
    st.session_state["quiz_notes"] = generator.notes(KIND_NAMES, n, len(questions), topic)
    return questions


def show_notes() -> None:
    for note in st.session_state.get("quiz_notes", []):
        st.info(inert(note), icon=":material/info:")


def show_question(question, reveal: bool = False, chosen: int | None = None) -> None:
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


def explain(result) -> None:
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


def present(show: Presentation) -> None:
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
    back, forward, leave = controls.columns(3)
    if back.button("Previous question", icon=":material/arrow_back:", shortcut="ArrowLeft",
                   disabled=show.position == 0, width="stretch"):
        show.previous()
        st.rerun()
    if forward.button(FORWARD_LABELS.get(show.coming, "The end"), icon=":material/arrow_forward:", type="primary",
                      shortcut="ArrowRight", disabled=show.coming is None, key="present-forward", width="stretch"):
        show.advance()
        st.rerun()
    if leave.button("Leave presenter mode", icon=":material/close:", shortcut="Escape", width="stretch"):
        del st.session_state["presenter"]
        st.rerun()
    st.caption(f"← → (or a clicker) step through; Esc leaves. {DISCLAIMER}")


def run_quiz(session: QuizSession) -> None:
    if session.finished:
        summary = session.summary()
        st.subheader(f"Score: {summary['right']} / {summary['answered']}")
        st.caption(f"{summary['hints']} hint(s) used. Missed questions come back in your reviews.")
        st.table([{"topic": t, "right": c.get("right", 0), "answered": c["answered"]}
                  for t, c in summary["by_topic"].items()])
        if st.button("Start another quiz", type="primary"):
            del st.session_state["quiz"]
            st.rerun()
        return
    question = session.current
    st.progress(session.position / len(session.questions),
                text=f"{inert(session.title)} — question {session.position + 1} of {len(session.questions)}")
    result = session.answered_current
    show_question(question, reveal=result is not None, chosen=result.chosen if result is not None else None)
    if result is None:
        if session.hint_shown:
            st.info(f"Hint: {inert(question.hint)}")
        elif st.button("Show a hint", key="hint"):
            session.hint()
            st.rerun()
        with st.form(f"answer-{session.position}"):
            choice = st.radio("Your answer", list(LETTERS[: len(question.options)]), index=None, horizontal=True,
                              key=f"choice-{session.position}")
            if st.form_submit_button("Submit", type="primary"):
                if choice is None:
                    st.warning("Choose an option first.")
                else:
                    try:
                        session.answer(LETTERS.index(choice), store)
                    except MirageError as error:
                        st.error(inert(error))
                    st.rerun()
    else:
        explain(result)
        if st.button("Next question", type="primary"):
            session.advance()
            st.rerun()


if (show := st.session_state.get("presenter")) is not None:
    present(show)
    st.stop()

st.title("Quiz")
learner = st.text_input("Your nickname (progress is saved under it; no password)", max_chars=40, key="learner_input",
                        value=st.session_state.get("learner", ""))
try:
    learner = check_learner(learner) if learner.strip() else ""
except MirageError as error:
    st.error(inert(error))
    learner = ""
st.session_state["learner"] = learner

practice, review, progress, instructor = st.tabs(
    ["Practice", "Review", "Progress", "Instructor packs"], key="quiz-tab", on_change="rerun")  # kept over reruns

with practice:
    session = st.session_state.get("quiz")
    if session is None:
        with st.form("new-quiz"):
            left, middle, right = st.columns(3)
            topic = left.selectbox("Topic", topics(), key="quiz-topic", format_func=topic_name)
            difficulty = middle.select_slider("Difficulty", DIFFICULTIES, value="medium", key="quiz-difficulty")
            length = right.slider("Questions", 3, 30, 10, key="quiz-length")
            kinds = st.multiselect("Question types", KINDS, default=list(KINDS), format_func=KIND_NAMES.get,
                                   key="quiz-kinds")
            start = st.form_submit_button("Start", type="primary")
        if start:
            try:
                due = store.due_questions(learner, limit=length // 2) if learner else []
                fresh = generate(length - len(due), kinds, difficulty, topic) if length > len(due) else []
                st.session_state["quiz"] = QuizSession(due + fresh, learner, "Practice")
                st.rerun()
            except MirageError as error:
                st.error(inert(error))
        if not learner:
            st.caption("Without a nickname your answers are not saved.")
    else:
        show_notes()
        run_quiz(session)

with review:
    if not learner:
        st.info("Enter a nickname to see the questions due for review.")
    else:
        due = store.due_questions(learner)
        st.metric("Questions due", len(due))
        if not due and (upcoming := store.next_due(learner)) is not None:
            st.info(f"Next review {when_due(upcoming)}.")
        if due and st.button("Review them now", type="primary"):
            st.session_state["quiz"] = QuizSession(due, learner, "Review")
            st.rerun()
        schedule = store.schedule(learner)
        if schedule:
            st.dataframe([{"question": question.summary(70), "returns": when_due(due)} for question, due in schedule],
                         hide_index=True, width="stretch")
        st.caption("Missed questions return after 10 minutes; the ones you get right return later and later, as "
                   "your memory of them grows (FSRS spaced repetition, the scheduler Anki uses).")

with progress:
    if not learner:
        st.info("Enter a nickname to see your progress.")
    else:
        rows = store.mastery(learner)
        if not rows:
            st.info("No answers yet: start a quiz.")
        else:
            by_topic = mastery_by_topic(rows)
            weakest = weakest_topics(rows)
            if weakest:
                names = ", ".join(f"**{inert(m.name)}** ({m.share:.0%})" for m in weakest)
                st.markdown(f"Your weakest topics: {names}.")
                if st.button(f"Practise {weakest[0].name} now", type="primary", key="practise-weakest"):
                    try:
                        questions = generate(10, list(KINDS), "medium", weakest[0].topic)
                        st.session_state["quiz"] = QuizSession(questions, learner, f"Practice: {weakest[0].name}")
                        st.rerun()
                    except MirageError as error:
                        st.error(inert(error))
            bars = px.bar(x=[m.share for m in by_topic], y=[m.name for m in by_topic], orientation="h",
                          text=[f"{m.share:.0%} of {m.answers}" for m in by_topic], range_x=[0, 1.05],
                          labels={"x": "share right", "y": ""}, title="Mastery by topic")
            bars.update_traces(textposition="outside", cliponaxis=False)
            bars.update_yaxes(automargin=True)
            st.plotly_chart(bars, width="stretch")
            days = [{**row, "topic": topic_name(row["topic"])} for row in rows]
            line = px.line(days, x="day", y="accuracy", color="topic", markers=True, range_y=[0, 1.05],
                           labels={"accuracy": "share right that day", "day": ""}, title="By day")
            line.update_xaxes(type="category")  # whole days, never a time of day
            st.plotly_chart(line, width="stretch")
        st.download_button("Download my answers (CSV)", store.export_csv(learner), f"mirage-{learner}.csv",
                           "text/csv")
        with st.expander("Reset my progress"):
            sure = st.checkbox(f"Delete every answer of '{learner}' — this cannot be undone")
            if st.button("Reset", disabled=not sure):
                st.success(f"Deleted {store.reset(learner)} answers.")

with instructor:
    st.markdown("#### Build a pack")
    with st.form("build-pack"):
        left, middle, right = st.columns(3)
        pack_topic = left.selectbox("Topic", topics(), key="pack-topic", format_func=topic_name)
        pack_difficulty = middle.select_slider("Difficulty", DIFFICULTIES, value="medium", key="pack-difficulty")
        seed = right.number_input("Seed", 0, 10**6, 0)
        pack_kinds = st.multiselect("Question types", KINDS, default=list(KINDS), format_func=KIND_NAMES.get,
                                    key="pack-kinds")
        candidates = st.slider("Candidates to choose from", 4, 40, 12)
        if st.form_submit_button("Generate candidates"):
            try:
                st.session_state["pack_candidates"] = generate(
                    candidates, pack_kinds, pack_difficulty, pack_topic, seed)
            except MirageError as error:
                st.error(inert(error))
    if st.session_state.get("pack_candidates"):
        show_notes()
    chosen = []
    for number, question in enumerate(st.session_state.get("pack_candidates", []), 1):
        with st.expander(f"{number}. {KIND_NAMES[question.kind]} — {inert(topic_name(question.topic))} — "
                         f"{inert(question.summary())}"):
            show_question(question, reveal=True)
        if st.checkbox(f"Include question {number}", value=True, key=f"include-{question.id}"):
            chosen.append(question)
    if chosen:
        title = st.text_input("Pack title", "Radiology quiz")
        author = st.text_input("Author")
        pack = make_pack(chosen, title, author, str(index.manifest.get("corpus", "")))
        left, middle, right = st.columns(3)
        left.download_button("Download JSON", dump_pack(pack, "json"), pack_filename(title, "json"),
                             "application/json")
        middle.download_button("Download YAML", dump_pack(pack, "yaml"), pack_filename(title, "yaml"),
                               "application/yaml")
        if right.button("Present these", icon=":material/co_present:"):
            st.session_state["presenter"] = Presentation(chosen, title)
            st.rerun()
    st.markdown("#### Import a pack")
    uploaded = st.file_uploader("Pack file (JSON or YAML)", type=["json", "yaml", "yml"])
    if uploaded is not None:
        try:
            header, questions = parse_pack(uploaded.getvalue(), uploaded.name, index)
            st.success(f"“{inert(header['title'])}” by {inert(header['author'] or 'unknown')}: "
                       f"{len(questions)} questions.")
            left, right = st.columns(2)
            if left.button("Take this quiz", type="primary"):
                st.session_state["quiz"] = QuizSession(questions, learner, header["title"])
                st.rerun()
            if right.button("Present it", icon=":material/co_present:"):
                st.session_state["presenter"] = Presentation(questions, header["title"])
                st.rerun()
        except MirageError as error:
            st.error(inert(error))
