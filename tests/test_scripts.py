"""Every script's command line: `--help` documents every option, and bad input exits with status 2 naming it.

The scripts run as subprocesses, exactly as `python experiments/demo.py --help` runs, all at once
(a script that imports torch takes seconds to start). Options are read from each script's `Args`
class with `ast`, so this file imports none of the scripts.
"""
import ast
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "experiments").glob("*.py")
                 if path.name not in ("__init__.py", "cli.py")) + ["agents/collect.py", "agents/explore.py", "agents/train_player.py",
                                                       "agents/stream.py"]

#: For each script, arguments that its own range checks (``validate``) reject, and the option the error names.
REJECTED_BY_VALIDATE = {
    "experiments/ablate_memory.py": (["--sample-count", "0"], "--sample-count"),
    "experiments/benchmark_collect.py": (["--steps", "0"], "--steps"),
    "experiments/ablate_tiles.py": (["--budget", "0"], "--budget"),
    "experiments/ablate_sampling.py": (["--budget", "0"], "--budget"),
    "experiments/build_atlas.py": (["--max-steps", "0"], "--max-steps"),
    "experiments/build_codebook.py": (["--every", "0"], "--every"),
    "experiments/benchmark_env.py": (["--rounds", "0"], "--rounds"),
    "experiments/coverage.py": (["missing.h5", "--target", "1.5"], "--target"),
    "agents/explore.py": (["--max-minutes", "0"], "--max-minutes"),
    "experiments/benchmark_reconstructor.py": (["--frames", "8", "--batch", "32"], "--frames"),
    "experiments/benchmark_server.py": (["--frames", "0"], "--frames"),
    "experiments/demo.py": (["--steps", "0"], "--steps"),
    "experiments/evaluate_players.py": (["--episodes", "0"], "--episodes"),
    "experiments/evaluate_policies.py": (["--budgets", "0"], "--budgets"),
    "experiments/evaluate_reconstructors.py": (["--score-every", "0"], "--score-every"),
    "experiments/seed_table.py": (["--score-every", "0"], "--score-every"),
    "experiments/tile_vocabulary.py": (["--max-steps", "0"], "--max-steps"),
    "experiments/train_reconstructor.py": (["--drop-max", "1.5"], "--drop-max"),
    "experiments/train_sampler.py": (["--timesteps", "10"], "--timesteps"),
}


def args_fields(script: str) -> dict[str, str]:
    """``{field name: annotation source}`` of the script's ``Args`` dataclass."""
    return {name: annotation for name, (annotation, _) in args_fields_with_help(script).items()}


def args_fields_with_help(script: str) -> dict[str, tuple[str, str]]:
    """``{field name: (annotation source, the docstring under the field)}`` of the script's ``Args``."""
    tree = ast.parse((ROOT / script).read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Args":
            fields = {}
            for item, following in zip(node.body, node.body[1:] + [None]):
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    docstring = following.value.value if (isinstance(following, ast.Expr) and isinstance(
                        following.value, ast.Constant) and isinstance(following.value.value, str)) else ""
                    fields[item.target.id] = (ast.unparse(item.annotation), docstring)
            return fields
    raise AssertionError(f"{script} has no class Args")


def option(name: str) -> str:
    return "--" + name.replace("_", "-")


def run_all(commands: dict) -> dict[str, subprocess.CompletedProcess]:
    """Run ``{key: argv}`` concurrently from the repository root; a wide terminal keeps option names unbroken."""
    environment = {**os.environ, "COLUMNS": "240", "SDL_VIDEODRIVER": "dummy"}

    def run(argv):
        return subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=300,
                              env=environment)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(commands, pool.map(run, commands.values())))


@pytest.fixture(scope="module")
def helps() -> dict[str, subprocess.CompletedProcess]:
    return run_all({script: [script, "--help"] for script in SCRIPTS})


def test_every_script_is_covered():
    assert "experiments/demo.py" in SCRIPTS and "experiments/cli.py" not in SCRIPTS
    assert not (ROOT / "experiments" / "cli.py").exists(), "experiments/cli.py is replaced by tyro: delete it"


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_exits_0_and_lists_every_option(script, helps):
    result = helps[script]
    assert result.returncode == 0, result.stderr
    fields = args_fields(script)
    assert fields, f"{script}'s Args has no fields"
    for name, (annotation, docstring) in args_fields_with_help(script).items():
        if "Positional" in annotation:  # listed by its help text, not as an option
            assert " ".join(docstring.split()[:3]) in " ".join(result.stdout.split()), f"{name} missing"
            continue
        assert option(name) in result.stdout, f"{option(name)} missing from {script} --help"
        if annotation == "bool":
            assert f"--no-{name.replace('_', '-')}" in result.stdout


def _bad_commands() -> dict[tuple[str, str], list[str]]:
    commands = {}
    for script in SCRIPTS:
        commands[(script, "--no-such-option")] = [script, "--no-such-option", "1"]
        numeric = next((name for name, annotation in args_fields(script).items() if annotation in ("int", "float")),
                       None)
        if numeric is not None:
            commands[(script, option(numeric))] = [script, option(numeric), "not-a-number"]
        if script in REJECTED_BY_VALIDATE:
            argv, named = REJECTED_BY_VALIDATE[script]
            commands[(script, named)] = [script, *argv]
    return commands


BAD_COMMANDS = _bad_commands()


@pytest.fixture(scope="module")
def bad_runs() -> dict[tuple[str, str], subprocess.CompletedProcess]:
    return run_all(BAD_COMMANDS)


@pytest.mark.slow
@pytest.mark.parametrize("key", list(BAD_COMMANDS), ids=[" ".join(argv) for argv in BAD_COMMANDS.values()])
def test_bad_input_exits_2_and_names_the_option(key, bad_runs):
    script, named = key
    result = bad_runs[key]
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert named in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_require_at_least_names_the_first_option_out_of_range():
    from types import SimpleNamespace

    from sgaps_env.cli import require_at_least

    args = SimpleNamespace(steps=3, max_steps=None, warmup=-1, rounds=0)
    require_at_least(args, ("steps",))
    require_at_least(args, ("max_steps",), none_means="for all")  # left out: allowed
    with pytest.raises(ValueError, match=r"^--rounds must be at least 1, got 0$"):
        require_at_least(args, ("steps", "rounds", "warmup"))
    with pytest.raises(ValueError, match=r"^--warmup must be 0 or more, got -1$"):
        require_at_least(args, ("warmup",), minimum=0)
    with pytest.raises(ValueError, match=r"^--steps must be at least 5 \(or None for all\), got 3$"):
        require_at_least(args, ("max_steps", "steps"), minimum=5, none_means="for all")
