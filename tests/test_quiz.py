"""Quiz: generator properties over hundreds of questions, the FSRS schedule, the store, instructor packs."""

from __future__ import annotations

import csv
import io
import json
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from mirage_core.concepts import FILLER
from mirage_core.errors import MirageError
from mirage_core.index import Index
from mirage_core.labels import MODALITIES, REGIONS, UNKNOWN
from mirage_core.quiz import (
    KINDS,
    LETTERS,
    PRESENTER_STEPS,
    Card,
    PackError,
    Presentation,
    ProgressStore,
    QuestionGenerator,
    make_pack,
    parse_pack,
    read_pack,
    review,
    save_pack,
    validate,
    why_right,
    why_wrong,
)
from mirage_core.quiz.packs import dump_pack
from mirage_core.quiz.questions import NEAR_DUPLICATE, Option, Question

LABEL_NAMES = [*MODALITIES[:-1], *REGIONS[:-1]]
DIM = 64


def _label_vector(text: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """A vector with one direction per label word the text names, plus noise: embeddings with structure."""
    vector = np.zeros(DIM, dtype=np.float32)
    for i, name in enumerate(LABEL_NAMES):
        if name.lower() in text.lower():
            vector[i] = 1.0
    if rng is not None:
        vector += rng.normal(0, 0.4, DIM).astype(np.float32)
    return vector / max(float(np.linalg.norm(vector)), 1e-6)


class LabelEncoder:
    name, fingerprint, dim = "labels", "labels", DIM

    def encode_text(self, texts):
        return np.stack([_label_vector(t) for t in texts])


@pytest.fixture(scope="module")
def quiz_index(demo_corpus) -> Index:
    rng = np.random.default_rng(0)
    records = demo_corpus.records
    images = np.stack([_label_vector(f"{r.modality} {r.region}", rng) for r in records])
    captions = np.stack([_label_vector(f"{r.modality} {r.region}", rng) for r in records])
    return Index(images, captions, records, {"fingerprint": "labels", "encoder": "labels"})


@pytest.fixture(scope="module")
def generated(quiz_index):
    generator = QuestionGenerator(quiz_index, LabelEncoder(), seed=3)
    questions = [q for difficulty in ("easy", "medium", "hard")
                 for q in generator.questions(200, KINDS, difficulty)]
    return generator, questions


def test_every_generated_question_is_sound(generated, quiz_index):
    generator, questions = generated
    assert len(questions) == 600
    assert Counter(q.kind for q in questions) == {kind: 120 for kind in KINDS}
    for question in questions:
        assert validate(question) is None
        options = question.options
        assert len(options) == 4 and len({o.text for o in options}) == 4
        answer = question.correct
        for i, option in enumerate(options):
            if i == question.answer:
                continue
            if question.kind in ("modality", "region"):
                assert getattr(option, question.kind) != getattr(answer, question.kind)
            elif question.kind == "arithmetic":
                assert (option.modality, option.region) != (answer.modality, answer.region)
            else:  # a known label differs — or the findings do — and the distractor is no near-duplicate
                labels_differ = any(UNKNOWN not in (getattr(option, k), getattr(answer, k))
                                    and getattr(option, k) != getattr(answer, k) for k in ("modality", "region"))
                findings_differ = option.findings and answer.findings and not set(option.findings) & set(
                    answer.findings)
                assert labels_differ or findings_differ
                matrix = quiz_index.images if question.kind == "caption_to_image" else quiz_index.captions
                a, b = quiz_index.row_of(answer.record_id), quiz_index.row_of(option.record_id)
                assert float(matrix[a] @ matrix[b]) <= NEAR_DUPLICATE
                assert quiz_index.records[a].pmc_id != quiz_index.records[b].pmc_id
    assert 0 <= generator.rejected_share < 0.5
    for question in questions:  # the one-line summary the instructor's candidate list shows
        summary = question.summary(90)
        assert "\n" not in summary and len(summary) <= 90 and summary.startswith("Which")
        if question.kind == "caption_to_image":
            caption = quiz_index.records[quiz_index.row_of(question.subject_id)].caption
            assert " “" in summary and caption.split()[0] in summary
            assert question.prompt_parts == ("Which image does this caption describe?", caption)
        else:
            assert question.prompt_parts == (question.prompt, "")


def test_generation_is_deterministic_under_a_seed(quiz_index):
    first = QuestionGenerator(quiz_index, LabelEncoder(), seed=11).questions(40, KINDS, "hard")
    again = QuestionGenerator(quiz_index, LabelEncoder(), seed=11).questions(40, KINDS, "hard")
    other = QuestionGenerator(quiz_index, LabelEncoder(), seed=12).questions(40, KINDS, "hard")
    assert [q.to_dict() for q in first] == [q.to_dict() for q in again]
    assert [q.id for q in first] != [q.id for q in other]


def test_harder_questions_have_closer_distractors(quiz_index):
    def closeness(difficulty):
        make = QuestionGenerator(quiz_index, LabelEncoder(), seed=5)
        questions = make.questions(60, ["image_to_caption"], difficulty)
        values = []
        for q in questions:
            subject = quiz_index.images[quiz_index.row_of(q.subject_id)]
            values += [float(quiz_index.captions[quiz_index.row_of(o.record_id)] @ subject)
                       for i, o in enumerate(q.options) if i != q.answer]
        return np.mean(values)

    assert closeness("hard") > closeness("medium") > closeness("easy")


def test_topic_filters_subjects_and_bad_requests_are_clear(quiz_index):
    make = QuestionGenerator(quiz_index, LabelEncoder(), seed=1)
    questions = make.questions(20, list(KINDS), "medium", "modality:MRI")
    assert questions and all(q.kind != "modality" and q.topic == "modality:MRI" for q in questions)  # no giveaways
    assert all(quiz_index.records[quiz_index.row_of(q.subject_id)].modality == "MRI" for q in questions)
    assert any("same answer" in note for note in make.notes({}, 20, len(questions), "modality:MRI"))
    with pytest.raises(MirageError, match="same answer"):
        QuestionGenerator(quiz_index, seed=1).questions(5, ["modality"], topic="modality:MRI")
    with pytest.raises(MirageError, match="unknown topic"):
        QuestionGenerator(quiz_index, seed=1).questions(5, ["modality"], topic="modality:sonar")
    with pytest.raises(MirageError, match="unknown question type"):
        QuestionGenerator(quiz_index, seed=1).questions(5, ["essay"])
    with pytest.raises(MirageError, match="could be made"):
        QuestionGenerator(quiz_index, seed=1).questions(50, ["region"], topic="modality:mammography")
    few = QuestionGenerator(quiz_index, seed=1).questions(50, ["region"], topic="modality:mammography",
                                                          allow_fewer=True)
    assert 0 < len(few) < 50
    assert {quiz_index.records[quiz_index.row_of(q.subject_id)].modality for q in few} == {"mammography"}


def test_validate_rejects_unsound_questions():
    ct, mri = Option("CT", modality="CT"), Option("MRI", modality="MRI")
    xray, ct_again = Option("X-ray", modality="X-ray"), Option("CT ", modality="CT")
    assert validate(Question("modality", "?", (ct, mri, xray, ct_again), 0))
    assert validate(Question("modality", "?", (ct, mri), 0))
    assert validate(Question("modality", "?", (ct, mri, Option("a", modality="a"), Option("b", modality="b")), 7))
    captions = tuple(Option(f"c{i}", f"r{i}", "CT", "chest" if i == 0 else UNKNOWN) for i in range(4))
    assert "correct" in validate(Question("image_to_caption", "?", captions, 0))  # unknown labels cannot rule out


# -- spaced repetition ---------------------------------------------------------------------------------

def test_fsrs_intervals_grow_and_a_miss_comes_back_in_the_same_sitting():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    card, intervals = Card("c"), []
    for _ in range(5):
        card = review(card, True, False, now)
        intervals.append(card.interval_days)
        now = card.due  # answered each time it falls due
    assert intervals == sorted(intervals) and intervals[-1] > 3 * intervals[1] and card.repetitions == 5
    missed = review(card, False, False, now)
    assert missed.repetitions == 0 and missed.lapses == 1 and missed.due == now + timedelta(minutes=10)
    hinted, plain = review(Card("h"), True, True, now), review(Card("g"), True, False, now)
    assert hinted.due <= plain.due  # a right answer that needed the hint comes back no later
    first, second = (review(Card("c"), True, False, datetime(2026, 1, 1, tzinfo=UTC)) for _ in range(2))
    assert (first.due, first.interval_days) == (second.due, second.interval_days)  # no fuzz: deterministic


def test_an_sm2_history_is_replayed_into_fsrs():
    from mirage_core.quiz.schedule import replay

    start = datetime(2026, 2, 1, 9, tzinfo=UTC)
    history = [(start, True, False), (start + timedelta(days=1), False, False), (start + timedelta(days=1,
                                                                                                  minutes=11),
                                                                            True, True)]
    card = replay("k", history)
    assert (card.repetitions, card.lapses) == (1, 1) and card.due > history[-1][0] and card.memory


# -- the store -----------------------------------------------------------------------------------------

def test_store_records_schedules_exports_and_resets(tmp_path, generated):
    _, questions = generated
    store = ProgressStore(tmp_path / "progress.db")
    start = datetime(2026, 3, 1, 9, tzinfo=UTC)
    store.record_answer("Ana", questions[0], questions[0].answer, at=start)
    wrong = (questions[1].answer + 1) % 4
    store.record_answer("Ana", questions[1], wrong, used_hint=True, at=start)
    reopened = ProgressStore(tmp_path / "progress.db")
    answers = reopened.answers("Ana")
    assert [a.correct for a in answers] == [True, False]
    assert answers[1].question == questions[1]
    due = reopened.due_questions("Ana", at=start + timedelta(minutes=11))
    assert due == [questions[1]]  # the miss comes back in the same sitting, the right one tomorrow
    assert set(reopened.due_questions("Ana", at=start + timedelta(days=2))) == {questions[0], questions[1]}
    mastery = reopened.mastery("Ana")
    assert sum(row["answers"] for row in mastery) == 2
    text = reopened.export_csv("Ana", tmp_path / "ana.csv")
    assert (tmp_path / "ana.csv").read_text() == text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["correct"] for row in rows] == ["True", "False"] and rows[1]["used_hint"] == "True"
    assert reopened.reset("Ana") == 2 and reopened.answers("Ana") == []
    with pytest.raises(MirageError, match="nickname"):
        reopened.record_answer("", questions[0], 0)


WRITER = """
import sys
from mirage_core.quiz import ProgressStore, Question
from mirage_core.quiz.questions import Option
store = ProgressStore(sys.argv[1])
options = tuple(Option(m, modality=m) for m in ("CT", "MRI", "X-ray", "ultrasound"))
question = Question("modality", "?", options, 0, "ROCO_1")
i = 0
while True:
    store.record_answer("kill-test", question, i % 4)
    i += 1
    print(i, flush=True)
"""


def test_store_survives_a_process_killed_mid_write(tmp_path):
    database = tmp_path / "progress.db"
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER))
    process = subprocess.Popen([sys.executable, str(script), str(database)], stdout=subprocess.PIPE, text=True)
    acknowledged = 0
    deadline = time.time() + 60
    while acknowledged < 150 and time.time() < deadline:
        acknowledged = int(process.stdout.readline())
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert acknowledged >= 150
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    answers = ProgressStore(database).answers("kill-test")
    assert acknowledged <= len(answers) <= acknowledged + 2  # nothing acknowledged is lost
    assert [a.chosen for a in answers] == [i % 4 for i in range(len(answers))]


# -- packs ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_pack_round_trip(tmp_path, generated, quiz_index, suffix):
    _, questions = generated
    pack = make_pack(questions[:5], "Week 3: modalities", "Dr. Reyes", "roco-demo")
    path = save_pack(pack, tmp_path / f"week3{suffix}")
    header, loaded = read_pack(path, quiz_index)
    assert header["title"] == "Week 3: modalities" and loaded == questions[:5]


def _broken(questions, change):
    pack = json.loads(json.dumps(make_pack(questions[:2], "t")))
    change(pack)
    return json.dumps(pack).encode()


@pytest.mark.parametrize(("data", "message"), [
    (b"{not json", "not valid JSON or YAML"),
    (b"\xff\xfe\x00garbage", "not a text file"),
    (b"title: a quiz\n", "not a MIRAGE quiz pack"),
    (b'{"mirage_pack": 9, "questions": []}', "format 9"),
    (b'{"mirage_pack": 1, "questions": []}', "no questions"),
])
def test_malformed_packs_give_clear_errors(data, message):
    with pytest.raises(PackError, match=message):
        parse_pack(data, "broken.json")


@pytest.mark.parametrize(("change", "message"), [
    (lambda p: p["questions"][1].update(kind="essay"), "question 2: kind must be"),
    (lambda p: p["questions"][0].update(answer="B"), "question 1: answer must be"),
    (lambda p: p["questions"][0].update(answer=9), "question 1 is not sound"),
    (lambda p: p["questions"][0]["options"].pop(), "question 1 is not sound"),
    (lambda p: p["questions"][0].update(options="abcd"), "options must be a list"),
])
def test_broken_questions_are_named(generated, change, message):
    _, questions = generated
    with pytest.raises(PackError, match=message):
        parse_pack(_broken(questions, change), "pack.json")


def test_pack_with_images_missing_from_the_corpus(generated, quiz_index):
    _, questions = generated
    image_question = next(q for q in questions if q.kind == "caption_to_image")
    data = json.dumps(make_pack([image_question], "t")).replace(image_question.subject_id, "ROCO_99999").encode()
    with pytest.raises(PackError, match="ROCO_99999 is not in this corpus"):
        parse_pack(data, "pack.json", quiz_index)


def test_kinds_a_small_corpus_cannot_support_are_dropped(demo_corpus):
    records = [r for r in demo_corpus.records if r.modality == "CT"][:120]  # one modality: no modality question
    rng = np.random.default_rng(1)
    vectors = np.stack([_label_vector(f"{r.modality} {r.region}", rng) for r in records])
    generator = QuestionGenerator(Index(vectors, vectors, records, {}), LabelEncoder(), seed=0)
    questions = generator.questions(6, KINDS, "medium")
    assert "modality" in generator.dropped_kinds
    assert len(questions) == 6 and all(validate(q) is None for q in questions)
    assert not {q.kind for q in questions} & set(generator.dropped_kinds)


def test_no_hint_gives_the_answer_away(generated):
    from mirage_core.quiz.questions import hint_problem

    _, questions = generated
    assert questions and all(hint_problem(q) is None for q in questions)
    assert {q.kind for q in questions} == set(KINDS)


def test_a_hint_that_names_the_answer_is_unsound(generated):
    import dataclasses

    _, questions = generated
    question = next(q for q in questions if q.kind == "modality")
    leaky = dataclasses.replace(question, hint=f"it is {question.correct.text}, obviously")
    assert "hint names" in validate(leaky)


def test_a_topic_pack_holds_only_questions_of_that_topic(quiz_index):
    make = QuestionGenerator(quiz_index, LabelEncoder(), seed=4)
    questions = make.questions(12, KINDS, "medium", "modality:CT")
    assert len(questions) == 12 and {q.topic for q in questions} == {"modality:CT"}
    assert "modality" in make.dropped_kinds  # every modality question of a CT pack would answer "CT"
    assert all(quiz_index.records[quiz_index.row_of(q.subject_id)].modality == "CT" for q in questions)


def test_mastery_by_topic_names_topics_and_puts_the_weakest_first():
    from mirage_core.quiz.store import mastery_by_topic, topic_name, weakest_topics

    rows = [{"topic": "modality:CT", "day": "2026-12-01", "answers": 4, "accuracy": 0.75, "mastery": 0.75},
            {"topic": "region:chest", "day": "2026-12-01", "answers": 2, "accuracy": 0.0, "mastery": 0.0},
            {"topic": "modality:CT", "day": "2026-12-02", "answers": 4, "accuracy": 1.0, "mastery": 0.875},
            {"topic": "modality:MRI", "day": "2026-12-02", "answers": 3, "accuracy": 1.0, "mastery": 1.0}]
    topics = mastery_by_topic(rows)
    assert [m.name for m in topics] == ["chest (region)", "CT (modality)", "MRI (modality)"]
    assert (topics[0].share, topics[1].right, topics[1].answers) == (0.0, 7, 8)
    assert [m.topic for m in weakest_topics(rows)] == ["region:chest"]  # CT at 88 % is not weak
    assert topic_name("mixed") == "mixed"


def test_hard_distractors_share_modality_and_region_and_differ_in_the_finding(generated):
    _, questions = generated
    hard = [q for q in questions if q.difficulty == "hard" and q.kind in ("image_to_caption", "caption_to_image")]
    assert len(hard) >= 50
    for question in hard:
        answer = question.correct
        for option in question.options:
            if option is answer:
                continue
            assert (option.modality, option.region) == (answer.modality, answer.region)
            assert option.findings and answer.findings and not set(option.findings) & set(answer.findings)
        assert validate(question) is None


def test_findings_survive_a_pack_round_trip(generated):
    _, questions = generated
    hard = next(q for q in questions if q.difficulty == "hard" and q.kind == "image_to_caption")
    header, loaded = parse_pack(dump_pack(make_pack([hard], "t"), "json").encode(), "p.json")
    assert loaded[0].options == hard.options


def test_why_a_distractor_is_wrong_names_what_tells_it_apart(generated):
    _, questions = generated
    hard = next(q for q in questions if q.difficulty == "hard" and q.kind == "image_to_caption"
                and all(o.findings for o in q.options))
    wrong = next(i for i in range(len(hard.options)) if i != hard.answer)
    reason = why_wrong(hard, wrong)
    assert reason.startswith("Wrong: it is also ") and f"of the {hard.correct.region}" in reason
    assert hard.options[wrong].findings[0] in reason and why_wrong(hard, hard.answer) == ""
    assert why_right(hard).startswith("Right: ") and hard.correct.findings[0] in why_right(hard)
    label = next(q for q in questions if q.kind == "modality")
    other = (label.answer + 1) % len(label.options)
    assert why_wrong(label, other).startswith(f"Not {label.options[other].text}: ")
    assert label.correct.text in why_wrong(label, other) and "labelled" not in why_wrong(label, other)  # not circular
    easy = next(q for q in questions if q.difficulty == "easy" and q.kind == "caption_to_image"
                and any((o.modality, o.region) != (q.correct.modality, q.correct.region) for o in q.options))
    wrong = next(i for i, o in enumerate(easy.options) if (o.modality, o.region) != (easy.correct.modality,
                                                                                      easy.correct.region))
    assert why_wrong(easy, wrong).startswith("Wrong: this image belongs to ") and ", but the case is " in why_wrong(
        easy, wrong)


def test_every_option_explains_itself_in_whole_words(generated):
    generator, questions = generated
    index = generator.index
    for question in questions:
        for option in question.options:
            assert len(option.why.split()) >= 6  # a sentence, not a label
            for term in option.findings:  # a key term is a whole word (or phrase) of its own caption
                caption = index.records[index.row_of(option.record_id)].caption.lower()
                assert re.search(r"(?<![a-z])" + re.escape(term) + r"(?![a-z])", caption), (term, caption)
                assert term not in FILLER


def test_a_presentation_reveals_step_by_step_and_never_runs_off_its_ends(generated):
    _, questions = generated
    show = Presentation(questions[:2], "Week 1")
    assert [show.coming, show.shows("answer")] == ["answer", False]
    show.previous()  # at the first question: nothing to go back to
    assert (show.position, show.step) == (0, 0)
    seen = []
    while show.coming is not None:
        seen.append(show.coming)
        show.advance()
    assert seen == [*PRESENTER_STEPS[1:], "next question", *PRESENTER_STEPS[1:]]
    assert (show.position, show.fully_revealed) == (1, True)
    show.advance()  # the end: stays
    assert (show.position, show.step) == (1, len(PRESENTER_STEPS) - 1)
    show.previous()
    assert (show.position, show.step) == (0, 0)  # a question returns from its start
    with pytest.raises(MirageError, match="no questions"):
        Presentation([])


def test_the_quiz_flow_moves_between_screens_and_refusals_change_nothing(generated, tmp_path):
    """The page's state machine without Streamlit: practice → answer → feedback → next → finished → new, a review,
    a presentation and back; a store that refuses an answer leaves the question open."""
    from mirage_core.quiz import ProgressStore
    from mirage_core.quiz.flow import QuizFlow, Screen

    _, questions = generated
    store = ProgressStore(tmp_path / "progress.sqlite")
    flow = QuizFlow()
    with pytest.raises(MirageError):
        flow.name_learner("<script>")
    assert flow.learner == ""
    flow.name_learner("Ana")
    assert flow.screen is Screen.CHOOSING
    with pytest.raises(MirageError, match="no open question"):
        flow.answer("A", store)
    flow.start_practice(store, 2, lambda n: questions[:n])
    assert flow.screen is Screen.ANSWERING and len(flow.session.questions) == 2
    with pytest.raises(MirageError, match="choose an option"):
        flow.answer(None, store)
    with pytest.raises(MirageError, match="answer the question first"):
        flow.next()
    wrong = LETTERS[(questions[0].answer + 1) % 4]
    assert not flow.answer(wrong, store).correct and flow.screen is Screen.FEEDBACK
    flow.next()

    class Refusing:  # a store whose database just went away
        def record_answer(self, *args, **kwargs):
            raise MirageError("the progress database is unavailable; nothing was saved — try again in a moment")

    with pytest.raises(MirageError, match="nothing was saved"):
        flow.answer(LETTERS[questions[1].answer], Refusing())
    assert flow.screen is Screen.ANSWERING  # still open
    flow.answer(LETTERS[questions[1].answer], store)
    flow.next()
    assert flow.screen is Screen.FINISHED and flow.session.summary()["right"] == 1
    assert len(store.answers("Ana")) == 2
    flow.new_quiz()
    assert flow.screen is Screen.CHOOSING
    review = flow.review_state(store)
    assert review.due == [] and review.upcoming is not None and len(review.schedule) == 2
    assert [m.answers for m in flow.progress_state(store).by_topic] and flow.progress_state(store).days
    with pytest.raises(MirageError, match="nothing is due"):
        flow.start_review(store)
    flow.present(questions[:3], "Week 1")
    assert flow.screen is Screen.PRESENTING
    flow.leave_presenter()
    assert flow.screen is Screen.CHOOSING
