"""What each part of the uncertainty policy is worth, and the seed's importance mix beside it:
`python experiments/ablate_sampling.py --help`.

    python experiments/ablate_sampling.py                     # worlds 5-8 and 1-4, 500 px, about 25 min
    python experiments/ablate_sampling.py --data data/train_worlds.h5 --worlds 4 --max-sessions 12 \
        --codebook outputs/lwo/codebook-worlds1-3.npz --output outputs/ablate_sampling_world4.md   # where choices are made

Each variant changes one thing of the hand-made uncertainty policy (``agents.policies.UncertaintyPolicy``):
its weights per block class, sprite box and status bar, or how far ahead it predicts the camera. Beside them:
uniform random, and the seed's importance sampler (0.4 MC-dropout + 0.3 attention + 0.3 temporal error of the
SPT, hierarchical budget, 60/40 hybrid; ``--with-importance``), all on the level-agnostic reconstructor, on the
sessions ``evaluate_policies.py`` picks. Writes a markdown table per world group to --output.
"""
from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm.auto import tqdm

from agents.policies import UNCERTAINTY_WEIGHTS, UncertaintyPolicy, make_policy
from experiments.evaluate_policies import pick_sessions
from experiments.evaluate_reconstructors import markdown_table
from models.evaluation import summarize
from models.policy_replay import replay_offline
from models.tile_reconstructor import DEFAULT_CODEBOOK, TileReconstructor, load_codebook
from sgaps_env.cli import require_at_least, run_script
from sgaps_env.worlds import HELD_OUT_GROUP, TRAINING_GROUP, stage_group

CONFIRMED, GUESSED, UNCERTAIN, UNSEEN, SPRITES, STATUS = UNCERTAINTY_WEIGHTS
#: ``name: (weights, camera lookahead)``; the weights are per block class (confirmed, guessed, uncertain, unseen),
#: then the sprite boxes', then the status bar's.
VARIANTS = {
    "uncertainty (shipped)": (UNCERTAINTY_WEIGHTS, 1),
    "blocks named on few samples count as confirmed": ((CONFIRMED, CONFIRMED, UNCERTAIN, UNSEEN, SPRITES, STATUS), 1),
    "coverage only: sampled or not": ((CONFIRMED, CONFIRMED, CONFIRMED, UNSEEN, SPRITES, STATUS), 1),
    "sprite boxes weigh as confirmed blocks": ((*UNCERTAINTY_WEIGHTS[:4], CONFIRMED, STATUS), 1),
    "status bar weighs as guessed blocks": ((*UNCERTAINTY_WEIGHTS[:5], GUESSED), 1),
    "hybrid floor: confirmed blocks at 64": ((64, *UNCERTAINTY_WEIGHTS[1:5], 64), 1),
    "no camera prediction (lookahead 0)": (UNCERTAINTY_WEIGHTS, 0),
    "camera predicted 2 frames ahead": (UNCERTAINTY_WEIGHTS, 2),
}


@dataclass
class Args:
    """Options of the sampling ablation."""

    data: list[str] = field(default_factory=lambda: ["data/eval_heldout.h5", "data/eval_worlds.h5"])
    """session files with true frames (worlds 5-8 and 1-4)"""
    worlds: list[int] = field(default_factory=list)
    """only sessions of these worlds (all if empty)"""
    codebook: Path = DEFAULT_CODEBOOK
    """tile codebook (one counted without --worlds makes those worlds unseen, as 5-8 are)"""
    budget: int = 500
    """pixels per frame"""
    max_steps: int | None = 90
    """steps per session, from its start"""
    max_sessions: int | None = 32
    """sessions, spread over the stages"""
    score_every: int = 5
    """score every n-th frame (every frame is reconstructed)"""
    with_importance: bool = True
    """also score the seed's importance sampler (SPT maps; about 0.1 s a frame)"""
    seed: int = 0
    """seed of the policies' draws"""
    output: Path = Path("outputs/ablate_sampling.md")
    """the markdown tables"""
    progress: bool = True
    """show progress bars"""


def main(args: Args) -> list[dict]:
    require_at_least(args, ("budget", "score_every"))
    require_at_least(args, ("max_steps", "max_sessions"), none_means="for all")
    sessions = pick_sessions(args)
    codebook = load_codebook(args.codebook)[0]
    variants = [("random", None), *VARIANTS.items()] + ([("importance (seed: 0.4 / 0.3 / 0.3, 60/40)", None)]
                                                         if args.with_importance else [])
    rows = []
    for name, setting in variants:
        reconstructor = TileReconstructor(codebook)
        if setting is not None:
            policy = UncertaintyPolicy(args.budget, reconstructor, *setting)
        else:
            policy = make_policy("importance" if name.startswith("importance") else "random", args.budget)
        for loaded in tqdm(sessions, desc=name[:40], unit="session", disable=not args.progress):
            scored, _ = replay_offline(policy, reconstructor, loaded.frames, loaded.states, loaded.masks, "rgb",
                                       seed=loaded.session.seed(args.seed, args.budget), score_every=args.score_every,
                                       with_ssim=False)
            group = stage_group(loaded.session.checkpoint_key.removeprefix("smb1-"))
            rows += [{**row, "variant": name, "group": group} for row in scored]
    table = summarize(rows, ("group", "variant"), ("psnr", "foreground_psnr", "downlink_bytes", "policy_ms"))
    lines = [f"# The uncertainty policy's parts ({args.budget} px, tiles reconstructor)", "",
             f"Command: `python experiments/ablate_sampling.py {shlex.join(sys.argv[1:])}`", "",
             f"{len(sessions)} sessions, the first {args.max_steps} steps, every {args.score_every}. frame scored.", ""]
    for group in (HELD_OUT_GROUP, TRAINING_GROUP):
        entries = [e for e in table if e["group"] == group]
        if not entries:
            continue
        base = next(e["psnr"] for e in entries if e["variant"] == "uncertainty (shipped)")
        for entry in entries:
            entry["vs_shipped"] = entry["psnr"] - base
        order = [name for name, _ in variants]
        entries.sort(key=lambda e: order.index(e["variant"]))
        lines += [f"## {group}", "", markdown_table(entries, ["variant", "frames", "psnr", "vs_shipped",
                                                              "foreground_psnr", "downlink_bytes", "policy_ms"]), ""]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {args.output}")
    return table


if __name__ == "__main__":
    run_script(main, Args, __doc__)
