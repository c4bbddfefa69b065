"""The `open_clip:<spec>` encoders: any model open_clip can create, behind MIRAGE's Encoder interface.

`spec` is what `open_clip.create_model_and_transforms` accepts: `hf-hub:org/repo` (e.g. BiomedCLIP, or the
paper's `hf-hub:luhuitong/CLIP-ViT-L-14-448px-MedICaT-ROCO`), `local-dir:/path` (a folder with
`open_clip_config.json` and weights, which is also what `mirage train-encoder` writes), or an architecture
name optionally followed by `/pretrained-tag`.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import MirageError
from .base import Encoder, fingerprint_of, normalise_rows


def parse_spec(spec: str) -> tuple[str, str | None]:
    """'ViT-B-32/laion2b_s34b_b79k' -> ('ViT-B-32', 'laion2b_s34b_b79k'); schemas pass through."""
    if spec.startswith(("hf-hub:", "local-dir:")) or "/" not in spec:
        return spec, None
    architecture, _, tag = spec.partition("/")
    return architecture, tag or None


def load_open_clip(spec: str, device: str = "cpu"):
    """(model, preprocess, tokenizer) for a spec; a download failure becomes a MirageError."""
    import open_clip

    name, pretrained = parse_spec(spec)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained, device=device)
        tokenizer = open_clip.get_tokenizer(name)
    except (OSError, RuntimeError, ValueError) as error:
        raise MirageError(
            f"cannot load open_clip model '{spec}': {error}. Models from hf-hub need internet access the first "
            "time; offline, use the 'lite' encoder or a local-dir: checkpoint"
        ) from None
    return model.eval(), preprocess, tokenizer


class OpenClipEncoder(Encoder):
    def __init__(self, spec: str, device: str = "cpu"):
        self.spec = spec
        self.name = f"open_clip:{spec}"
        self.device = torch.device(device)
        self.model, self._preprocess, self.tokenizer = load_open_clip(spec, device)
        with torch.inference_mode():
            self.dim = int(self.model.encode_text(self.tokenizer(["x"]).to(self.device)).shape[-1])
        self.fingerprint = fingerprint_of(self.name, {"spec": spec}, []) + _weights_digest(self.model)

    sentence_model = "all-MiniLM-L6-v2"

    def encode_sentences(self, texts, query: bool = False) -> np.ndarray:
        """Meaning vectors from all-MiniLM-L6-v2 (`sentences`), for the captions' channel of hybrid search."""
        from .sentences import shared_sentence_model

        return shared_sentence_model().encode(texts, query)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._preprocess(image.convert("RGB"))

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenizer(texts).to(self.device))

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        features = self.model.encode_image(pixels.to(self.device))
        return normalise_rows(F.normalize(features.float(), dim=-1).cpu().numpy())


def _weights_digest(model: torch.nn.Module) -> str:
    """A cheap digest of the weights (a strided sample of every tensor), so fine-tuned copies differ."""
    total = torch.zeros((), dtype=torch.float64)
    for position, tensor in enumerate(model.state_dict().values()):
        if tensor.is_floating_point() and tensor.numel():
            flat = tensor.detach().flatten()
            total += (flat[:: max(1, flat.numel() // 64)].double().sum() * (position + 1)).cpu()
    return hashlib.sha256(f"{total.item():.6e}".encode()).hexdigest()[:8]
