"""A student's own words → the terms radiology captions use: the documented synonym table of text search.

Captions are written by radiologists ("pneumoperitoneum", "spondylolisthesis"); a student types "air outside the
bowel" or "slipped vertebra". `expand` finds every lay phrase of `LAY_TERMS` in a query (whole words, a plural
allowed) and returns the query followed by the terms they stand for, which the caption channels of search
(`lexical` and the captions' meaning) then match. The table was written from general radiology teaching
vocabulary, before and apart from the evaluation queries of `mirage bench findings`; extend it by adding rows.
Longer phrases are tried first, so "blood clot in the lung" wins over "blood clot".
"""

from __future__ import annotations

import functools
import re

# lay phrase → radiology terms (as captions write them)
LAY_TERMS: dict[str, str] = {
    # findings
    "broken bone": "fracture", "broken": "fracture", "break": "fracture", "crack": "fracture fissure",
    "cracked": "fracture", "collapsed lung": "pneumothorax atelectasis", "punctured lung": "pneumothorax",
    "air around the lung": "pneumothorax", "blood clot in the lung": "pulmonary embolism thrombus",
    "clot in the lung": "pulmonary embolism", "blood clot": "thrombus thrombosis embolism", "clot": "thrombus",
    "blocked bowel": "bowel obstruction ileus", "bowel blockage": "bowel obstruction ileus",
    "blocked intestine": "intestinal obstruction ileus", "blocked gut": "bowel obstruction",
    "blocked": "obstruction occlusion", "blockage": "obstruction occlusion",
    "air outside the bowel": "pneumoperitoneum free air perforation", "free air": "pneumoperitoneum",
    "air in the belly": "pneumoperitoneum free air", "hole in the bowel": "perforation pneumoperitoneum",
    "burst bowel": "perforation pneumoperitoneum", "slipped vertebra": "spondylolisthesis",
    "slipped disc": "disc herniation protrusion", "bulging disc": "disc herniation protrusion",
    "bone thinning": "osteoporosis osteopenia", "thin bones": "osteoporosis osteopenia",
    "brittle bones": "osteoporosis", "weak bones": "osteoporosis osteopenia",
    "bleeding in the brain": "intracranial hemorrhage hematoma", "brain bleed": "intracranial hemorrhage hematoma",
    "bleeding": "hemorrhage haemorrhage hematoma", "bleed": "hemorrhage hematoma", "bruise": "hematoma contusion",
    "stroke": "infarct infarction ischemic", "heart attack": "myocardial infarction",
    "cancer": "carcinoma malignancy tumor neoplasm", "tumour": "tumor mass neoplasm", "growth": "mass tumor",
    "spread": "metastasis metastases metastatic", "has spread": "metastasis metastases metastatic",
    "secondaries": "metastases", "lump": "mass nodule", "lumps": "masses nodules", "spot on the lung":
    "pulmonary nodule", "lung spot": "pulmonary nodule", "lung infection": "pneumonia consolidation",
    "chest infection": "pneumonia consolidation", "infection": "infection abscess inflammatory",
    "pus": "abscess empyema", "pus collection": "abscess empyema collection",
    "enlarged heart": "cardiomegaly", "big heart": "cardiomegaly", "swollen kidney": "hydronephrosis",
    "water on the kidney": "hydronephrosis", "water on the brain": "hydrocephalus",
    "fluid on the brain": "hydrocephalus", "fluid-filled sac": "cyst cystic", "sac of fluid": "cyst cystic",
    "fluid sac": "cyst", "fluid around the lung": "pleural effusion", "water on the lung": "pleural effusion",
    "fluid in the lung": "pleural effusion edema", "fluid around the heart": "pericardial effusion",
    "fluid in the belly": "ascites", "fluid in the abdomen": "ascites", "swelling": "edema oedema swelling",
    "swollen": "edema swelling enlarged", "swollen glands": "lymphadenopathy lymph nodes",
    "swollen lymph nodes": "lymphadenopathy", "torn": "tear rupture", "tear": "tear rupture",
    "ruptured": "rupture", "knee cartilage": "meniscus", "cartilage in the knee": "meniscus",
    "popped out": "dislocation", "out of joint": "dislocation", "out of place": "dislocation displacement",
    "bulge in the groin": "inguinal hernia", "groin bulge": "inguinal hernia", "rupture in the groin":
    "inguinal hernia", "bulging blood vessel": "aneurysm", "ballooning artery": "aneurysm",
    "ballooned artery": "aneurysm", "bulging artery": "aneurysm", "narrowed": "stenosis stenotic",
    "narrowing": "stenosis", "clogged artery": "stenosis occlusion atherosclerosis", "clogged": "occlusion",
    "tear in the aorta": "aortic dissection", "torn aorta": "aortic dissection", "split aorta": "aortic dissection",
    "damaged air sacs": "emphysema", "smoker's lung": "emphysema", "swallowed object": "foreign body",
    "swallowed": "foreign body ingestion", "stuck in the throat": "foreign body impaction",
    "something swallowed": "foreign body", "abnormal connection": "fistula", "abnormal passage": "fistula",
    "abnormal tunnel": "fistula", "gallstones": "cholelithiasis gallstone calculi",
    "gallstone": "cholelithiasis calculus", "kidney stones": "nephrolithiasis urolithiasis renal calculi",
    "kidney stone": "nephrolithiasis renal calculus", "stones": "calculi calculus", "stone": "calculus",
    "calcium deposits": "calcification calcified", "hardening": "calcification sclerosis",
    "lung scarring": "pulmonary fibrosis", "scarring of the lung": "pulmonary fibrosis", "scarring": "fibrosis",
    "curved spine": "scoliosis", "crooked spine": "scoliosis", "hunchback": "kyphosis",
    "wear and tear": "degenerative osteoarthritis", "worn joint": "osteoarthritis degenerative",
    "twisted bowel": "volvulus", "bowel twist": "volvulus", "telescoping bowel": "intussusception",
    "liver scarring": "cirrhosis", "enlarged spleen": "splenomegaly", "big spleen": "splenomegaly",
    "enlarged liver": "hepatomegaly", "big liver": "hepatomegaly", "unborn baby": "fetus fetal",
    "baby in the womb": "fetus fetal pregnancy", "pregnancy": "pregnant gestational fetus",
    "bone infection": "osteomyelitis", "sinus infection": "sinusitis", "brain swelling": "cerebral edema",
    "brain tumour": "brain tumor glioma", "brain tumor": "glioma", "lung cancer": "lung carcinoma pulmonary mass",
    "pouches in the colon": "diverticulosis diverticulitis", "inflamed appendix": "appendicitis",
    "appendix infection": "appendicitis", "hole in the heart": "septal defect", "dead bone": "osteonecrosis necrosis",
    "dead tissue": "necrosis", "blood vessel": "artery vein vascular", "leaky valve": "regurgitation",
    # anatomy in lay words
    "belly": "abdomen abdominal", "tummy": "abdomen abdominal", "stomach area": "abdomen abdominal",
    "gut": "bowel intestine", "intestine": "bowel", "guts": "bowel", "backbone": "spine vertebra",
    "back bone": "spine vertebra", "windpipe": "trachea", "gullet": "esophagus oesophagus",
    "food pipe": "esophagus oesophagus", "womb": "uterus uterine", "voice box": "larynx",
    "collarbone": "clavicle", "collar bone": "clavicle", "thigh bone": "femur femoral", "shin bone": "tibia",
    "breastbone": "sternum", "kneecap": "patella", "hip bone": "pelvis iliac", "skull": "cranial cranium",
    "jaw": "mandible mandibular", "cheekbone": "zygomatic", "leg vein": "deep vein", "heart artery": "coronary",
    "heart arteries": "coronary", "lung": "pulmonary", "lungs": "pulmonary", "kidney": "renal",
    "kidneys": "renal", "liver": "hepatic", "heart": "cardiac", "brain": "cerebral intracranial",
    "bowel": "intestinal", "groin": "inguinal", "armpit": "axilla axillary", "neck": "cervical",
    "lower back": "lumbar", "upper back": "thoracic", "tailbone": "coccyx sacrum", "shoulder blade": "scapula",
    "wrist bone": "carpal scaphoid", "ankle bone": "talus", "heel bone": "calcaneus", "spleen": "splenic",
    "bladder": "vesical", "pancreas": "pancreatic", "throat": "pharynx", "gallbladder": "cholecyst",
    "x-ray": "radiograph", "xray": "x-ray radiograph", "scan": "", "picture": "",
}


@functools.cache
def _patterns() -> list[tuple[re.Pattern, str]]:
    ordered = sorted(LAY_TERMS, key=lambda phrase: (-len(phrase.split()), -len(phrase)))
    return [(re.compile(r"(?<![a-z-])" + r"\s+".join(re.escape(w) + r"(?:s|es)?" for w in phrase.split())
                        + r"(?![a-z-])"), LAY_TERMS[phrase]) for phrase in ordered]


def _found(text: str) -> list[tuple[str, str]]:
    """(phrase as written in the text, the terms it stands for) for each table phrase in the text, longest first;
    a phrase found blanks its words, so a shorter one inside it is not found again."""
    lowered, found = " ".join(str(text).lower().split()), []
    for pattern, meaning in _patterns():
        if match := pattern.search(lowered):
            found.append((match.group(0), meaning))
            lowered = lowered[:match.start()] + " | " + lowered[match.end():]
    return found


def lay_phrases(text: str) -> list[str]:
    """The table's phrases found in the text, longest first, none inside another one found."""
    return [phrase for phrase, _ in _found(text)]


def expand(text: str) -> str:
    """The text followed by the radiology terms its lay phrases stand for (unchanged when it has none)."""
    said = " ".join(str(text).lower().split()).split()
    terms = [term for _, meaning in _found(text) for term in meaning.split()]
    new = [t for t in dict.fromkeys(terms) if t not in said]
    return f"{text} {' '.join(new)}" if new else str(text)


def known_lay_words(text: str) -> set[str]:
    """The words of the text that belong to a lay phrase of the table (a student's vocabulary, not a foreign
    one: the relevance test counts them as known)."""
    return {word for phrase in lay_phrases(text) for word in phrase.split()}
