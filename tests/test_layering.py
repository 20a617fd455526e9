"""The layers import in one direction: sgaps_env <- models <- agents <- experiments.

Every ``import`` and ``from ... import`` in every module of the four packages is read with ``ast``:
at module level and inside functions and classes, relative imports resolved against the module's
package, and ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name. A
``sgaps_server`` package (the live server) sits above ``models`` and ``agents``. The environment package
loads no checkpoint: nothing in ``sgaps_env`` imports torch, and making and stepping the env loads
neither torch nor the upper layers.
"""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Package -> the packages of this project it may import (itself included).
ALLOWED: dict[str, frozenset[str]] = {
    "sgaps_env": frozenset({"sgaps_env"}),
    "models": frozenset({"sgaps_env", "models"}),
    "agents": frozenset({"sgaps_env", "models", "agents"}),
    "sgaps_server": frozenset({"sgaps_env", "models", "agents", "sgaps_server"}),
    "experiments": frozenset({"sgaps_env", "models", "agents", "sgaps_server", "experiments"}),
}
PROJECT_PACKAGES = frozenset(ALLOWED)

#: Third-party packages a layer must not import at all: the env never loads a checkpoint.
FORBIDDEN_EXTERNAL: dict[str, frozenset[str]] = {"sgaps_env": frozenset({"torch"})}


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    statement: str
    target: str
    """the imported module's dotted name (resolved when relative)"""

    def describe(self, root: Path) -> str:
        return f"{self.path.relative_to(root)}:{self.line}: {self.statement}"


def _dynamic_import_name(node: ast.Call) -> str | None:
    """The literal module name of ``importlib.import_module("x")`` or ``__import__("x")``."""
    func = node.func
    named = (isinstance(func, ast.Attribute) and func.attr == "import_module") or \
            (isinstance(func, ast.Name) and func.id in ("__import__", "import_module"))
    if named and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        return node.args[0].value
    return None


def imports_of(path: Path, root: Path) -> list[Import]:
    """Every import in the module at ``path`` (anywhere in it), with relative names resolved."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    module_parts = list(path.relative_to(root).with_suffix("").parts)
    package = module_parts[:-1]  # for pkg/__init__.py the package is pkg itself
    found = []
    lines = source.splitlines()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom, ast.Call)):
            continue
        statement = lines[node.lineno - 1].strip()
        if isinstance(node, ast.Import):
            found += [Import(path, node.lineno, statement, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            elif node.level > len(package):
                base = "<beyond the top-level package>"
            else:
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            found.append(Import(path, node.lineno, statement, base))
        elif isinstance(node, ast.Call):
            name = _dynamic_import_name(node)
            if name is not None:
                found.append(Import(path, node.lineno, statement, name))
    return found


def layering_violations(root: Path) -> list[str]:
    """``file:line: statement (why)`` for every import that points up the layers, or out of bounds."""
    violations = []
    for package, allowed in ALLOWED.items():
        directory = root / package
        if not directory.is_dir():
            continue
        for path in sorted(directory.rglob("*.py")):
            for item in imports_of(path, root):
                top = item.target.split(".")[0]
                if item.target.startswith("<"):
                    violations.append(f"{item.describe(root)}  (relative import beyond the top-level package)")
                elif top in PROJECT_PACKAGES and top not in allowed:
                    violations.append(f"{item.describe(root)}  ({package} may import only {sorted(allowed)})")
                elif top in FORBIDDEN_EXTERNAL.get(package, ()):
                    violations.append(f"{item.describe(root)}  ({package} must not import {top}: the env takes a "
                                      "scorer object and never loads a checkpoint)")
    return violations


def test_imports_point_only_down_the_layers():
    for package in ("sgaps_env", "models", "agents", "experiments"):
        assert (ROOT / package).is_dir(), f"the layer {package}/ is missing"
    violations = layering_violations(ROOT)
    report = "\n".join(violations)
    print(report)
    assert not violations, ("imports must point sgaps_env <- models <- agents <- experiments (a server package may "
                            f"import models and agents); these point the other way:\n{report}")


def test_the_checker_reads_every_module_of_each_layer():
    modules = {package: sorted((ROOT / package).rglob("*.py")) for package in ("sgaps_env", "models", "agents",
                                                                                "experiments")}
    assert all(len(paths) >= 3 for paths in modules.values()), modules
    # the environment itself imports its own modules (coords, state, ...): the reader sees them
    targets = {item.target for item in imports_of(ROOT / "sgaps_env" / "env.py", ROOT)}
    assert {"sgaps_env.coords", "sgaps_env.state", "gymnasium"} <= targets


def _write_tree(root: Path, files: dict[str, str]) -> None:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")


def test_the_checker_catches_upward_imports_wherever_they_are_written(tmp_path):
    _write_tree(tmp_path, {
        "sgaps_env/__init__.py": "from sgaps_env.env import Env\n",
        # the old env.py: a function-level import of the checkpoint end of the pipeline
        "sgaps_env/env.py": """\
            import numpy as np

            class Env:
                def __init__(self, scorer=None):
                    if scorer is None:
                        from models.scoring import default_scorer
                        scorer = default_scorer("rgb")
            """,
        "sgaps_env/loader.py": "import torch.nn\n",
        "sgaps_env/sub/__init__.py": "from ...agents import players\n",
        "models/__init__.py": "from . import metrics\nfrom .metrics import psnr\nimport sgaps_env.coords\n",
        "models/metrics.py": "from ..agents.players import RandomPlayer\nimport torch\n",
        "agents/__init__.py": "",
        "agents/collect.py": "from experiments.cli import parse_args\n",
        "agents/players.py": "import importlib\nimportlib.import_module('experiments.demo')\n",
        "experiments/demo.py": "import agents, models, sgaps_env\nfrom sgaps_server import app\n",
        "sgaps_server/app.py": "from agents.players import RandomPlayer\nimport experiments.demo\n",
    })
    violations = layering_violations(tmp_path)
    report = "\n".join(violations)
    expected = [
        "sgaps_env/env.py:6: from models.scoring import default_scorer  (sgaps_env may import only ['sgaps_env'])",
        "sgaps_env/loader.py:1: import torch.nn  (sgaps_env must not import torch",
        "sgaps_env/sub/__init__.py:1: from ...agents import players  (relative import beyond",
        "models/metrics.py:1: from ..agents.players import RandomPlayer  (relative import beyond",
        "agents/collect.py:1: from experiments.cli import parse_args  (agents may import only",
        "agents/players.py:2: importlib.import_module('experiments.demo')  (agents may import only",
        "sgaps_server/app.py:2: import experiments.demo  (sgaps_server may import only",
    ]
    for line in expected:
        assert any(violation.startswith(line) for violation in violations), f"missed {line!r} in:\n{report}"
    assert len(violations) == len(expected), report  # models' torch, sibling and downward imports are fine


def test_relative_imports_resolve_against_the_modules_package(tmp_path):
    _write_tree(tmp_path, {
        "agents/__init__.py": "from .players import RandomPlayer\nfrom . import collect\n",
        "agents/tools/helpers.py": "from ..players import RandomPlayer\nfrom .. import collect\nfrom .util import x\n",
    })
    targets = {(path.name, item.target) for path in (tmp_path / "agents/__init__.py",
                                                    tmp_path / "agents/tools/helpers.py")
               for item in imports_of(path, tmp_path)}
    assert targets == {("__init__.py", "agents.players"), ("__init__.py", "agents"),
                       ("helpers.py", "agents.players"), ("helpers.py", "agents"),
                       ("helpers.py", "agents.tools.util")}
    assert layering_violations(tmp_path) == []


def test_making_and_playing_the_env_loads_neither_torch_nor_the_upper_layers():
    code = textwrap.dedent("""
        import sys
        import gymnasium as gym
        import sgaps_env
        env = gym.make("SGAPS-SMB-v0", stage="1-1", sample_count=16, return_frame=True)
        env.reset(seed=0)
        env.step(env.action_space.sample())
        loaded = sorted(name for name in sys.modules if name.split(".")[0] in
                        ("torch", "models", "agents", "experiments", "sgaps_server"))
        print("LOADED", loaded)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout, result.stdout


@pytest.mark.parametrize("package", sorted(FORBIDDEN_EXTERNAL))
def test_forbidden_packages_are_named_in_the_report(package, tmp_path):
    _write_tree(tmp_path, {f"{package}/a.py": "def f():\n    import torch\n    return torch.load('x.pt')\n"})
    assert layering_violations(tmp_path) == [
        f"{package}/a.py:2: import torch  ({package} must not import torch: the env takes a scorer object and never "
        "loads a checkpoint)"]
