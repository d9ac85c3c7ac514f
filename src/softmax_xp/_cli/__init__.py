"""Layer 5: the ``softmax-xp`` command (``check`` and ``bench``).

Front ends use only the public API of softmax_xp and the frameworks themselves.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``softmax-xp`` and ``python -m softmax_xp``."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="softmax-xp",
        description="softmax_xp: check every kernel against each framework's autodiff, or benchmark it.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "check",
        help="every kernel on every installed backend and device vs that framework's autodiff",
        add_help=False,
    )
    sub.add_parser(
        "bench", help="timings against peers and the copy-bandwidth roofline", add_help=False
    )
    if not args or args[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "check":
        from ._check import main as check_main

        return check_main(rest)
    if command == "bench":
        from ._bench import main as bench_main

        return bench_main(rest)
    parser.parse_args(args)  # prints the usage error and exits with status 2
    return 2  # pragma: no cover
