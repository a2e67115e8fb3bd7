"""The ``ubernet`` command: a thin layer over library functions.

Each subcommand lives in its own module ``ubernet.cli.<module>`` exposing ``add_parser(subparsers)`` and
``run(args) -> int``. Modules are imported lazily so ``ubernet --help`` stays fast (torch is imported only by the
subcommands that need it).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ubernet.errors import UbernetError

#: subcommand name -> (module under ubernet.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "train and evaluate a 7-task UberNet on the synthetic world, end to end"),
    "synth": ("synth", "write samples of the synthetic world in standard file formats"),
    "train": ("train", "train from a YAML config"),
    "eval": ("evaluate", "evaluate a checkpoint"),
    "predict": ("predict", "run a checkpoint on images and write every task's output"),
    "export": ("export", "export the dense tasks of a checkpoint to ONNX"),
    "score": ("score", "evaluate saved outputs of any method with the exact published protocols"),
    "data": ("data", "inspect datasets on disk (ubernet data stats ...)"),
    "bench": ("bench", "benchmarks: speed, memory, synth"),
}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, object]]:
    parser = argparse.ArgumentParser(prog="ubernet", description=__doc__.splitlines()[0])
    from ubernet import __version__

    parser.add_argument("--version", action="version", version=f"ubernet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules: dict[str, object] = {}
    for name, (module, help_) in COMMANDS.items():
        try:
            mod = importlib.import_module(f"ubernet.cli.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"ubernet.cli.{module}":
                raise
            continue  # not built yet: the command is simply not offered
        p = sub.add_parser(name, help=help_, description=help_)
        mod.add_parser(p)  # type: ignore[attr-defined]
        modules[name] = mod
    return parser, modules


def main(argv: Sequence[str] | None = None) -> int:
    parser, modules = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # key=value overrides after an option (`--out x train.steps=5`): argparse takes positionals in one run only
        if isinstance(getattr(args, "overrides", None), list) and all("=" in e and not e.startswith("-")
                                                                      for e in extra):
            args.overrides += extra
        else:
            parser.parse_args(argv)  # argparse's own message for what it does not recognise (exits 2)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(modules[args.command].run(args) or 0)  # type: ignore[attr-defined]
    except UbernetError as e:
        status = getattr(e, "exit_status", None)  # a run stopped by a signal, its checkpoint written
        if status is not None:
            print(f"ubernet {args.command}: {e}", file=sys.stderr)
            return int(status)
        print(f"ubernet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the file system said no (read-only or full disk, a file where a folder should be)
        where = f" ({e.filename})" if getattr(e, "filename", None) and str(e.filename) not in str(e) else ""
        print(f"ubernet {args.command}: error: {e}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
