"""Guided quizzes: questions generated from the corpus, spaced repetition, progress, instructor packs.

- `questions`: the generator (hard negatives chosen with the encoder, every question validated by labels);
- `schedule`: SM-2 spaced repetition;
- `store`: learners' answers and cards (SQLAlchemy Core: SQLite or PostgreSQL);
- `packs`: fixed quizzes as JSON/YAML files;
- `session`: one sitting (position, answers, hints, score), and an instructor's step-by-step presentation.
"""

from .packs import PackError, make_pack, parse_pack, read_pack, save_pack
from .questions import DIFFICULTIES, KINDS, Option, Question, QuestionGenerator, validate, why_right, why_wrong
from .schedule import Card, rating, review
from .session import LETTERS, PRESENTER_STEPS, Presentation, QuizSession, Result
from .store import ProgressStore, check_learner

__all__ = [
    "DIFFICULTIES", "KINDS", "LETTERS", "PRESENTER_STEPS", "Card", "Option", "PackError", "Presentation",
    "ProgressStore", "Question", "QuestionGenerator", "QuizSession", "Result", "check_learner", "rating", "make_pack",
    "parse_pack", "read_pack", "review", "save_pack", "validate", "why_right", "why_wrong",
]
