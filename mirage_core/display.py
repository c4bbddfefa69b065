"""Untrusted text made inert for Markdown: captions, keywords, pack titles and model output are data.

A corpus, a pack or a language model can hold anything: HTML (`<iframe srcdoc=…>`), Markdown images that
make the browser fetch a URL, `$…$` math, headings, Streamlit's `:red[…]` colour directives and
`:material/…:` icons. Every such text goes through `inert` before it reaches Markdown (the dashboard and
downloaded reports alike). It folds line breaks (so no block can start), then backslash-escapes every
character that can open markup — CommonMark lets any ASCII punctuation be escaped, and the escape renders as
the character itself — while leaving the harmless ones (a hyphen inside "x-ray", a full stop, an underscore
inside "ROCO_00153") bare so that a downloaded report still reads as plain text. Links the project itself
makes go through `link`, which only accepts http(s) URLs.
"""

from __future__ import annotations

import re

_SPACE = re.compile(r"\s+")
_MARKUP = re.compile(
    r"[\\`*~\[\]<>$&#|]"  # emphasis, code, links and images, HTML, math, entities, headings, tables
    r"|:(?=[A-Za-z/])"  # Streamlit directives and icons (:red[…], :material/x:), emoji codes, URL schemes
    r"|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])"  # an underscore that could open or close emphasis
    r"|(?<=www)\."  # a bare www.example.org would become a link
)
_BLOCK_START = re.compile(r"^(?:[-+=>!]|\d+(?=[.)]))")
_SAFE_URL = re.compile(r"https?://[^\s()<>\[\]\"'`\\]+")


def inert(text: object, limit: int | None = None) -> str:
    """`text` as Markdown that renders literally, on one line; cut to `limit` characters with an ellipsis."""
    plain = _SPACE.sub(" ", str(text)).strip()
    if limit is not None and len(plain) > limit:
        plain = plain[: max(limit - 1, 0)].rstrip() + "…"
    escaped = _MARKUP.sub(lambda match: "\\" + match.group(0), plain)
    if match := _BLOCK_START.match(escaped):  # "- x", "> x", "1. x" would open a list or a quote
        cut = match.end() if match.group(0)[0].isdigit() else 0
        escaped = escaped[:cut] + "\\" + escaped[cut:]
    return escaped


def link(label: object, url: str) -> str:
    """A Markdown link whose label is inert; a URL that is not plain http(s) gives the label alone."""
    if not url or not _SAFE_URL.fullmatch(url):
        return inert(label)
    return f"[{inert(label)}]({url})"


def highlighted(text: object, matched: tuple[str, ...] | list[str] = (), limit: int | None = None) -> str:
    """`text` made inert (see `inert`) with each of the `matched` words, wherever it stands as a whole word, in
    bold: the emphasis is MIRAGE's own markup around escaped text, so the text itself still renders literally."""
    plain = _SPACE.sub(" ", str(text)).strip()
    if limit is not None and len(plain) > limit:
        plain = plain[: max(limit - 1, 0)].rstrip() + "…"
    wanted = sorted({w for w in matched if w.strip()}, key=len, reverse=True)
    if not wanted:
        return inert(plain)
    pattern = re.compile(r"(?<![A-Za-z0-9])(" + "|".join(re.escape(w) for w in wanted) + r")(?![A-Za-z0-9])")
    parts, last = [], 0
    for match in pattern.finditer(plain):
        parts.append(_escape(plain[last:match.start()]))
        parts.append(f"**{_escape(match.group(0))}**")
        last = match.end()
    parts.append(_escape(plain[last:]))
    escaped = "".join(parts)
    if parts[0] and (block := _BLOCK_START.match(parts[0])):  # as in `inert`: no list or quote may open
        cut = block.end() if block.group(0)[0].isdigit() else 0
        escaped = escaped[:cut] + "\\" + escaped[cut:]
    return escaped


def _escape(fragment: str) -> str:
    """Markup characters of a fragment escaped (no block check: a fragment never starts a line)."""
    return _MARKUP.sub(lambda match: "\\" + match.group(0), fragment)
