"""Errors a user can cause, with messages written for them.

Everything in `mirage_core` that fails because of user input (a missing folder, a corrupt image, an index
built by another encoder, a degenerate query vector) raises `MirageError`. The CLI prints its message and
exits 2; the app shows it with `st.error`. Any other exception is a bug.
"""

from __future__ import annotations


class MirageError(Exception):
    """A problem the user can fix; its message says what and how."""


class CorpusError(MirageError):
    """The corpus folder or one of its files cannot be read."""


class ImageError(MirageError):
    """An image (often uploaded) is missing, corrupt, too large or of an unsupported format."""


class IndexMismatchError(MirageError):
    """An index was built by another encoder than the one asked to search it."""


class QueryError(MirageError):
    """A query is empty, too long, or combines into a degenerate vector."""
