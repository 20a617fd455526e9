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
from typing import Callable, Sequence, TypeVar

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
