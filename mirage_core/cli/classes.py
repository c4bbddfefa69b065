"""`mirage class create|list|assign|report`: an instructor's classes from the command line, through the same
`quiz.classes.Classroom` the Class page uses. It runs where the progress database is, so it asks for no key."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

from ..errors import MirageError
from .common import Parser, corpus_options, encoder_option, opened


def register(commands) -> dict:
    group = commands.add_parser("class", help="classes: create, list, assign a pack, report (the class dashboard)")
    actions = group.add_subparsers(dest="action", required=True, parser_class=Parser)
    create = actions.add_parser("create", help="a new class; prints its join code")
    create.add_argument("name")
    listing = actions.add_parser("list", help="every class with its code, members and assignments")
    assign = actions.add_parser("assign", help="set a pack (JSON/YAML) for a class")
    assign.add_argument("code")
    assign.add_argument("pack", help="the pack file, checked against the corpus like an uploaded pack")
    assign.add_argument("--due", help="due date, YYYY-MM-DD")
    corpus_options(assign)
    encoder_option(assign)
    report = actions.add_parser("report", help="the class dashboard's figures (JSON, or CSV with --csv)")
    report.add_argument("code")
    report.add_argument("--csv", metavar="FILE", help="also write the report as CSV")
    group.add_argument("--json", action="store_true", help="JSON output (also after the action)")
    for parser in (create, listing, assign, report):  # SUPPRESS: absent here, the group's value stands
        parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    return {"class": cmd_class}


def _classroom():
    from ..config import load_settings
    from ..quiz import ProgressStore
    from ..quiz.classes import Classroom

    return Classroom(ProgressStore(load_settings().progress_db()))


def cmd_class(args) -> int:
    from ..quiz.classes import show_code

    room = _classroom()
    if args.action == "create":
        info = room.create(args.name)
        result = {"code": show_code(info.code), "name": info.name}
        print(json.dumps(result) if args.json else f"class '{info.name}' created: students join with "
              f"{show_code(info.code)}")
    elif args.action == "list":
        rows = [{"code": show_code(c.code), "name": c.name, "members": c.members, "assignments": c.assignments}
                for c in room.classes()]
        print(json.dumps(rows, indent=2) if args.json else "\n".join(
            f"{r['code']}  {r['name']}  ({r['members']} members, {r['assignments']} assignments)" for r in rows)
            or "no classes yet: mirage class create NAME")
    elif args.action == "assign":
        due = _due(args.due)
        path = Path(args.pack)
        if not path.is_file():
            raise MirageError(f"no pack at {path}")
        _, _, index = opened(args)
        assignment = room.assign(args.code, path.read_bytes(), path.name, index, due)
        result = {"id": assignment.id, "title": assignment.title, "questions": len(assignment.questions),
                  "due": args.due}
        print(json.dumps(result) if args.json else f"'{assignment.title}' ({len(assignment.questions)} questions) "
              f"assigned to {show_code(assignment.code)}" + (f", due {args.due}" if args.due else ""))
    else:
        report = room.report(args.code)
        if args.csv:
            from ..files import write_text

            write_text(args.csv, report.to_csv(), newline="")
        print(json.dumps(report.to_dict(), indent=2) if args.json or not args.csv else f"written to {args.csv}")
    return 0


def _due(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(hour=23, minute=59, tzinfo=UTC)
    except ValueError:
        raise MirageError(f"--due takes a date as YYYY-MM-DD, not '{text[:40]}'") from None
