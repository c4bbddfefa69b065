"""The relevance test's two error rates: false alarms on held-out captions used as queries (their own article
left out of the index, so each is a query the corpus can answer but has never seen), and hits on off-topic
queries (nonsense and everyday topics that no radiology figure is about)."""

from __future__ import annotations

import dataclasses

from . import BenchResult

OFF_TOPIC = [
    "qwxz blorf zzzk fnord", "asdf jkl qwerty uiop", "zxcv bnm lorem ipsum", "glorp snarf wibble",
    "welding a steel pipe", "helicopter landing on a ship", "sea lions resting on a beach", "chocolate cake recipe",
    "stock market crash of 2008", "football match highlights", "jazz saxophone solo", "mountain bike trail",
    "medieval castle architecture", "how to knit a scarf", "tropical fish aquarium", "vintage car restoration",
    "electric guitar amplifier", "sunset over the ocean", "wedding dress fashion", "coffee bean roasting",
    "space shuttle launch", "chess opening strategy", "ballet dancers on stage", "volcano eruption lava",
    "tax return deadline", "pizza oven temperature", "smartphone battery life", "ancient egyptian pyramids",
    "snowboarding in the alps", "bird migration patterns",
]

# Written after the words rule was chosen on OFF_TOPIC, and measured once: the rule's honest hit rate
OFF_TOPIC_FRESH = [
    "train timetable to berlin", "best hiking boots for winter", "recipe for lemon tart", "how do bees make honey",
    "formula one pit stop", "origami paper crane", "renaissance oil painting", "learn spanish verbs",
    "vegetable garden in spring", "hot air balloon festival", "wind turbine blades", "skateboard tricks",
    "surfing big waves in hawaii", "piano sonata by mozart", "grocery shopping list", "camping tent setup",
    "kitten playing with yarn", "solar eclipse photography", "cryptocurrency wallet", "pottery wheel clay",
]


@dataclasses.dataclass
class RelevanceResult(BenchResult):
    heldout_queries: int
    false_alarm_rate: float
    false_alarms_weak: int
    false_alarms_off_topic: int
    off_topic_queries: int
    off_topic_hit_rate: float
    off_topic_by_words: int
    off_topic_by_score: int
    fresh_off_topic_queries: int
    fresh_off_topic_hit_rate: float
    floor: float

    def describe(self) -> str:
        return (f"held-out captions as queries: {100 * self.false_alarm_rate:.1f} % flagged (false alarms; "
                f"{self.false_alarms_weak} weak, {self.false_alarms_off_topic} off-topic) of {self.heldout_queries}\n"
                f"off-topic queries: {100 * self.off_topic_hit_rate:.1f} % flagged of {self.off_topic_queries} "
                f"({self.off_topic_by_words} by their words, {self.off_topic_by_score} by score); on a fresh list "
                f"written after the rule was set: {100 * self.fresh_off_topic_hit_rate:.1f} % of "
                f"{self.fresh_off_topic_queries}; floor {self.floor:.3f}")


def bench_relevance(index, encoder, n: int = 300) -> RelevanceResult:
    from ..query import MAX_QUERY_CHARS
    from ..relevance import assess, floor_of
    from ..search import search_text
    from ..splits import split_records

    _, heldout = split_records(index.records)
    cases = heldout[:n]
    weak = off = 0
    for record in cases:
        own = [i for i, other in enumerate(index.records) if other.pmc_id == record.pmc_id]
        query = record.caption[:MAX_QUERY_CHARS]
        hits = search_text(index, encoder, query, 10, exclude=own)  # the Retrieval page's own search
        verdict = assess(index, hits, query)
        weak += verdict.level == "weak"
        off += verdict.level == "off_topic"
    by_words = by_score = 0
    for query in OFF_TOPIC:
        verdict = assess(index, search_text(index, encoder, query, 10), query)
        by_words += verdict.level == "off_topic"
        by_score += verdict.level == "weak"
    fresh = sum(not assess(index, search_text(index, encoder, query, 10), query).relevant for query in OFF_TOPIC_FRESH)
    return RelevanceResult(
        heldout_queries=len(cases), false_alarm_rate=round((weak + off) / max(len(cases), 1), 4),
        false_alarms_weak=weak, false_alarms_off_topic=off, off_topic_queries=len(OFF_TOPIC),
        off_topic_hit_rate=round((by_words + by_score) / len(OFF_TOPIC), 4), off_topic_by_words=by_words,
        off_topic_by_score=by_score, fresh_off_topic_queries=len(OFF_TOPIC_FRESH),
        fresh_off_topic_hit_rate=round(fresh / len(OFF_TOPIC_FRESH), 4), floor=round(floor_of(index), 4))
