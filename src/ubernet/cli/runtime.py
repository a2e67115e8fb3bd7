"""The ``--precision`` option of the commands that run a network, and the line each prints when it starts."""

from __future__ import annotations

import argparse

from ubernet.hardware import PRECISIONS, Precision, announce, resolve_precision

PRECISION_HELP = ("auto (default): bf16 where the CPU runs it natively (AMX-BF16, AVX512-BF16), fp32 elsewhere; "
                  "fp32; bf16 (emulated, so slower than fp32, on CPUs without native bf16)")


def add_precision_option(p: argparse.ArgumentParser, *, default_help: str = "auto") -> None:
    """``--precision auto|fp32|bf16``; ``--bf16`` / ``--no-bf16`` stay accepted as ``--precision bf16|fp32``."""
    text = PRECISION_HELP if default_help == "auto" else \
        PRECISION_HELP.replace("auto (default)", "auto") + f" (default: {default_help})"
    p.add_argument("--precision", choices=PRECISIONS, default=None, help=text)
    p.add_argument("--bf16", action="store_const", const="bf16", dest="precision", help=argparse.SUPPRESS)
    p.add_argument("--no-bf16", action="store_const", const="fp32", dest="precision", help=argparse.SUPPRESS)


def start(command: str, requested: str | None, default: str = "auto") -> Precision:
    """Resolve the precision (``requested``, else ``default``) and print what the command runs on."""
    precision = resolve_precision(requested or default)
    announce(command, precision)
    return precision
