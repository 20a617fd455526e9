"""Train the Sparse Pixel Transformer on recorded sessions: `python experiments/train_reconstructor.py --help`.

    python agents/collect.py --player heuristic --stages 1-1 1-2 2-1 --frames 6000 --color rgb \
        --workers 2 --output data/train.h5
    python experiments/train_reconstructor.py --data data/train.h5 --output runs/spt

What happens, top to bottom:
0. Every train and val session is checked to hold no frame of worlds 5-8 (sgaps_env.worlds: those are
   held out for evaluation), and the checkpoint's metadata records the split.
1. The level priors (per-pixel mode of every level area's background, sprites left out) are built
   from the TRAIN split of the sessions (sgaps_env.session_file.split_of: about 80/10/10 by session id).
2. Sessions are replayed in order through the temporal memory (models.stream): each frame's pixels
   are re-sampled from the true frame with a random pattern and a budget that follows the
   curriculum (the seed's 1000 -> 500 -> 250 pixels, one phase per third of the epochs, +-20%),
   and up to --drop-max of them are hidden from the model (masked sparse modeling).
3. Loss = L1 + --l2 * MSE + --ssim * (1 - SSIM) + --temporal * |change of the prediction - change
   of the truth| between consecutive frames, with pixels in the sprite windows weighted
   1 + --sprite-weight. LPIPS is not used: its weights cannot be downloaded here.
4. AdamW with linear warm-up and cosine decay, gradient clipping; the sprite templates learn at
   --template-lr (they are per-pixel parameters).
5. Every epoch: validation on the VAL split sessions at 500 random pixels against the
   non-learned baselines; last.pt and best.pt (by validation PSNR) in --output, loadable with
   torch.load(..., weights_only=True); TensorBoard logs in --output/tensorboard.
6. --resume continues from --output/last.pt (model, optimizer, schedule, epoch).
"""
from __future__ import annotations

import json
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim as ssim_loss
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from models.baselines import make_baseline
from models.evaluation import evaluate_sessions, summarize
from models.memory import MemoryConfig, StagePriors
from models.spt import (SIZES, SPTReconstructor, SparsePixelTransformer, read_checkpoint, save_checkpoint,
                        spt_config)
from models.stream import ReconstructionStream, StreamConfig
from sgaps_env.cli import require_at_least, run_script
from sgaps_env.coords import COLOR_CHANNELS, channels_for
from sgaps_env.session_file import list_sessions
from sgaps_env.sprites import TEMPLATE_SIZE
from sgaps_env.worlds import SPLIT_DESCRIPTION, check_training_sessions, split_metadata


@dataclass
class Args:
    """Options of the SPT training."""

    data: list[str] = field(default_factory=lambda: ["data/train.h5"])
    """session files to train on (their train split) and validate on (val split)"""
    output: Path = Path("runs/spt")
    """run directory: checkpoints, TensorBoard logs, config and summary"""
    size: Literal[*sorted(SIZES)] = "small"
    """model size"""
    color: Literal[*sorted(COLOR_CHANNELS)] = "rgb"
    """colour of the samples and the output"""
    epochs: int = 12
    """epochs (an epoch is --pairs-per-epoch consecutive frame pairs)"""
    pairs_per_epoch: int = 2400
    """consecutive frame pairs per epoch (2 frames each)"""
    batch_pairs: int = 4
    """frame pairs per batch (the batch holds twice as many frames)"""
    curriculum: list[int] = field(default_factory=lambda: [1000, 500, 250])
    """pixel budgets of the curriculum phases, equal shares of the epochs"""
    budget_jitter: float = 0.2
    """each phase draws budgets in [b(1-j), b(1+j)]"""
    drop_max: float = 0.25
    """largest share of a frame's pixels hidden from the model (masked sparse modeling)"""
    lr: float = 2e-3
    """peak learning rate of the network"""
    template_lr: float = 3e-2
    """peak learning rate of the sprite templates"""
    weight_decay: float = 0.01
    """AdamW weight decay (not applied to the templates)"""
    warmup_steps: int = 100
    """linear warm-up steps before the cosine decay"""
    grad_clip: float = 1.0
    """gradient norm clip"""
    l2: float = 1.0
    """weight of the mean squared error (PSNR's loss) beside L1"""
    ssim: float = 0.1
    """weight of 1 - SSIM"""
    temporal: float = 0.1
    """weight of the temporal-consistency loss between consecutive frames"""
    sprite_weight: float = 4.0
    """extra loss weight inside the RAM-given sprite windows"""
    prior_steps: int | None = None
    """use at most this many steps per session to build the level priors (None: every step)"""
    val_sessions: int = 6
    """validation sessions (val split) per epoch"""
    val_steps: int = 150
    """steps per validation session"""
    workers: int = 1
    """DataLoader worker processes preparing batches"""
    threads: int = 0
    """torch CPU threads (0 = torch's default)"""
    seed: int = 0
    """seed of sampling, shuffling and initialisation"""
    resume: bool = False
    """continue from OUTPUT/last.pt"""
    progress: bool = True
    """show progress bars"""


def validate(args: Args) -> None:
    """The range checks the types cannot express; a ValueError names the option and what it accepts."""
    require_at_least(args, ("epochs", "pairs_per_epoch", "batch_pairs", "val_sessions", "val_steps"))
    require_at_least(args, ("warmup_steps", "workers", "threads"), minimum=0)
    if not args.curriculum or min(args.curriculum) < 1:
        raise ValueError(f"--curriculum must be one or more positive pixel budgets, got {args.curriculum}")
    if not 0.0 <= args.budget_jitter < 1.0:
        raise ValueError(f"--budget-jitter must be in [0, 1), got {args.budget_jitter}")
    if not 0.0 <= args.drop_max < 1.0:
        raise ValueError(f"--drop-max is a share of the pixels, in [0, 1), got {args.drop_max}")
    for name in ("lr", "template_lr", "grad_clip"):
        if not getattr(args, name) > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    require_at_least(args, ("weight_decay", "l2", "ssim", "temporal", "sprite_weight"), minimum=0)
    require_at_least(args, ("prior_steps",), none_means="for every step")


def phase_budget(args: Args, epoch: int) -> tuple[int, int]:
    """The curriculum's budget range for an epoch."""
    phase = min(len(args.curriculum) - 1, epoch * len(args.curriculum) // max(1, args.epochs))
    budget = args.curriculum[phase]
    return max(16, int(budget * (1 - args.budget_jitter))), int(budget * (1 + args.budget_jitter))


def learning_rate_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def sprite_weights(inputs: dict, height: int, width: int, extra: float) -> torch.Tensor:
    """``(B, 1, H, W)``: 1 everywhere, 1 + extra inside the valid sprite template windows."""
    weights = torch.ones(inputs["sprite_pose"].shape[0], 1, height, width)
    th, tw = TEMPLATE_SIZE
    for b, k in zip(*torch.nonzero(inputs["sprite_valid"], as_tuple=True)):
        top, left = int(inputs["sprite_top"][b, k]), int(inputs["sprite_left"][b, k])
        weights[b, :, max(0, top):max(0, top + th), max(0, left):max(0, left + tw)] = 1.0 + extra
    return weights


def loss_terms(prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, args: Args) -> dict:
    """Each loss term; frames are ordered in consecutive pairs (t-1, t)."""
    error = prediction - target
    terms = {"l1": (error.abs() * weights).mean(), "l2": (error.square() * weights).mean() * args.l2}
    if args.ssim > 0:
        terms["ssim"] = args.ssim * (1.0 - ssim_loss(prediction.clamp(0, 1), target, data_range=1.0,
                                                     size_average=True))
    if args.temporal > 0:
        change = prediction[1::2] - prediction[0::2]
        true_change = target[1::2] - target[0::2]
        terms["temporal"] = args.temporal * (change - true_change).abs().mean()
    return terms


def validation_scores(model, priors, memory_config, args: Args) -> dict:
    """Mean PSNR at 500 random pixels on the val split: the SPT and the non-learned baselines."""
    model.eval()
    reconstructors = {"spt": SPTReconstructor.from_model(model, priors, memory_config),
                      "hold": make_baseline("hold"), "nearest": make_baseline("nearest")}
    rows = evaluate_sessions(args.data, reconstructors, budget=500, color=args.color, split="val",
                             max_steps=args.val_steps, max_sessions=args.val_sessions, with_ssim=False,
                             progress=False)
    model.train()
    return {entry["reconstructor"]: entry for entry in summarize(rows)}


def main(args: Args) -> dict:
    validate(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    channels = channels_for(args.color)
    # fail early, with advice, when there is nothing to train on
    if not list_sessions(args.data, "train", need_frames=True):
        raise ValueError(f"no session of {args.data} falls in the train split: record more sessions (e.g. "
                         "`python agents/collect.py --episodes 20 --output data/train.h5`); about 80% of sessions "
                         "are train sessions")
    if not list_sessions(args.data, "val", need_frames=True):
        raise ValueError(f"no session of {args.data} falls in the val split, so no epoch can be validated: record "
                         "more sessions (about 10% of sessions are val sessions)")
    check_training_sessions(list_sessions(args.data, "train") + list_sessions(args.data, "val"))
    print(f"split: {SPLIT_DESCRIPTION}")
    args.output.mkdir(parents=True, exist_ok=True)

    # 1. level priors from the train split
    priors_path = args.output / "priors.pt"
    if args.resume and priors_path.is_file():
        priors = StagePriors.from_tensors(torch.load(priors_path, weights_only=True))
    else:
        priors = StagePriors.from_session_files(args.data, split="train", max_steps_per_session=args.prior_steps,
                                                progress=args.progress)
        torch.save(priors.to_tensors(), priors_path)
    print(f"level priors: {sorted(priors.levels)} ({priors.nbytes() / 1e6:.1f} MB)")

    # 2. model, optimiser, schedule
    memory_config = MemoryConfig()
    model = SparsePixelTransformer(spt_config(args.size, channels=channels))
    templates = [model.sprite_templates]
    network = [p for name, p in model.named_parameters() if name != "sprite_templates"]
    optimizer = torch.optim.AdamW([{"params": network, "lr": args.lr, "weight_decay": args.weight_decay},
                                   {"params": templates, "lr": args.template_lr, "weight_decay": 0.0}])
    steps_per_epoch = -(-args.pairs_per_epoch // args.batch_pairs)
    total_steps = steps_per_epoch * args.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_factor(step, args.warmup_steps, total_steps))
    start_epoch, best, history = 0, -math.inf, []
    if args.resume:
        payload = read_checkpoint(args.output / "last.pt")
        model.load_state_dict(payload["state_dict"])
        optimizer.load_state_dict(payload["training"]["optimizer"])
        scheduler.load_state_dict(payload["training"]["scheduler"])
        start_epoch, best = payload["training"]["epoch"] + 1, payload["training"]["best"]
        history = json.loads(payload["training"]["history"])
        print(f"resumed from {args.output / 'last.pt'} at epoch {start_epoch}")
    (args.output / "config.json").write_text(json.dumps({**asdict(args), "output": str(args.output),
                                                         "model": asdict(model.config)}, indent=2))
    writer = SummaryWriter(str(args.output / "tensorboard"))
    params = sum(p.numel() for p in model.parameters())
    print(f"SPT {args.size}: {params / 1e6:.2f} M parameters; {args.epochs} epochs x {steps_per_epoch} steps")

    # 3-5. epochs
    step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch, args.epochs):
        budget = phase_budget(args, epoch)
        stream = ReconstructionStream(args.data, priors, StreamConfig(
            budget=budget, drop_max=args.drop_max, pairs_per_batch=args.batch_pairs, channels=channels,
            seed=args.seed, epoch=epoch, pairs_per_epoch=args.pairs_per_epoch), memory_config)
        loader = DataLoader(stream, batch_size=None, num_workers=args.workers,
                            multiprocessing_context="spawn" if args.workers else None)
        model.train()
        started, seen, running = time.time(), 0, {}
        bar = tqdm(loader, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{args.epochs} @{budget[0]}-{budget[1]}px",
                   unit="batch", disable=not args.progress)
        for batch in bar:
            inputs, target = batch["inputs"], batch["target"]
            prediction = model(inputs)["frame"]
            weights = sprite_weights(inputs, target.shape[2], target.shape[3], args.sprite_weight)
            terms = loss_terms(prediction, target, weights, args)
            loss = sum(terms.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            seen += len(target)
            with torch.no_grad():
                mse = F.mse_loss(prediction.clamp(0, 1), target).item()
            train_psnr = -10 * math.log10(max(mse, 1e-10))
            for name, value in {**terms, "loss": loss, "psnr": train_psnr}.items():
                value = float(value.detach()) if torch.is_tensor(value) else float(value)
                running[name] = 0.95 * running.get(name, value) + 0.05 * value
                writer.add_scalar(f"train/{name}", value, step)
            writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
            bar.set_postfix(loss=f"{running['loss']:.4f}", psnr=f"{running['psnr']:.1f}",
                            fps=f"{seen / (time.time() - started):.1f}")
        validation = validation_scores(model, priors, memory_config, args)
        for name, entry in validation.items():
            writer.add_scalar(f"val/psnr_{name}", entry["psnr"], step)
            writer.add_scalar(f"val/foreground_psnr_{name}", entry["foreground_psnr"], step)
        spt_psnr = validation["spt"]["psnr"]
        record = {"epoch": epoch + 1, "budget": list(budget), "train_psnr": running.get("psnr"),
                  "frames_per_s": seen / (time.time() - started),
                  **{f"val_psnr_{name}": entry["psnr"] for name, entry in validation.items()},
                  "val_foreground_psnr_spt": validation["spt"]["foreground_psnr"]}
        history.append(record)
        print(json.dumps(record))
        metadata = {"trained_on": ", ".join(map(str, args.data)), **split_metadata(), "size": args.size,
                    "epochs": epoch + 1,
                    "val_psnr_500": spt_psnr, "command": "python experiments/train_reconstructor.py "
                    + shlex.join(sys.argv[1:])}
        training = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "epoch": epoch,
                    "best": max(best, spt_psnr), "history": json.dumps(history)}
        save_checkpoint(args.output / "last.pt", model, priors, memory_config, metadata, training=training)
        if spt_psnr > best:
            best = spt_psnr
            save_checkpoint(args.output / "best.pt", model, priors, memory_config, metadata)
    writer.close()
    summary = {"best_val_psnr_500": best, "history": history}
    (args.output / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    run_script(main, Args, __doc__)
