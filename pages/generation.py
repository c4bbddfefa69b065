"""Generation: synthetic images of a concept (LCM, a few steps), each beside its nearest real images."""

import streamlit as st

from app_shared import (
    SCORE_NOTE,
    UPLOAD_TYPES,
    dual_search_vector,
    frame,
    generator_sizes,
    get_generator,
    read_upload,
    show_hits,
)
from mirage_core.display import inert
from mirage_core.errors import MirageError
from mirage_core.generation import GenerationRequest
from mirage_core.search import nearest_images

encoder, index = frame()
st.title("Generation")
st.caption("Synthetic images drawn by a small diffusion model trained on the demo corpus, sampled by latent "
           "consistency in a few steps. They are marked SYNTHETIC, carry metadata saying so, and are for "
           "learning what the model has captured — never real patients, never for diagnosis.")

source = st.radio("Generate from", ["Text prompt", "Dual-search vector", "Uploaded image"], horizontal=True)
condition, label = None, ""
if source == "Text prompt":
    condition = st.text_input("Prompt", "chest x-ray", max_chars=300)
elif source == "Dual-search vector" and (chosen := dual_search_vector()):
    condition, label = chosen[0], f"vector: {chosen[1]}"
elif source == "Uploaded image":
    condition = read_upload(st.file_uploader("Radiology image (PNG, JPEG or DICOM)", type=UPLOAD_TYPES))
    label = "an uploaded image"

with st.form("generate"):
    left, middle, right = st.columns(3)
    count = left.slider("Images", 1, 8, 4)
    sampler = middle.radio("Sampler", ["lcm", "ddim"], horizontal=True,
                           format_func={"lcm": "LCM (fast)", "ddim": "DDIM (undistilled)"}.get)
    steps = right.slider("Steps", 1, 50, 4, help="LCM: 4–8 steps; DDIM: 25–50")
    left, middle, right = st.columns(3)
    guidance = left.slider("Guidance", 0.0, 8.0, 1.0, 0.5, help="LCM: 1–2; DDIM: about 3")
    seed = middle.number_input("Seed", 0, 2**31 - 1, 0)
    sizes = generator_sizes()  # a grown model also draws its latents at its source's size
    size = right.radio("Size (px)", sizes, index=len(sizes) - 1, horizontal=True,
                       help="The same latents drawn by a larger or a smaller decoder") if len(sizes) > 1 else None
    submitted = st.form_submit_button("Generate", type="primary")

if submitted and condition is not None:
    try:
        request = GenerationRequest(condition, n=count, steps=steps, guidance=guidance, seed=int(seed),
                                    sampler=sampler, label=label, size=size)
        with st.spinner("Sampling…"):
            images = get_generator().generate(request)
            # the nearest real cases are found once, here, not on every rerun of the page
            neighbours = nearest_images(index, encoder, [s.image for s in images], 3, condition=condition)
            st.session_state["generated"] = list(zip(images, neighbours))
    except MirageError as error:
        st.error(inert(error))

for number, (synthetic, nearest) in enumerate(st.session_state.get("generated", []), 1):
    with st.container(border=True):
        left, right = st.columns([1, 3])
        with left:
            side = synthetic.native.width if synthetic.native else None  # the model's own pixels, no more
            st.image(synthetic.image, width=side or "stretch", caption=f"Synthetic #{number} — AI-generated, drawn "
                     f"at {synthetic.metadata['Native size'].replace('x', '×')} px and shown at that size")
            st.caption(f"{synthetic.metadata['Sampler']} · seed {synthetic.metadata['Seed']} · "
                       f"{synthetic.metadata['Seconds']}\u00a0s")  # a no-break space: the unit stays with its number
            st.download_button("Download PNG", synthetic.png_bytes(), f"mirage-synthetic-{number}.png",
                               "image/png", key=f"download-{number}")
        with right:
            st.markdown("**Nearest real images in the corpus**")
            show_hits(nearest, key=f"near-{number}", columns=3, more_like_this=False, explain=False)
if st.session_state.get("generated"):
    st.caption(SCORE_NOTE)
