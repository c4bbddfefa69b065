"""Ground-truth labels of a record — imaging modality and body region — from what ROCO says about it.

The quiz marks answers with these labels, the index filters by them, the reports name them. The mapping
is a documented table, not a model:

- **Caption terms** (strongest): word patterns per modality (`MODALITY_PATTERNS`) and per region
  (`REGION_PATTERNS`). Modalities are checked in order, more specific first, so "CT angiography" is
  angiography and "PET/CT" is nuclear/PET. A caption naming two of the plain modalities (CT, MRI, X-ray,
  ultrasound) describes a composite figure: its modality is "unknown".
- **UMLS CUIs** (`MODALITY_CUIS`, `REGION_CUIS`): concepts ROCO extracted from the caption, e.g.
  C0040405 "X-Ray Computed Tomography". They decide the modality when the caption's words do not, and
  decide a region only when neither the caption's terms nor the keywords name one, and only when the
  record's **semantic types** include a body part or location (T023/T029).
- **Keywords** (ROCO's caption keywords, e.g. "xray", "abdoman"): matched with the same patterns.
- Figures that are not radiology (optical coherence tomography, photographs, histology) get no region and
  no modality from their CUIs.

A whole-body image has no single region. The region named by the most distinct caption terms wins; a tie between regions, or no evidence, is
"unknown". "Unknown"
means the evidence is weak, never a guess; the quiz does not ask about unknown labels. Precision on a
hand-checked sample of the ROCO demo is measured by `tests/test_labels.py` (fixture
`tests/fixtures/labels_checked.json`).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

UNKNOWN = "unknown"

MODALITY_PATTERNS: dict[str, tuple[str, ...]] = {
    "mammography": (r"mammogra\w*", r"tomosynthesis"),
    "nuclear/PET": (r"pet", r"pet[-/ ]?ct", r"spect", r"scintigra\w*", r"fdg", r"bone scan", r"radionuclide", r"tc-?99m?", r"suv(?:max)?", r"hypermetabolic"),
    "angiography": (r"angiogra\w*", r"arteriogra\w*", r"venogra\w*", r"\w*angiogram", r"dsa", r"cta", r"mra"),
    "ultrasound": (r"ultrasound\w*", r"ultrasonogra\w*", r"sonogra\w*", r"echocardiogra\w*", r"doppler", r"us", r"ultrasonic", r"parasternal", r"transvaginal", r"transthoracic echo\w*", r"trans-?o?esophageal echo\w*", r"echograph\w*", r"tte", r"tee"),
    "MRI": (r"mri", r"mr", r"magnetic resonance", r"t1[- ]?weighted", r"t2[- ]?weighted", r"flair", r"dwi", r"t1w?", r"t2w?"),
    "CT": (r"ct", r"cts", r"tdm", r"computed tomogra\w*", r"computeri[sz]ed tomogra\w*", r"hrct", r"cect", r"ncct", r"mdct", r"cbct", r"tomodensitom\w*", r"scanner"),
    "fluoroscopy": (r"fluoroscop\w*", r"barium", r"swallow", r"cholangiogra\w*", r"urogra\w*", r"hysterosalpingogra\w*", r"ercp", r"contrast study"),
    "X-ray": (r"x[- ]?rays?", r"radiograph\w*", r"roentgenogra\w*", r"plain (?:\w+ )?films?", r"(?:chest|abdominal|pelvic|skeletal|erect|supine|skull) films?", r"(?:ap|pa)(?: and lateral)? (?:views?|projections?|films?)", r"skiagra\w*", r"cxr", r"panoramic", r"panorex", r"orthopantomogra\w*", r"opg", r"kub"),
}
MODALITIES: tuple[str, ...] = (*MODALITY_PATTERNS, UNKNOWN)
PLAIN_MODALITIES = {"CT", "MRI", "X-ray", "ultrasound"}

MODALITY_CUIS: dict[str, str] = {
    "C0040405": "CT",  # X-Ray Computed Tomography
    "C4300092": "CT",  # (co-extracted with computed tomography in ROCO)
    "C0034579": "CT",  # Tomography, X-Ray
    "C0024485": "MRI",  # Magnetic Resonance Imaging
    "C0231881": "MRI",  # (extracted from "magnetic resonance")
    "C0041618": "ultrasound",  # Ultrasonography
    "C0412555": "ultrasound",  # Ultrasound scan
    "C0013516": "ultrasound",  # Echocardiography
    "C0043299": "X-ray",  # Diagnostic radiologic examination
    "C1306645": "X-ray",  # Plain x-ray
    "C1962945": "X-ray",  # Radiographic imaging procedure
    "C0039985": "X-ray",  # Plain chest X-ray
    "C0002978": "angiography",  # Angiogram
    "C0016356": "fluoroscopy",  # Fluoroscopy
    "C0032743": "nuclear/PET",  # Positron-Emission Tomography
    "C0034606": "nuclear/PET",  # Radionuclide Imaging
    "C0024671": "mammography",  # Mammography
}

REGION_PATTERNS: dict[str, tuple[str, ...]] = {
    "head": (r"brain", r"cerebr\w*", r"cerebell\w*", r"cranial", r"intracranial", r"skull", r"head", r"orbit\w*",
             r"sella\w*", r"pituitar\w*", r"frontal lobe", r"temporal lobe", r"parietal", r"occipital", r"sinus(?:es)?",
             r"paranasal", r"maxill\w*", r"mandib\w*", r"teeth", r"tooth", r"dental", r"premolar", r"molar", r"nasal", r"facial",
             r"panoramic", r"panorex", r"orthopantomogra\w*", r"periapical", r"buccal", r"palatal?", r"optic nerve", r"ocular",
             r"retino\w*", r"sylvian", r"clivus", r"skull base", r"mastoid\w*", r"tympanic", r"calvari\w*",
             r"hippocamp\w*", r"lateral ventricles?", r"periventricular", r"intraventricular",
             r"quadrigeminal", r"astrocytoma", r"glioma", r"glioblastoma", r"meningioma", r"thalam\w*", r"white matter", r"subdural", r"subarachnoid"),
    "neck": (r"(?<!femoral )(?<!bladder )neck(?! of)", r"nasopharyn\w*", r"oropharyn\w*", r"hypopharyn\w*", r"thyroid", r"laryn\w*", r"pharyn\w*", r"parotid", r"submandibular", r"carotid"),
    "spine": (r"spine", r"spinal", r"vertebra\w*(?! arter)", r"lumbar", r"sacr\w*", r"intervertebral", r"disc herniation",
              r"cervical spine", r"thoracic spine", r"l[1-5]", r"c[1-7]", r"t1[0-2]", r"coccy\w*", r"myelo\w*"),
    "chest": (r"chest", r"thora\w*", r"lungs?", r"pulmonary", r"pleura\w*", r"mediastin\w*", r"heart", r"cardiac",
              r"coronary", r"(?:left|right) ventric\w*", r"interventricular", r"aortic valve", r"mitral", r"tricuspid", r"atri(?:um|al|a)", r"four-chamber", r"pericardi\w*", r"ribs?", r"bronch\w*", r"hilar",
              r"aortic arch", r"myocardi\w*", r"oesophag\w*", r"esophag\w*", r"pneumothorax", r"lobe of the (?:right|left) lung"),
    "breast": (r"breasts?", r"mammary", r"mammogra\w*", r"axilla\w*"),
    "abdomen": (r"abdom\w*", r"abdoman", r"liver", r"hepat\w*", r"kidneys?", r"renal", r"pancrea\w*", r"spleen",
                r"splenic", r"bowel", r"colon\w*", r"stomach", r"gastr\w*", r"gallbladder", r"biliary", r"bile",
                r"duoden\w*", r"jejun\w*", r"ile(?:um|al)", r"intestin\w*", r"append\w*", r"adrenal", r"mesenter\w*",
                r"peritone\w*", r"retroperitone\w*", r"portal vein", r"cholangi\w*", r"suprarenal", r"\w*nephr\w*"),
    "pelvis": (r"pelvi\w*", r"bladder", r"uter\w*", r"ovar\w*", r"prostat\w*", r"rectum", r"rectal", r"cervix",
               r"adnex\w*", r"endometri\w*", r"hysterectom\w*", r"salping\w*", r"oophor\w*", r"sacroiliac", r"acetabul\w*", r"testi\w*", r"scrot\w*", r"transvaginal", r"vagina\w*", r"inguinal", r"iliac", r"fetus", r"fetal"),
    "upper limb": (r"shoulder", r"humer\w*", r"elbow", r"forearm", r"wrist", r"hand", r"fingers?", r"ulna\w*",
                   r"carpal", r"carpi", r"metacarp\w*", r"subacromial", r"deltoid", r"radiocapitellar", r"capitell\w*", r"olecran\w*", r"scapula\w*", r"clavic\w*", r"glenoid"),
    "lower limb": (r"hip", r"femur", r"femoral head", r"femoral neck", r"knee", r"tibia\w*", r"fibula\w*", r"ankle",
                   r"foot", r"feet", r"toes?", r"calcane\w*", r"patell\w*", r"leg", r"thigh", r"menisc\w*",
                   r"cruciate", r"popliteal", r"trochanter\w*", r"metatars\w*", r"talus", r"femoris", r"quadriceps"),
}
REGIONS: tuple[str, ...] = (*REGION_PATTERNS, UNKNOWN)

REGION_CUIS: dict[str, str] = {
    "C0006104": "head",  # Brain
    "C0018670": "head",  # Head
    "C0037303": "head",  # Bone structure of cranium
    "C0027530": "neck",  # Neck
    "C0040132": "neck",  # Thyroid Gland
    "C0037949": "spine",  # Vertebral column
    "C0817096": "chest",  # Chest
    "C0024109": "chest",  # Lung
    "C0018787": "chest",  # Heart
    "C0025066": "chest",  # Mediastinum
    "C0006141": "breast",  # Breast
    "C0000726": "abdomen",  # Abdomen
    "C0023884": "abdomen",  # Liver
    "C0022646": "abdomen",  # Kidney
    "C0030797": "pelvis",  # Pelvis
    "C0015811": "lower limb",  # Femur
    "C0022742": "lower limb",  # Knee
}
BODY_SEMTYPES = ("T023", "T029")
# Figures that are not radiology (ROCO has a few) must not get a modality from their CUIs
WHOLE_BODY = re.compile(r"whole[- ]body|total[- ]body", re.IGNORECASE)
NOT_RADIOLOGY = re.compile(r"optical coherence|photograph|histolog\w*|microscop\w*|endoscop\w*|fundus", re.IGNORECASE)


def _compile(patterns: tuple[str, ...]) -> re.Pattern:
    return re.compile(r"(?<!\w)(?:" + "|".join(patterns) + r")(?![\w])", re.IGNORECASE)


_MODALITY_RE = {name: _compile(patterns) for name, patterns in MODALITY_PATTERNS.items()}
_REGION_RE = {name: _compile(patterns) for name, patterns in REGION_PATTERNS.items()}


@dataclass(frozen=True)
class Labels:
    modality: str = UNKNOWN
    region: str = UNKNOWN


def modalities_named(text: str) -> list[str]:
    """Every modality whose words appear in the text, in precedence order."""
    return [name for name, pattern in _MODALITY_RE.items() if pattern.search(text)]


def modality_of(caption: str, cuis: tuple[str, ...] = (), keywords: tuple[str, ...] = ()) -> str:
    """The modality the caption names (first in precedence order); else the CUIs', else the keywords'."""
    named = modalities_named(caption)
    if named:
        if len(PLAIN_MODALITIES.intersection(named)) > 1 and named[0] in PLAIN_MODALITIES:
            return UNKNOWN
        return named[0]
    if NOT_RADIOLOGY.search(caption):
        return UNKNOWN
    from_cuis = {MODALITY_CUIS[c] for c in cuis if c in MODALITY_CUIS}
    if len(from_cuis) == 1:
        return from_cuis.pop()
    if from_cuis:
        return UNKNOWN
    words = " ".join(keywords)
    from_keywords = [name for name, pattern in _MODALITY_RE.items() if pattern.search(words)]
    return from_keywords[0] if len(from_keywords) == 1 else UNKNOWN


def region_of(caption: str, cuis: tuple[str, ...] = (), keywords: tuple[str, ...] = (),
              semtypes: tuple[str, ...] = ()) -> str:
    """The body region named by the most distinct caption terms; without any, the keywords', then the CUIs'.

    Keywords and CUIs are extracted from the caption, so they only speak when its words do not (e.g. a
    caption in another language with English keywords); a tie between regions is 'unknown'."""
    if NOT_RADIOLOGY.search(caption) or WHOLE_BODY.search(caption):
        return UNKNOWN
    votes = Counter({name: len({m.lower() for m in pattern.findall(caption)}) for name, pattern in _REGION_RE.items()})
    if not any(votes.values()):
        votes = Counter({name: sum(1 for k in set(keywords) if pattern.fullmatch(k))
                         for name, pattern in _REGION_RE.items()})
    if not any(votes.values()) and any(s.startswith(BODY_SEMTYPES) for s in semtypes):
        votes = Counter(REGION_CUIS[c] for c in set(cuis) if c in REGION_CUIS)
    ranked = [item for item in votes.most_common() if item[1] > 0]
    if not ranked or (len(ranked) > 1 and ranked[0][1] == ranked[1][1]):
        return UNKNOWN
    return ranked[0][0]


def label_record(record) -> Labels:
    """Modality and region of a `corpus.Record` (anything with caption, cuis, keywords, semtypes)."""
    return Labels(
        modality_of(record.caption, record.cuis, record.keywords),
        region_of(record.caption, record.cuis, record.keywords, record.semtypes),
    )


# ROCO's keywords are extracted automatically and include words that teach nothing on their own
FILLER_KEYWORDS = frozenset({
    "high", "low", "area", "areas", "patient", "patients", "case", "image", "images", "figure", "left", "right",
    "arrow", "arrows", "arrowhead", "showing", "shows", "show", "seen", "view", "side", "level", "normal", "small",
    "large", "year", "years", "old", "time", "note", "scan", "white", "black", "red", "yellow", "blue", "mass",
    "lesion", "increased", "decreased", "significant", "anterior", "posterior", "upper", "lower", "type", "part",
})


def teaching_keywords(keywords, limit: int = 8) -> list[str]:
    """A record's keywords worth showing a student: no filler words, no bare UMLS codes, no repeats."""
    kept: list[str] = []
    for keyword in keywords:
        word = " ".join(str(keyword).split())
        if (len(word) > 2 and word.lower() not in FILLER_KEYWORDS and not re.fullmatch(r"C\d{7}", word)
                and word.lower() not in {k.lower() for k in kept}):
            kept.append(word)
    return kept[:limit]
