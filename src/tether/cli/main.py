"""Entry point: ``tether <command> ...``. Each command module registers itself."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# command name -> module under tether.cli; each module has add_parser(subparsers)
COMMANDS = ("demo", "models", "fetch", "info", "convert", "embed", "train", "eval", "score", "filter", "dedup",
            "label", "audit", "index", "serve", "bind", "distill", "ensemble")

DESCRIPTION = """\
tether maps images and text into one shared, L2-normalised embedding space.

Start here:
  tether models                      list the named architectures
  tether models --pretrained         list the published models tether loads by name
  tether fetch NAME                  download a published model into the Hugging Face cache
  tether info PATH                   what a checkpoint holds (any supported format)
  tether convert SRC DST --to hf     convert between tether, Hugging Face and OpenCLIP
  tether embed --model M --data TYPE:PATH --out DIR
                                     embed a dataset (clip-retrieval's layout, resumable)
  tether score DIR                   CLIP score of every pair of an embedding folder
  tether filter DIR --top-fraction 0.3 --out OUT
                                     keep pairs by CLIP score and DataComp's basic rules
  tether dedup DIR --threshold 0.95 --out OUT
                                     remove semantic duplicates, one member kept per group
  tether label DIR --classes a,b,c --out OUT
                                     weak labels from class names, calibrated, with a review page
  tether audit DIR --out OUT         find probable label errors (cleanlab's definitions), health summary
  tether index DIR --out INDEX       a search index chosen for the data (FAISS), recall measured
  tether serve INDEX                 search it: web page, clip-retrieval's API, tether's /search
  tether bind --model M --modality depth --data SPEC --out OUT
                                     add a modality: its tower trained against a frozen anchor
  tether distill --model M --modality points --data SPEC --out OUT
                                     a student tower matching a frozen teacher's embeddings
  tether ensemble M1 M2 M3 --modality audio --out OUT
                                     several runs' towers as one tower of one checkpoint
Run `tether COMMAND --help` for details and examples.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tether", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"tether.cli.{name}").add_parser(sub)
    return parser


def _version() -> str:
    from tether import __version__
    return f"tether {__version__}"


def main(argv: list[str] | None = None) -> int:
    """Run one command. tether's own errors (``tether.errors.TetherError``: bad input, named) and the
    operating system's (a missing file, a full disk) print one line and exit 1; anything else is a
    bug and keeps its traceback. ``TETHER_DEBUG=1`` re-raises every error with its traceback."""
    from tether.errors import TetherError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if os.environ.get("TETHER_DEBUG"):
            raise
        print(f"tether {args.command}: interrupted", file=sys.stderr)
        return 130
    except (TetherError, OSError) as err:
        if os.environ.get("TETHER_DEBUG"):
            raise
        print(f"tether {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 1


def one_line(err: BaseException) -> str:
    """The error's message on one line (an OSError without one: its errno text and file name)."""
    text = str(err) or type(err).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
