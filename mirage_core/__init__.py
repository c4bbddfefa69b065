"""mirage_core: radiology images and captions in one embedding space, for teaching.

Modules, one concept each: `corpus` (readers), `images` (safe decoding), `labels`, `encoders` (factory),
`index`, `search`, `arithmetic` (dual search), `projection` (PCA picture), `splits`, `training`,
`evaluation`, `fetch`, `bench`, `config`, `cli`. Nothing here imports Streamlit.
"""

__version__ = "0.1.0"
