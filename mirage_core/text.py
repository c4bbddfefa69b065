"""Words of a text, one way for every module: the word pattern, stems, and which words of a caption match.

Search, relevance, reports and the language-model checks all ask "which words does this text hold?"; they ask
it here, so that a caption word counts the same everywhere. Stems come from the Snowball English stemmer
(PyStemmer) after Greek and Latin plurals are folded — the stemmer `lexical` indexes captions with: "metastases"
and "metastasis" share a stem, and so do "fractured" and "fracture", "calculi" and "calculus".
"""

from __future__ import annotations

import functools
import re

WORD = re.compile(r"[a-z][a-z-]{2,}")  # a word of 3+ letters (hyphens inside: "x-ray"), lower case
_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9-]*")  # a caption's words, as written, for highlighting


def words(text: str) -> list[str]:
    """The text's words of three letters or more, lower case, in order (repeats kept)."""
    return WORD.findall(str(text).lower())


# Greek and Latin plurals that Snowball leaves apart from their singulars (metastases / metastasis, calculi /
# calculus, pneumothoraces / pneumothorax, vertebrae / vertebra): folded to the singular before stemming
_PLURALS = [(re.compile(r"(?<=.{3})ses$"), "sis"), (re.compile(r"(?<=.{3})aces$"), "ax"),
            (re.compile(r"(?<=.{3})ices$"), "ix"), (re.compile(r"(?<=.{3}[^aeiou])i$"), "us"),
            (re.compile(r"(?<=.{3})ae$"), "a"), (re.compile(r"(?<=.{3}om)ata$"), "a")]


class MedicalStemmer:
    """Snowball's English stemmer after folding Greek and Latin plurals; what `bm25s.tokenize` calls."""

    def __init__(self):
        import Stemmer

        self.snowball = Stemmer.Stemmer("english")

    @functools.lru_cache(maxsize=65536)  # noqa: B019 (one stemmer lives as long as the process)
    def stemWord(self, word: str) -> str:  # noqa: N802 (PyStemmer's name, which bm25s looks for)
        for pattern, singular in _PLURALS:
            word = pattern.sub(singular, word)
        return self.snowball.stemWord(word)

    def stemWords(self, words: list[str]) -> list[str]:  # noqa: N802
        return [self.stemWord(word) for word in words]


@functools.cache
def _stemmer() -> MedicalStemmer:
    return MedicalStemmer()


def stem(word: str) -> str:
    """The stem of one lower-case word (see `MedicalStemmer`)."""
    return _stemmer().stemWord(word)


def stems(text: str) -> set[str]:
    """The stems of the text's words (3+ letters; the hyphenated parts as well as the whole)."""
    found = set()
    for word in words(text):
        found.add(stem(word))
        found.update(stem(part) for part in word.split("-") if len(part) > 2)
    return found


def matching_words(text: str, wanted: set[str]) -> tuple[str, ...]:
    """The words of `text`, as written there and each once, whose stem is one of `wanted`."""
    seen: dict[str, None] = {}
    for token in _TOKEN.findall(str(text)):
        lowered = token.lower()
        if len(lowered) > 1 and (stem(lowered) in wanted or any(
                len(part) > 1 and stem(part) in wanted for part in lowered.split("-"))):
            seen.setdefault(token, None)
    return tuple(seen)
