"""What the commands share: the parser that fails in one line, corpus and encoder options, settings from
arguments, progress bars, and how hits are printed."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from ..errors import MirageError

TERM_WEIGHT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*\*\s*(.+)$")


class UsageError(MirageError):
    """A mistake in the command line itself."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's default prints usage; one clear line is friendlier
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def corpus_options(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--roco", metavar="DIR", required=required, action="append",
                        help="corpus: a ROCO split folder, a ROCO root (with --split), a ROCOv2 folder or a CSV; "
                             "repeat it to use several corpora as one")
    parser.add_argument("--split", help="split of a ROCO/ROCOv2 root, e.g. test")
    parser.add_argument("--licences", help="keep only these licences, e.g. 'CC BY,CC0'")


def encoder_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--encoder", help="'lite' (default), 'lite:PATH' or 'open_clip:<spec>'")
    parser.add_argument("--device", help="cpu (default) or cuda")


def settings_from(args):
    from ..config import load_settings

    return load_settings().with_overrides(
        encoder=getattr(args, "encoder", None),
        corpus=os.pathsep.join(args.roco) if getattr(args, "roco", None) else None,
        split=getattr(args, "split", None), licences=getattr(args, "licences", None),
        device=getattr(args, "device", None),
    )


def progress_bar(label: str):
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=label, unit="img", file=sys.stderr, disable=None)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def check_corpus_exists(args, settings) -> None:
    """Fail on a mistyped corpus path before spending seconds loading models."""
    from ..corpus import corpus_paths
    from ..errors import CorpusError

    if getattr(args, "index", None) or settings.bundle_url:
        return
    for path in corpus_paths(settings.corpus):
        if not path.exists():
            raise CorpusError(f"corpus not found: {path}")


def open_index(args, settings, encoder):
    from ..index import index_exists, load_index
    from ..startup import open_configured_index

    if getattr(args, "index", None):
        index_exists(args.index)  # finishes the swap of a rebuild killed between its two renames, as start-up does
        return load_index(args.index, encoder)
    return open_configured_index(settings, encoder, progress_bar("bundle" if settings.bundle_url else "embedding"))


def opened(args):
    """(settings, encoder, index) from the arguments: the settings they override, the encoder those name, and the
    index that encoder searches (`--index`, else the configured one, built or installed on first use)."""
    from ..encoders import create_encoder

    settings = settings_from(args)
    check_corpus_exists(args, settings)
    encoder = create_encoder(settings.encoder, settings.device)
    return settings, encoder, open_index(args, settings, encoder)


def exactly_one(text: str | None, image: str | None, what: str = "query") -> None:
    """A command that takes a text or `--image PATH` was given exactly one of them."""
    if (text is None) == (image is None):
        raise UsageError(f"give either a text {what} or --image PATH")


def hit_dict(hit) -> dict:
    from ..search import why

    record = hit.record
    found = {"match": hit.match, "channels": list(hit.channels), "matched": list(hit.matched)} \
        if hit.match is not None else {}
    return {
        "id": record.id, "score": round(hit.ranking, 4), "cosine": round(hit.score, 4), **found, "why": why(hit),
        "modality": record.modality, "caption": record.caption,
        "image": record.image_path, "licence": record.licence, "article": record.article_url,
    }


def print_hits(hits, as_json: bool, extra: dict | None = None) -> None:
    rows = [hit_dict(h) for h in hits]
    if as_json:
        print(json.dumps({**(extra or {}), "results": rows}, ensure_ascii=False, indent=2))
        return
    for rank, row in enumerate(rows, 1):
        caption = row["caption"] if len(row["caption"]) <= 100 else row["caption"][:97] + "…"
        score = f"{row['match']:5.1f}" if row.get("match") is not None else f"{row['score']:.3f}"
        print(f"{rank:2d}. {score}  {row['id']}  [{row['modality']}]  {caption}")


def parse_term(text: str):
    from ..arithmetic import Term
    from ..images import open_image

    weight = 1.0
    match = TERM_WEIGHT.match(text)
    if match:
        weight, text = float(match.group(1)), match.group(2)
    if text.startswith("image:"):
        path = text[len("image:") :]
        return Term(open_image(path), weight, label=Path(path).name)
    return Term(text, weight)


def check_modalities(names: list[str] | None) -> None:
    """An unknown --modality would silently match nothing: name the ones that exist instead."""
    from ..labels import MODALITIES

    unknown = [name for name in names or [] if name not in MODALITIES]
    if unknown:
        raise UsageError(f"unknown modality '{unknown[0]}'; choose from: {', '.join(MODALITIES)}")
