"""`mirage` — the command line over the same functions the app's pages call.

Every command has `--help` and `--json`. A mistake the user can fix (a missing folder, an empty query, an
index built by another encoder) prints one line starting with `mirage: error:` and exits with status 2.
Commands live one group a module (`retrieval`, `teaching`, `classes`, `training`, `deploy`, `benchmarks`); this
module is the table that joins them.
"""

from __future__ import annotations

import os
import sys

from ..errors import MirageError
from . import benchmarks, classes, deploy, retrieval, teaching, training
from .common import Parser, UsageError

GROUPS = (retrieval, teaching, classes, training, deploy, benchmarks)
__all__ = ["COMMANDS", "UsageError", "build_parser", "main"]


def build_parser() -> tuple[Parser, dict]:
    parser = Parser(prog="mirage", description="MIRAGE: retrieval over radiology images and captions.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    table = {}
    for group in GROUPS:
        table.update(group.register(commands))
    return parser, table


COMMANDS = build_parser()[1]


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        parser, table = build_parser()
        args = parser.parse_args(argv)
        return table[args.command](args)
    except MirageError as error:
        print(f"mirage: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk, a vanished folder: said in one line, like every other failure
        where = f" ({error.filename})" if error.filename else ""
        print(f"mirage: error: {_describe(error)}{where}: nothing was left half-written", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mirage: interrupted", file=sys.stderr)
        return 130


def _describe(error: OSError) -> str:
    """An OSError in words; numpy reports a full disk as "N requested and M written", without an errno."""
    import errno
    import re

    if error.errno in (errno.ENOSPC, errno.EDQUOT) or re.search(r"requested and \d+ written", str(error)):
        return "the disk is full (no space left on the device)"
    return error.strerror or str(error)


if __name__ == "__main__":
    sys.exit(main())
