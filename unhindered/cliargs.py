"""What both command lines share: `--version`, `--verbose`, options accepted before and
after the command (`-c FILE` is documented after it), and aligned tables."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from unhindered.version import version_line

AFTER = "_after_command"  # suffix of the dest an option gets after the command


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=version_line(parser.prog))


def _commands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers of the full commands (`probes list`, not `probes`)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [parser]
    # Aliases share their parser: each once.
    found = {id(p): p for a in subs for c in a.choices.values() for p in _commands(c)}
    return list(found.values())


def add_placed(parser: argparse.ArgumentParser, *flags: str, dest: str, **kwargs) -> None:
    """Adds an option to the program and to every full command, so it may come before or
    after the command; `resolve` then reads it. Call after every command is added."""
    parser.add_argument(*flags, dest=dest, **kwargs)
    for command in _commands(parser):
        command.add_argument(*flags, dest=dest + AFTER, default=argparse.SUPPRESS, **kwargs)


def resolve(parser: argparse.ArgumentParser, args: argparse.Namespace, dest: str,
            same=lambda a, b: a == b) -> None:
    """Folds the option given after the command into `dest`; the same option given
    in both places with different values is an error (exit status 2)."""
    after = vars(args).pop(dest + AFTER, None)
    if after is None:
        return
    before = getattr(args, dest)
    if before not in (None, False) and not same(before, after):
        flag = "/".join(next(a.option_strings for a in parser._actions if a.dest == dest))
        parser.error(f"{flag} given twice with different values ({before} and {after}): "
                     "give it once, after the command")
    setattr(args, dest, after)


def same_file(a: Path, b: Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns aligned for a terminal, two spaces apart; numbers to the right."""
    cells = [[str(c) for c in header], *[["-" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    numeric = [any(isinstance(r[i], int | float) for r in rows)
               and all(isinstance(r[i], int | float) or r[i] is None for r in rows)
               for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if num else c.ljust(w)
                       for c, w, num in zip(r, widths, numeric, strict=True)).rstrip()
             for r in cells]
    return "\n".join(lines)
