'''The command-line convention every script of the project shares.

A script declares its options once, as a typed dataclass with a docstring under each field, and tyro
turns it into the command line (``--help`` lists every option with its type, default and help)::

    @dataclass
    class Args:
        steps: int = 300
        """environment steps to play"""

    def main(args: Args) -> dict: ...

    if __name__ == "__main__":
        run_script(main, Args, __doc__)

Options tyro rejects (an unknown name, a value of the wrong type or outside a ``Literal``) exit with
status 2 and tyro's message. A ``ValueError`` (``SessionFileError`` included) or a missing file raised
by ``main`` is bad input as well: it is printed as ``error: ...`` and the script exits with status 2,
without a traceback. This module lives in ``sgaps_env`` so that scripts of every layer (``agents`` and
``experiments``) can share it.
'''
from __future__ import annotations

import sys
from typing import Any, Callable, Iterable, Sequence, TypeVar

import tyro

ArgsT = TypeVar("ArgsT")
ResultT = TypeVar("ResultT")


def run_script(main: Callable[[ArgsT], ResultT], args_type: type[ArgsT], description: str | None = None,
               argv: Sequence[str] | None = None) -> ResultT:
    """Parse ``argv`` (default: the command line) into ``args_type`` with tyro and return ``main(args)``."""
    args = tyro.cli(args_type, description=description, args=argv)
    try:
        return main(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def require_at_least(args: Any, names: Iterable[str], minimum: int = 1, none_means: str | None = None) -> None:
    """The range check tyro's types cannot express: each option ``names`` of ``args`` must be ``>= minimum``.

    With ``none_means`` (e.g. ``"for all"``) an option may also be None (left out), and the message says so.
    Raises a ValueError naming the first option out of range, as ``--kebab-case``.
    """
    for name in names:
        value = getattr(args, name)
        if none_means is not None and value is None:
            continue
        if value < minimum:
            bound = "0 or more" if minimum == 0 else f"at least {minimum}"
            also = f" (or None {none_means})" if none_means is not None else ""
            raise ValueError(f"--{name.replace('_', '-')} must be {bound}{also}, got {value}")
