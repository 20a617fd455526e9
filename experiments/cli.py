"""A command line built from a dataclass of arguments, so a script's options are declared once.

Each field of the dataclass becomes an option ``--field-name`` (underscores become dashes) with the
field's type, default and help text::

    @dataclass
    class Args:
        steps: int = arg(300, "environment steps to play")
        pattern: str = arg("random", "fixed sampling pattern", choices=["random", "uniform_grid"])
        progress: bool = arg(True, "show progress bars")       # --progress / --no-progress
        json: str | None = arg(None, "write the numbers to this JSON file")

    args = parse_args(Args, __doc__)

Supported field types: ``int``, ``float``, ``str``, ``pathlib.Path``, ``bool`` (a ``--flag`` /
``--no-flag`` pair), ``X | None`` (the option takes an ``X``; its default may be ``None``),
``Literal[...]`` (the values become the choices) and ``list[X]`` (one or more values).
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Sequence, TypeVar

T = TypeVar("T")

_SCALAR_TYPES = (int, float, str, Path)


def arg(default: Any, help: str, *, choices: Sequence[Any] | None = None) -> Any:
    """A dataclass field with a default, a one-line help text and optionally a fixed set of choices."""
    metadata: dict[str, Any] = {"help": help}
    if choices is not None:
        metadata["choices"] = list(choices)
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default and keeps the description's line breaks."""


def _option_kwargs(name: str, hint: Any) -> dict[str, Any]:
    """argparse keyword arguments (type, action, nargs, choices, metavar) for a field's type hint."""
    origin, type_args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in type_args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"field {name!r}: unions other than 'X | None' are not supported, got {hint!r}")
        kwargs = _option_kwargs(name, inner[0])
        if kwargs.get("action") is argparse.BooleanOptionalAction:
            raise TypeError(f"field {name!r}: 'bool | None' is not supported; use a plain bool")
        return kwargs
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin is Literal:
        value_types = {type(value) for value in type_args}
        if len(value_types) != 1 or not value_types <= set(_SCALAR_TYPES):
            raise TypeError(f"field {name!r}: Literal values must all be int, float or str, got {hint!r}")
        return {"type": value_types.pop(), "choices": list(type_args)}
    if origin is list:
        if len(type_args) != 1 or type_args[0] not in _SCALAR_TYPES:
            raise TypeError(f"field {name!r}: lists must be list[int], list[float], list[str] or list[Path], got {hint!r}")
        return {"type": type_args[0], "nargs": "+"}
    if hint in _SCALAR_TYPES:
        return {"type": hint}
    raise TypeError(f"field {name!r} has type {hint!r}, which the command line cannot parse: use int, float, str, "
                    "Path, bool, X | None, Literal[...] or list[X]")


def build_parser(cls: type, description: str | None = None) -> argparse.ArgumentParser:
    """An ``argparse.ArgumentParser`` with one option per field of the dataclass ``cls``."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"build_parser needs a dataclass type, got {cls!r}")
    hints = typing.get_type_hints(cls)
    parser = argparse.ArgumentParser(description=description, formatter_class=_HelpFormatter)
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        help_text = field.metadata.get("help")
        if not help_text:
            raise TypeError(f"field {field.name!r} of {cls.__name__} has no help text: declare it with "
                            f"arg(default, 'what it does') or field(metadata={{'help': ...}})")
        kwargs = _option_kwargs(field.name, hints[field.name])
        if "choices" in field.metadata:
            kwargs["choices"] = list(field.metadata["choices"])
        if field.default is not dataclasses.MISSING:
            kwargs["default"] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            kwargs["default"] = field.default_factory()
        else:
            kwargs["required"] = True
        if "choices" in kwargs and "action" not in kwargs:
            kwargs["metavar"] = "{" + ",".join(str(choice) for choice in kwargs["choices"]) + "}"
        option = "--" + field.name.replace("_", "-")
        parser.add_argument(option, dest=field.name, help=help_text.replace("%", "%%"), **kwargs)
    return parser


def parse_args(cls: type[T], description: str | None = None, argv: Sequence[str] | None = None) -> T:
    """Parse ``argv`` (default: ``sys.argv[1:]``) into an instance of the dataclass ``cls``.

    ``--help`` lists every field with its help text and default; a bad value exits with status 2 and
    a message naming the option, as argparse does.
    """
    namespace = build_parser(cls, description).parse_args(argv)
    return cls(**vars(namespace))
