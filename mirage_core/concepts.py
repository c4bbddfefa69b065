"""Names for the UMLS concept codes (CUIs) of a corpus, derived from the corpus itself.

ROCO tags each caption with the CUIs its words matched (C0032326 …), but ships no names for them, and a bare
code teaches a student nothing. The name of a CUI here is the caption phrase (one to three words) most
associated with it: the phrase that appears in most of the captions tagged with the CUI (coverage) and rarely
in the others (precision), scored by coverage × precision. A CUI seen in fewer than `MIN_RECORDS` captions, or
without a phrase that clears both floors, gets no name and is never shown. Measured against UMLS's own names on
a hand-checked sample (`tests/fixtures/cui_names_checked.json`, see the README's model card).

`key_terms` says what one case shows in whole words of its caption — what the quiz's explanations and the
reports' key concepts name.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from .labels import FILLER_KEYWORDS, UNKNOWN, modalities_named, region_of, teaching_keywords
from .text import _TOKEN, stem

MIN_RECORDS = 4  # captions tagged with a CUI before it gets a name
MIN_SHARED = 3  # captions that must hold both the CUI and the phrase
MIN_COVERAGE = 0.4  # share of the CUI's captions that hold the phrase
MIN_PRECISION = 0.3  # share of the phrase's captions tagged with the CUI
_WORD = re.compile(r"[a-z][a-z0-9-]+")
_EDGE_WORDS = frozenset(
    "a an the of and or in on at to with without from by for is are was were be been this that these those there "
    "which who as into after before during showing shows shown demonstrating reveals revealing image images figure "
    "fig arrow arrows arrowhead arrowheads patient case left right".split())
FILLER = FILLER_KEYWORDS | {
    "fig", "figure", "first", "second", "third", "finding", "findings", "contact", "month", "months", "week", "weeks",
    "day", "days", "axial", "coronal", "sagittal", "transverse", "section", "sections", "sequence", "weighted",
    "imaging", "image", "images", "patient", "demonstrating", "demonstrates", "revealed", "reveals", "revealing",
    "showed", "follow-up", "postoperative", "preoperative", "after", "before", "with", "without", "within",
    "obtained", "performed", "taken", "examination", "study", "appearance", "diameter", "size", "measuring",
    "typical", "evidence", "suggestive", "consistent", "compatible", "multiple", "bilateral", "region", "regions",
    "transversal", "longitudinal", "oblique", "presence", "absence", "present", "noted", "compared", "extension",
    "extending", "involvement", "associated", "suggesting", "mild", "moderate", "severe", "marked", "prominent",
    "slight", "visible", "seen", "identified", "detected", "located", "measured", "shown", "indicated", "level",
    "levels", "view", "views", "plane", "planes", "slice", "slices", "scan", "scans", "film", "films", "panel",
    "panels", "arrow", "arrows", "arrowhead", "arrowheads", "asterisk", "circle", "star", "case", "cases",
    "year", "years", "old", "male", "female", "woman", "man", "child", "infant", "initial", "final", "later",
    "early", "late", "hours", "time", "times", "point", "points", "side", "sides", "part", "portion",
    "aspect", "area", "areas", "zone", "site", "sites", "pattern", "patterns", "feature", "features", "sign",
    "signs", "change", "changes", "status", "process", "structure", "structures", "tissue", "contrast", "enhanced",
    "enhancement", "injection", "phase", "window", "protocol", "technique", "reconstruction", "duplex",
    # a modality's own words, which modalities_named does not read on their own
    "computer", "computed", "tomography", "tomographic", "magnetic", "resonance", "radiograph", "radiographs",
    "radiography", "radiographic", "sonography", "sonographic", "ultrasonography", "scintigraphy", "soft", "hard",
}

_UNTEACHABLE = FILLER_KEYWORDS | {"month", "months", "day", "days", "week", "weeks", "section", "imaging"}


def caption_phrases(caption: str) -> set[str]:
    """The one- to three-word phrases of a caption that neither start nor end on a function word."""
    words = _WORD.findall(caption.lower())
    phrases = set()
    for n in (1, 2, 3):
        for i in range(len(words) - n + 1):
            gram = words[i:i + n]
            if gram[0] not in _EDGE_WORDS and gram[-1] not in _EDGE_WORDS and len(gram[0]) > 2:
                phrases.add(" ".join(gram))
    return phrases


def concept_names(records: Sequence) -> dict[str, str]:
    """CUI → the caption phrase that names it (records: anything with `caption` and `cuis`)."""
    phrases = [caption_phrases(record.caption) for record in records]
    phrase_count = Counter(phrase for found in phrases for phrase in found)
    tagged: dict[str, list[int]] = defaultdict(list)
    for row, record in enumerate(records):
        for cui in set(record.cuis):
            tagged[cui].append(row)
    names = {}
    for cui, rows in tagged.items():
        if len(rows) < MIN_RECORDS:
            continue
        shared = Counter(phrase for row in rows for phrase in phrases[row])
        best, best_key = None, None
        for phrase, both in shared.items():
            coverage, precision = both / len(rows), both / phrase_count[phrase]
            if both < MIN_SHARED or coverage < MIN_COVERAGE or precision < MIN_PRECISION:
                continue
            key = (coverage * precision, len(phrase.split()), phrase)  # ties: the longer, more specific phrase
            if best_key is None or key > best_key:
                best, best_key = phrase, key
        if best is not None and not set(best.split()) <= _UNTEACHABLE:
            names[cui] = best
    return names


def named(cuis: Iterable[str], names: dict[str, str]) -> list[str]:
    """The names of those CUIs that have one, in order, without repeats (never a bare code)."""
    seen: list[str] = []
    for cui in cuis:
        name = names.get(cui)
        if name and name not in seen:
            seen.append(name)
    return seen


def teaching_terms(record, names: dict[str, str], limit: int = 8) -> list[str]:
    """What a record is about, for a student: its teaching keywords, then the names of its CUIs that the
    keywords do not already say — words only, never a bare code."""
    terms = teaching_keywords(record.keywords, limit=limit)
    said = {term.lower() for term in terms}
    for name in named(record.cuis, names):
        if name not in said and len(terms) < limit:
            terms.append(name)
            said.add(name)
    return terms


# What a finding, a lesion, a device or a procedure is called: the endings and stems of radiology's vocabulary. A
# ROCO keyword is offered as a key term only when its caption word has one of them (the keyword files also hold
# "august", "somehow", "confirmation"), or names anatomy (`labels`); UMLS concept names are medical already.
_MEDICAL = re.compile(
    r"(itis|osis|oses|oma|omas|omata|emia|pathy|plasia|trophy|ectomy|otomy|ostomy|plasty|megaly|algia|cele|ectasis|"
    r"iasis|rrhage|rrhoea|rrhea|lithiasis|penia|sclerosis|necrosis|stenosis|ptosis|listhesis)$"
    r"|^(fractur|cyst|nodul|tumou?r|effusion|edema|oedema|thromb|embol|aneurysm|infarct|lesion|abscess|hernia|"
    r"dissect|calcif|metasta|pneumo|opacit|consolidat|atelecta|h(a)?emorrh|h(a)?ematoma|fistul|obstruct|dilat|"
    r"perforat|ruptur|dislocat|degenerat|infiltrat|stone|calcul|shunt|stent|catheter|pacemaker|prosthe|implant|"
    r"graft|screw|malform|anomal|atresia|agenesis|hypoplas|hypertroph|atroph|enlarg|thicken|narrow|occlu|ischem|"
    r"ischaem|inflamm|carcinom|sarcom|lymphom|leukem|glioma|cancer|malignan|neoplas|polyp|erosion|ulcer|varic|"
    r"vascul|arter|vein|venous|valv|lymph|gland|bronch|aort|cortex|cortical|medull|spinal|vertebr|ligament|tendon|"
    r"muscle|cartilag|menisc|bone|joint|sinus|ventric|atri|lung|liver|kidney|renal|hepat|spleen|splen|pancrea|"
    r"bowel|colon|gastr|esophag|oesophag|bladder|uter|ovar|prostat|thyroid|breast|brain|cerebr|skull|femor|femur|"
    r"tibia|humer|pelvi|knee)"
    r"|^(mass|masses|ribs?|hips?|discs?|tubes?|plates?|clips?|wires?|spurs?|lobes?|ducts?|nails?)$")


def _medical(word: str) -> bool:
    return bool(_MEDICAL.search(word)) or region_of(word) != UNKNOWN


def key_terms(caption: str, keywords, concept_names=(), limit: int = 3, anatomy: bool = False) -> tuple[str, ...]:
    """What the case shows, in whole words of its caption: each keyword as the caption word it stems from (ROCO's
    keyword files are stemmed: "kyphoscoliosi" is shown as "kyphoscoliosis" or not at all), then the UMLS concept
    names the caption itself says; no filler, no modality names, no region names unless `anatomy`, no repeats."""
    words = {}
    for token in _TOKEN.findall(caption):
        words.setdefault(stem(token.lower()), token.lower())
    found: list[str] = []
    candidates = [str(k) for k in keywords] + [str(n) for n in concept_names]
    for candidate in candidates:
        parts = candidate.lower().split()
        if len(parts) == 1:  # a ROCO keyword is a stem: the caption word that starts with it, or has its stem
            key = parts[0]
            word = words.get(stem(key)) or next((w for w in words.values() if len(key) > 3 and w.startswith(key)),
                                                None)
            if word and candidate in keywords and not _medical(word):
                continue
        else:  # a concept name of several words counts only as the caption says it
            word = candidate.lower() if re.search(r"\b" + re.escape(candidate.lower()) + r"\b", caption.lower()) \
                else None
        if not word or len(word) < 4 or word in found or set(word.split()) & FILLER:
            continue
        if modalities_named(word) or (not anatomy and region_of(word) != UNKNOWN and len(word.split()) == 1):
            continue
        found.append(word)
        if len(found) == limit:
            break
    return tuple(found)
