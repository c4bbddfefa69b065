"""`mirage bundle create|install`: carry a corpus and its prebuilt index to a deployment as one archive."""

from __future__ import annotations

import json
from pathlib import Path

from .common import UsageError, corpus_options, encoder_option, progress_bar, settings_from


def register(commands) -> dict:
    bundle = commands.add_parser("bundle", help="make or install a corpus bundle (images, records, index)",
                                 description="create: write a bundle of a corpus and its index for an encoder; "
                                             "install: download (or copy), verify and unpack one into MIRAGE_HOME.")
    bundle.add_argument("action", choices=["create", "install"])
    bundle.add_argument("source", nargs="?", help="install: the bundle's path or http(s) URL")
    bundle.add_argument("--out", metavar="FILE", help="create: the archive to write (.tar.gz)")
    bundle.add_argument("--sha256", default="", help="install: the archive's expected SHA-256")
    corpus_options(bundle)
    encoder_option(bundle)
    bundle.add_argument("--json", action="store_true")

    doctor = commands.add_parser("doctor", help="what this deployment will use, and what is missing or risky",
                                 description="One finding a line; exit 0 when it will work, 1 when something "
                                             "fails. Reads only: builds, migrates and downloads nothing.")
    corpus_options(doctor)
    encoder_option(doctor)
    doctor.add_argument("--json", action="store_true")
    return {"bundle": cmd_bundle, "doctor": cmd_doctor}


def cmd_doctor(args) -> int:
    from ..doctor import as_json, diagnose, will_work

    findings = diagnose(settings_from(args))
    if args.json:
        print(as_json(findings))
    else:
        print("\n".join(finding.line() for finding in findings))
        print("this deployment will work" if will_work(findings) else "this deployment will NOT work: see FAIL")
    return 0 if will_work(findings) else 1


def cmd_bundle(args) -> int:
    from ..bundle import create_bundle, install_bundle, load_bundle_index, sha256_of
    from ..encoders import create_encoder
    from ..startup import open_or_build_index

    settings = settings_from(args)
    if args.action == "create":
        if not args.out or not args.out.endswith((".tar.gz", ".tgz")):
            raise UsageError("bundle create needs --out FILE ending in .tar.gz")
        encoder = create_encoder(settings.encoder, settings.device)
        corpus = settings.load_corpus()
        index = open_or_build_index(settings.index_dir(encoder.fingerprint), encoder, lambda: corpus,
                                    progress_bar("embedding"))
        manifest = create_bundle(corpus, index, args.out, progress_bar("bundling"))
        digest = sha256_of(Path(args.out))
        summary = {"out": args.out, "images": manifest["count"], "encoder": manifest["encoder"], "sha256": digest,
                   "bytes": Path(args.out).stat().st_size, "licences": manifest["licences"]}
        print(json.dumps(summary, indent=2) if args.json else
              f"{summary['images']} images and their index ({summary['encoder']}) in {args.out} "
              f"({summary['bytes'] / 1e6:.0f} MB)\nMIRAGE_BUNDLE_SHA256 = \"{digest}\"")
        return 0
    if not args.source:
        raise UsageError("bundle install needs the bundle's path or URL")
    folder = install_bundle(args.source, settings.home, args.sha256, progress_bar("downloading"))
    index = load_bundle_index(folder, create_encoder(settings.encoder, settings.device))
    print(json.dumps({"installed": str(folder), "images": len(index)}, indent=2) if args.json else
          f"installed {len(index)} images in {folder}")
    return 0
