"""Reading a model checkpoint file safely: the one owner of the checks every checkpoint format shares.

A checkpoint is untrusted input. :func:`read_payload` loads it with ``torch.load(weights_only=True)``
(plain containers, numbers, strings and tensors only) and checks its format tag and version;
:func:`check_state_dict` checks that the weights are exactly the tensors, of exactly the shapes, that
the model its config describes has, comparing against a model built on the meta device (nothing is
allocated), before any model is built; :func:`check_config_fields` checks the config itself first. The
SPT (``models.spt``) and the MAEs (``models.mae``) read their files through all three.
"""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Callable

import torch
from torch import nn


def read_payload(path: str | Path, file_format: str, version: int, what: str, how_to_make: str) -> dict:
    """The raw checkpoint dict at ``path``, after checking that it is a ``file_format`` file of a version up to
    ``version``. ``what`` names the kind in messages ("SPT"); ``how_to_make`` says how to get one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} checkpoint at {path}: {how_to_make}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a file that is not a checkpoint
        raise ValueError(f"{path} is not a readable torch checkpoint ({error})") from error
    if not isinstance(payload, dict) or payload.get("format") != file_format:
        raise ValueError(f"{path} is not an {what} checkpoint (no format={file_format!r} entry)")
    found = payload.get("version", 0)
    if isinstance(found, bool) or not isinstance(found, int):
        raise ValueError(f"{path} has checkpoint version {found!r}: expected an int")
    if found > version:
        raise ValueError(f"{path} is checkpoint version {found}; this sgaps reads up to {version}: upgrade sgaps")
    return payload


def check_state_dict(state_dict, build: Callable[[], nn.Module], writer: str) -> None:
    """A ValueError unless ``state_dict`` holds exactly the float tensors, of exactly the shapes, of the model
    ``build()`` makes (built on the meta device). ``writer`` names the function that writes such files."""
    if not isinstance(state_dict, dict) or not all(isinstance(value, torch.Tensor) for value in state_dict.values()):
        raise ValueError("the checkpoint's state_dict must be a dict of parameter name -> tensor")
    with torch.device("meta"):
        expected = {name: tuple(tensor.shape) for name, tensor in build().state_dict().items()}
    missing, unexpected = sorted(set(expected) - set(state_dict)), sorted(map(str, set(state_dict) - set(expected)))
    if missing or unexpected:
        raise ValueError(f"the checkpoint's weights do not match its config: missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}: the file is damaged or was not written by {writer}")
    for name, shape in expected.items():
        tensor = state_dict[name]
        if tuple(tensor.shape) != shape or not tensor.is_floating_point():
            raise ValueError(f"the checkpoint's weight {name} is {tensor.dtype} {tuple(tensor.shape)} but its config "
                             f"needs a float tensor of shape {shape}: the file is damaged or its config was edited")


def check_config_fields(config_class, values, limits: dict[str, tuple[int, int]],
                        choices: dict[str, tuple[str, ...]] | None = None) -> None:
    """A ValueError unless ``values`` (a checkpoint's config) holds only fields of the dataclass
    ``config_class``, each of its default's type: bools as bools, ints within ``limits[name]`` (inclusive),
    strings among ``choices[name]``, floats in [0, 1) (the dropout rates)."""
    what = config_class.__name__
    if not isinstance(values, dict):
        raise ValueError(f"a checkpoint's config must be a dict of {what} fields, got {type(values).__name__}")
    known = {f.name: f for f in fields(config_class)}
    unknown = sorted(map(str, set(values) - set(known)))
    if unknown:
        raise ValueError(f"unknown {what} fields {unknown}: the checkpoint is from a newer version of sgaps")
    for name, value in values.items():
        default = known[name].default
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{what}.{name} must be True or False, got {value!r}")
        elif isinstance(default, str):
            if value not in (choices or {}).get(name, ()):
                raise ValueError(f"{what}.{name} must be one of {(choices or {}).get(name)}, got {value!r}")
        elif isinstance(default, int):
            low, high = limits[name]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{what}.{name} must be an int in [{low}, {high}], got {value!r}")
        elif not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
            raise ValueError(f"{what}.{name} must be a number in [0, 1), got {value!r}")
