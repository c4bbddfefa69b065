"""Image–text encoders behind one interface, created by name (open_clip-style factory).

Names: `lite` (the offline default, shipped weights), `lite:/path/to/heads.safetensors` (weights trained
by `mirage train-encoder`), and `open_clip:<spec>` for any open_clip model (see `openclip.py`).
"""

from __future__ import annotations

from ..errors import MirageError
from .base import Encoder, normalise_rows

__all__ = ["Encoder", "create_encoder", "normalise_rows"]


def create_encoder(name: str = "lite", device: str = "cpu") -> Encoder:
    """Build the encoder a profile name describes.

    Also caps numpy's BLAS at one thread: the encoders run on torch's thread pool, and BLAS threads that
    spin-wait after each product steal those cores from the next query's encoder (on two cores this
    doubled search latency). The index scan itself runs on torch's pool (`Index.search`)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")
    kind, _, argument = name.partition(":")
    if kind == "lite":
        from .lite import LiteEncoder

        return LiteEncoder(weights=argument or None, device=device)
    if kind == "open_clip" and argument:
        from .openclip import OpenClipEncoder

        return OpenClipEncoder(argument, device=device)
    raise MirageError(f"unknown encoder '{name}': use 'lite', 'lite:PATH' or 'open_clip:<spec>'")
