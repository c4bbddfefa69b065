"""Export MiniLM (with the masked mean pool of its last layer) to ONNX, optionally with int8 weights.

Run as its own process by `lite.onnx_session` (`python -m mirage_core.encoders.onnx_export MODEL_DIR TARGET
[--int8]`), once per model and library versions: tracing and quantising hold a few hundred MB for a few
seconds, which then go back with the process instead of staying in the app's heap.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn


class MeanPooled(nn.Module):
    """MiniLM with the masked mean pool of its last layer, the graph that is exported."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.float()
        mask = attention_mask.unsqueeze(-1).float()
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


def export(model_dir: str, target: Path, quantised: bool) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    from ..files import atomic_path

    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval().requires_grad_(False)
    example = (torch.ones(1, 8, dtype=torch.long), torch.ones(1, 8, dtype=torch.long))
    with tempfile.TemporaryDirectory() as scratch, atomic_path(target) as temporary:
        plain = Path(scratch) / "minilm.onnx" if quantised else temporary
        with warnings.catch_warnings():  # the tracer's notes on shapes are for model authors, not users
            warnings.simplefilter("ignore")
            torch.onnx.export(MeanPooled(model).eval(), example, str(plain), dynamo=False, opset_version=17,
                              input_names=["input_ids", "attention_mask"], output_names=["pooled"],
                              dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                            "attention_mask": {0: "batch", 1: "tokens"}})
        if quantised:
            logging.getLogger().setLevel(logging.ERROR)  # its advice on pre-processing is for tool authors
            quantize_dynamic(str(plain), str(temporary), weight_type=QuantType.QInt8)


if __name__ == "__main__":
    export(sys.argv[1], Path(sys.argv[2]), "--int8" in sys.argv[3:])
