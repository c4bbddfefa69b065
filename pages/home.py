"""Home: what MIRAGE is, how to use each page, what the corpus holds and where it comes from."""

from collections import Counter

import plotly.express as px
import streamlit as st

from app_shared import DISCLAIMER, deployment_findings, frame, show_record_image
from mirage_core.display import inert
from mirage_core.evaluation import heldout_report, search_figures

encoder, index = frame()

st.title("MIRAGE")
st.markdown(
    "**Retrieval and Generation of Multimodal Images and Texts for Medical Education.** Radiology images "
    "and their captions live in one shared embedding space: search real cases with words or with an "
    "image, and do arithmetic on meanings to see how a query moves."
)
st.info(DISCLAIMER + " Captions are the authors' own words from PubMed Central articles.", icon=":material/school:")

left, right = st.columns(2)
with left:
    st.subheader("How to use it")
    st.markdown(
        "- **Retrieval** — type a query (or pick a preset), or upload an image (PNG, JPEG, DICOM). "
        "Filter by modality or licence; *More like this* on any result; an image also finds the captions "
        "that describe it best.\n"
        "- **Dual search** — start from a query, subtract and add concepts with weights "
        "(\"chest x-ray\" − \"no foreign bodies\" + \"pacemaker\"), compare the results, and watch the vector move on "
        "a 2D map of the corpus. The concept walk slides from one idea to another.\n"
        "- **Quiz** — practise by modality or body region, with hints, explanations from the real captions and "
        "spaced repetition of what you missed; instructors build packs and present them.\n"
        "- **Generation** — synthetic images of a concept in 4 steps (latent consistency), always marked "
        "SYNTHETIC and shown beside the nearest real cases.\n"
        "- **Reports** — a summary of the nearest real cases where every statement cites its source, with an "
        "optional explanation by a small local language model, labelled as such."
    )
with right:
    st.subheader("The corpus")
    counts = Counter(r.modality for r in index.records)
    chart = px.bar(
        x=list(counts), y=list(counts.values()), labels={"x": "modality (caption terms, CUIs)", "y": "images"},
        title=f"{len(index):,} images by modality",
    )
    chart.update_layout(height=320, margin=dict(t=40, b=0, l=0, r=0))
    st.plotly_chart(chart, width="stretch")
    licences = Counter(r.licence for r in index.records)
    st.caption("Licences: " + ", ".join(f"{name} {n:,}" for name, n in licences.most_common()))

st.subheader("What the model can and cannot do")
report = heldout_report(index, seen=encoder.training_ids)
if report["n"]:
    t2i, i2t = report["t2i"], report["i2t"]
    st.markdown(
        f"On the {report['n']:,} image–caption pairs of this corpus from articles the encoder never saw in "
        f"training, a caption finds its own image among all {report['candidates']:,} images within the top 10 "
        f"**{t2i['R@10']:.0f} %** of the time (first: {t2i['R@1']:.0f} %), and an image its own caption "
        f"**{i2t['R@10']:.0f} %** of the time. Treat results as suggestions to check, not answers. The model "
        "cards in `assets/` give the held-out figures, the generator's fidelity and what was tried.")
    st.markdown("**Where it fails most** (held-out captions whose own image ranked lowest):")
    for failure in report["failures"]:
        with st.container(border=True):
            left, right = st.columns(2)
            with left:
                st.caption(f"The caption's own image — ranked {failure.rank:,}")
                show_record_image(index, failure.record.id, width=220)
            with right:
                st.caption("What came first instead")
                show_record_image(index, failure.found_instead.id, width=220)
            st.markdown(f"“{inert(failure.record.caption, limit=300)}”")
elif report["trained_on"]:
    st.markdown(
        "The encoder was trained on every image–caption pair of this corpus, so no figure measured here would "
        "show how it does on new cases: the figures below were measured on cases its recipe never trained on. "
        "Treat results as suggestions to check, not answers.")
else:
    st.caption("This corpus has no held-out articles to measure on.")

st.subheader("How well search finds what you ask for")
figures = search_figures()
if figures:
    paths = {"fused": "MIRAGE's search (all three channels)", "words": "caption words alone",
             "meaning": "caption meaning alone", "image": "image match alone",
             "previous release": "the previous release"}
    st.markdown(
        f"Measured on {figures['cases']:,} cases the model never trained on, for {figures['queries']} questions "
        f"about a finding ({figures['lay_queries']} in everyday words such as “blocked bowel”): of the cases that "
        "name the finding, the share that the first 12 results show.")
    st.dataframe(
        [{"search": paths[path], "all questions": f"{100 * row['all']:.0f} %",
          "everyday words": f"{100 * row['lay']:.0f} %", "radiology terms": f"{100 * row['terms']:.0f} %"}
         for path, row in figures["precision_at_12"].items() if path in paths],
        hide_index=True, width="stretch")
    heldout = figures["encoder_heldout_R@10"]
    st.caption(f"The image–text model alone: a caption finds its own image among the top 10 "
               f"{heldout['text_to_image']:.0f} % of the time, and an image its caption {heldout['image_to_text']:.0f} "
               f"%, on {heldout['pairs']:,} pairs its recipe never trained on. Measured {figures['measured']}.")

with st.expander("For deployers: what this deployment uses (the same as `mirage doctor`)"):
    for finding in deployment_findings():
        icon = {"ok": ":material/check_circle:", "warn": ":material/warning:", "fail": ":material/error:"}
        st.markdown(f"{icon[finding.status]} **{inert(finding.check)}** — {inert(finding.detail)}")

st.subheader("Attribution")
st.markdown(
    "Images and captions come from ROCO — O. Pelka, S. Koitka, J. Rückert, F. Nensa, C. M. Friedrich, "
    "*Radiology Objects in COntext (ROCO): A Multimodal Image Dataset*, MICCAI LABELS 2018, LNCS 11043, "
    "pp. 180–189 — drawn from open-access articles in PubMed Central. Every image shown links its article "
    "and its licence; images were resized."
)
st.caption(
    f"Encoder `{encoder.name}` · fingerprint `{encoder.fingerprint}` · index built {index.manifest.get('created', '?')}"
)
