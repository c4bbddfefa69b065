"""Why each option of a question is right or wrong, in sentences a student can learn from.

A question's options differ by modality, body region or finding; each explanation names what tells this option
apart from the answer, in whole words: the caption's own words for the finding (ROCO's keyword files are
stemmed — "kyphoscoliosi" — so each keyword is shown as the caption word it was cut from, or not at all) and
short descriptions of what a modality looks like and what a region holds. Filler ("fig", "first", "month") and
the modality's or region's own name are never offered as a finding. Offline and deterministic: made from the
corpus, never from a language model.
"""

from __future__ import annotations

from ..labels import UNKNOWN

MODALITY_TRAITS = {
    "X-ray": "a projection radiograph, where everything the beam crossed overlaps in one picture",
    "CT": "cross-sectional slices computed from X-rays, with bone bright white and soft tissue in shades of grey",
    "MRI": "cross-sectional images whose contrast depends on the sequence, with dark cortical bone and fine "
           "soft-tissue detail",
    "ultrasound": "a fan-shaped, speckled sector image made with sound waves",
    "angiography": "vessels filled with contrast agent, often against a subtracted background",
    "fluoroscopy": "real-time X-ray images, usually of contrast agent in a hollow organ",
    "nuclear/PET": "a map of tracer uptake, where active tissue lights up as bright spots",
    "mammography": "a low-dose, compressed X-ray of the breast",
}
REGION_CONTENTS = {
    "head": "the skull, brain, face or teeth", "neck": "the throat, thyroid and neck vessels",
    "spine": "the vertebrae, discs and spinal canal", "chest": "the lungs, heart, ribs and mediastinum",
    "breast": "breast tissue and the axilla", "abdomen": "the liver, bowel, kidneys and other abdominal organs",
    "pelvis": "the pelvic bones, bladder and reproductive organs",
    "upper limb": "the bones and joints of the shoulder, arm or hand",
    "lower limb": "the bones and joints of the hip, leg or foot",
}


def topic_name(topic: str) -> str:
    """'modality:CT' → 'CT (modality)', 'region:upper limb' → 'upper limb (region)', for people."""
    kind, _, value = str(topic).partition(":")
    return f"{value} ({kind})" if value else str(topic)


def _what(modality: str, region: str) -> str:
    """'a CT of the chest', 'an ultrasound image', 'an image of the abdomen', 'an unlabelled image'."""
    if modality != UNKNOWN and region != UNKNOWN:
        return f"{_article(modality)} {modality} of the {region}"
    if modality != UNKNOWN:
        return f"{_article(modality)} {modality} image"
    if region != UNKNOWN:
        return f"an image of the {region}"
    return "an image whose modality and region the caption does not name"


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" or word in ("MRI", "X-ray") else "a"


def _showing(findings) -> str:
    return f" showing {_joined(findings)}" if findings else ""


def _joined(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def explain(kind: str, options, answer: int, expression: str = "") -> tuple[str, ...]:
    """One sentence (or two) for every option: why the answer is right, why each other option is wrong."""
    right = options[answer]
    reasons = []
    for i, option in enumerate(options):
        if kind in ("modality", "region"):
            reasons.append(_label_reason(kind, option, right, i == answer))
        elif kind == "arithmetic":
            reasons.append(_arithmetic_reason(option, right, i == answer, expression))
        else:
            reasons.append(_case_reason(kind, option, right, i == answer))
    return tuple(reasons)


def _label_reason(kind: str, option, right, correct: bool) -> str:
    if kind == "modality":
        if correct:
            return f"Right: the case is {_article(right.text)} {right.text} — {MODALITY_TRAITS[right.text]}."
        return (f"Not {option.text}: {option.text} would be {MODALITY_TRAITS.get(option.text, 'another technique')}; "
                f"this case is {right.text}, {MODALITY_TRAITS.get(right.text, 'another technique')}.")
    if correct:
        return f"Right: the image shows the {right.text}, with {REGION_CONTENTS[right.text]}."
    return (f"Not the {option.text}: that would show {REGION_CONTENTS.get(option.text, 'other structures')}, while "
            f"this image shows the {right.text}, with {REGION_CONTENTS.get(right.text, 'other structures')}.")


def _case_reason(kind: str, option, right, correct: bool) -> str:
    noun = "caption" if kind == "image_to_caption" else "image"
    if correct:
        return (f"Right: this {noun} is the case's own — {_what(right.modality, right.region)}"
                f"{_showing(right.findings)}.")
    mine = _what(option.modality, option.region)
    theirs = _what(right.modality, right.region)
    if (option.modality, option.region) != (right.modality, right.region):
        return (f"Wrong: this {noun} belongs to {mine}{_showing(option.findings)}, but the case is "
                f"{theirs}{_showing(right.findings)}.")
    if option.findings:
        return (f"Wrong: it is also {mine}, but it shows {_joined(option.findings)}"
                + (f", while the case shows {_joined(right.findings)}." if right.findings else
                   ", which the case does not show."))
    return f"Wrong: it is also {mine}, but it belongs to another patient with a different finding."


def _arithmetic_reason(option, right, correct: bool, expression: str) -> str:
    if correct:
        return (f"Right: {expression} keeps the query's body region, the {right.region}, and swaps its modality for "
                f"the one added, {right.modality}.")
    if option.region == right.region and option.modality != right.modality:
        return (f"Wrong: it is {_what(option.modality, option.region)} — the right region, but the arithmetic asks "
                f"for {right.modality}, the modality it adds.")
    if option.modality == right.modality:
        return (f"Wrong: it is {_what(option.modality, option.region)} — the added modality, but in another region; "
                f"the arithmetic keeps the {right.region}.")
    return (f"Wrong: it is {_what(option.modality, option.region)}: neither the {right.region} with {right.modality} "
            "that the arithmetic asks for, nor anything it adds.")
