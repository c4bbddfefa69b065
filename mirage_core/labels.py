"""Coarse ground-truth labels (imaging modality) derived from a caption's words.

The index uses them for filters and the app for statistics. The mapping is a plain table of word patterns
per modality, checked in order (more specific modalities first, so "CT angiography" is angiography and
"PET/CT" is nuclear); a caption that names no modality is "unknown" rather than a guess.
"""

from __future__ import annotations

import re

MODALITY_PATTERNS: dict[str, tuple[str, ...]] = {
    "mammography": (r"mammogra\w*", r"tomosynthesis"),
    "nuclear/PET": (r"pet", r"pet[-/ ]?ct", r"spect", r"scintigra\w*", r"fdg", r"bone scan", r"radionuclide", r"tc-?99m?"),
    "angiography": (r"angiogra\w*", r"arteriogra\w*", r"venogra\w*", r"\w*angiogram", r"dsa", r"cta", r"mra"),
    "ultrasound": (r"ultrasound\w*", r"ultrasonogra\w*", r"sonogra\w*", r"echocardiogra\w*", r"doppler", r"us", r"echograph\w*", r"tte", r"tee"),
    "MRI": (r"mri", r"mr", r"magnetic resonance", r"t1[- ]?weighted", r"t2[- ]?weighted", r"flair", r"dwi", r"t1w?", r"t2w?"),
    "CT": (r"ct", r"cts", r"computed tomogra\w*", r"hrct", r"cect", r"ncct", r"mdct", r"cbct", r"tomodensitom\w*", r"scanner"),
    "fluoroscopy": (r"fluoroscop\w*", r"barium", r"swallow", r"cholangiogra\w*", r"urogra\w*", r"hysterosalpingogra\w*", r"ercp", r"contrast study"),
    "X-ray": (r"x-?rays?", r"radiograph\w*", r"roentgenogra\w*", r"plain film", r"cxr", r"panoramic", r"orthopantomogra\w*", r"opg", r"kub"),
}
MODALITIES: tuple[str, ...] = (*MODALITY_PATTERNS, "unknown")

_COMPILED = {
    name: re.compile(r"(?<![\w-])(?:" + "|".join(patterns) + r")(?![\w])", re.IGNORECASE)
    for name, patterns in MODALITY_PATTERNS.items()
}


def modality_of(caption: str) -> str:
    """The first modality whose words appear in the caption, or 'unknown'."""
    for name, pattern in _COMPILED.items():
        if pattern.search(caption):
            return name
    return "unknown"
