"""Train a reconstructor on recorded sessions: `python experiments/train_reconstructor.py --help`.

--model spt (the default) trains the Sparse Pixel Transformer as described below. --model patch-mae and
--model pixel-mae train the seed documents' masked autoencoders (models/mae.py) on clips of the train split
held in memory, the masking curriculum instead of the pixel one (see train_mae below):

    python experiments/train_reconstructor.py --model patch-mae --data data/train_worlds.h5 --output runs/patch-mae
    python experiments/train_reconstructor.py --model pixel-mae --data data/train_worlds.h5 --output runs/pixel-mae

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

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_msssim import ssim as ssim_loss
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from models import mae
from models.baselines import make_baseline
from models.dataset import ClipBank
from models.evaluation import evaluate_sessions, summarize
from models.metrics import psnr
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
    """Options of the reconstructor training."""

    data: list[str] = field(default_factory=lambda: ["data/train.h5"])
    """session files to train on (their train split) and validate on (val split)"""
    output: Path = Path("runs/spt")
    """run directory: checkpoints, TensorBoard logs, config and summary"""
    model: Literal["spt", "patch-mae", "pixel-mae"] = "spt"
    """what to train: the SPT, or the seed's patch MAE (HST-MAE style) or pixel MAE (models/mae.py)"""
    size: Literal[*sorted(SIZES)] | None = None
    """model size (None: small for the SPT and the pixel MAE, tiny for the patch MAE)"""
    color: Literal[*sorted(COLOR_CHANNELS)] = "rgb"
    """colour of the samples and the output"""
    epochs: int = 12
    """epochs (an epoch is --pairs-per-epoch consecutive frame pairs)"""
    pairs_per_epoch: int = 2400
    """consecutive frame pairs per epoch (2 frames each)"""
    batch_pairs: int | None = None
    """frame pairs per batch (the batch holds twice as many frames); for the MAEs, clips (patch) or frames
    (pixel) per batch, and --pairs-per-epoch counts clips or frames (None: 4 for the SPT, 16 for the MAEs)"""
    curriculum: list[int] | None = None
    """pixel budgets of the curriculum phases, equal shares of the epochs (None: 1000 500 250 for the SPT,
    1229 for the pixel MAE: its design budget, 2% of the pixels)"""
    mask_curriculum: list[float] = field(default_factory=lambda: [0.85, 0.9, 0.925])
    """patch MAE: shares of the patches masked in the curriculum phases (the HST-MAE design's 85% -> 90%, then
    90-95%), equal shares of training (of the epochs, or of --max-minutes when that ends training first), each
    drawn in +-mask_jitter"""
    mask_jitter: float = 0.025
    """patch MAE: each phase draws its masked share in [m - j, m + j]"""
    prefix_share: float = 0.5
    """patch MAE: share of batches that see only the first frame of their clips (a stream reconstructs a clip's
    first frame before its second arrives)"""
    max_minutes: float | None = None
    """MAEs: stop (after validating and saving) once training has run this long, the learning rate's cosine
    following the clock when it runs out before --epochs do; None for no limit"""
    budget_jitter: float = 0.2
    """each phase draws budgets in [b(1-j), b(1+j)]"""
    drop_max: float = 0.25
    """largest share of a frame's pixels hidden from the model (masked sparse modeling)"""
    lr: float | None = None
    """peak learning rate of the network (None: 2e-3 for the SPT, 1e-3 for the MAEs)"""
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
    if args.batch_pairs is None:
        args.batch_pairs = 4 if args.model == "spt" else 16
    if args.lr is None:
        args.lr = 2e-3 if args.model == "spt" else 1e-3
    require_at_least(args, ("epochs", "pairs_per_epoch", "batch_pairs", "val_sessions", "val_steps"))
    require_at_least(args, ("warmup_steps", "workers", "threads"), minimum=0)
    if args.curriculum is not None and (not args.curriculum or min(args.curriculum) < 1):
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
    if not args.mask_curriculum or not all(0.0 < m - args.mask_jitter and m + args.mask_jitter < 1.0
                                           for m in args.mask_curriculum):
        raise ValueError(f"--mask-curriculum {args.mask_curriculum} +- --mask-jitter {args.mask_jitter} must stay "
                         "inside (0, 1): shares of the patches that are masked")
    if not 0.0 <= args.prefix_share <= 1.0:
        raise ValueError(f"--prefix-share is a share of the batches, in [0, 1], got {args.prefix_share}")
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise ValueError(f"--max-minutes must be positive (or None for no limit), got {args.max_minutes}")
    if args.size is None:
        args.size = "tiny" if args.model == "patch-mae" else "small"
    if args.curriculum is None:
        args.curriculum = [1229] if args.model == "pixel-mae" else [1000, 500, 250]
    if args.model != "spt" and args.color != "rgb":
        raise ValueError("the MAEs are trained on RGB frames, as in their designs: leave --color at rgb")


def phase_budget(args: Args, epoch: int) -> tuple[int, int]:
    """The curriculum's budget range for an epoch."""
    phase = min(len(args.curriculum) - 1, epoch * len(args.curriculum) // max(1, args.epochs))
    return budget_range(args, args.curriculum[phase])


def budget_range(args: Args, budget: int) -> tuple[int, int]:
    """The pixel budgets a curriculum phase of ``budget`` draws from: ``budget`` +- --budget-jitter (at least 16)."""
    return max(16, int(budget * (1 - args.budget_jitter))), int(budget * (1 + args.budget_jitter))


def learning_rate_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def descend(loss: torch.Tensor, model: torch.nn.Module, optimizer, scheduler, grad_clip: float) -> None:
    """One optimiser step on ``loss`` with the gradient norm clipped at ``grad_clip``, then one schedule step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()


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
    if args.model != "spt":
        return train_mae(args)
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
            descend(loss, model, optimizer, scheduler, args.grad_clip)
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



# --- the masked autoencoders ----------------------------------------------------------------------------------


def mae_phase(args: Args, progress: float) -> tuple[float, float]:
    """The MAE curricula at ``progress`` (the share of training done, by steps or by the clock): the range of
    the share of patches masked (patch MAE) or of the pixel budget (pixel MAE); equal shares of training each."""
    if args.model == "patch-mae":
        share = args.mask_curriculum[min(len(args.mask_curriculum) - 1, int(progress * len(args.mask_curriculum)))]
        return share - args.mask_jitter, share + args.mask_jitter
    return budget_range(args, args.curriculum[min(len(args.curriculum) - 1, int(progress * len(args.curriculum)))])


def random_ranks(generator: torch.Generator, batch: int, size: int) -> torch.Tensor:
    """``(batch, size)`` long: a random permutation's rank of every position, per row."""
    return torch.rand(batch, size, generator=generator).argsort(1).argsort(1)


def patch_batch(target: torch.Tensor, masked: torch.Tensor, frames_seen: int,
                generator: torch.Generator) -> tuple[dict, torch.Tensor]:
    """Tube masking: the clips' patches ``target (B, T, P, C * 256)``, ``masked (B,)`` shares of patches masked ->
    (model inputs of the first ``frames_seen`` frames, ``hit (B, T', P, 256)``). Every frame of a clip shows the
    same patches."""
    batch, channels = target.shape[0], target.shape[-1] // mae.PATCH_PIXELS
    shown = ((1.0 - masked) * mae.PATCHES).round().clamp(min=1).long()
    visible = random_ranks(generator, batch, mae.PATCHES) < shown[:, None]  # (B, P)
    hit = visible[:, None, :, None].expand(-1, frames_seen, -1, mae.PATCH_PIXELS).float()
    return {"patches": target[:, :frames_seen] * hit.repeat(1, 1, 1, channels), "hit": hit}, hit


def pixel_batch(frames: torch.Tensor, target: torch.Tensor, budgets: torch.Tensor,
                generator: torch.Generator) -> tuple[dict, torch.Tensor]:
    """Random pixels: ``frames (B, 1, C, H, W)`` and their patches ``target (B, 1, P, C * 256)``, ``budgets (B,)``
    pixel counts -> (model inputs, ``hit (B, 1, P, 256)``)."""
    batch, _, c, height, width = frames.shape
    longest = int(budgets.max())
    flat_index = torch.rand(batch, height * width, generator=generator).topk(longest, dim=1).indices  # (B, N)
    valid = torch.arange(longest)[None] < budgets[:, None]
    values = frames[:, 0].flatten(2).gather(2, flat_index[:, None].expand(-1, c, -1)).transpose(1, 2)  # (B, N, C)
    sampled = torch.zeros(batch, height * width).scatter_(1, flat_index, valid.float()).view(batch, 1, 1, height, width)
    hit = mae.patchify(sampled)
    inputs = {"patches": target * hit.repeat(1, 1, 1, c), "hit": hit,
              "token_xy": torch.stack([flat_index % width, flat_index // width], dim=-1),
              "token_values": values, "token_valid": valid}
    return inputs, hit


def mae_inputs(kind: str, clips: torch.Tensor, target: torch.Tensor, args: Args, progress: float,
               generator: torch.Generator, prefix: bool) -> tuple[dict, torch.Tensor]:
    """A training batch of ``kind`` at this point of its curriculum from ``clips (B, T, C, H, W)`` and their
    patches ``target``."""
    batch = clips.shape[0]
    low, high = mae_phase(args, progress)
    if kind == "patch":
        masked = low + (high - low) * torch.rand(batch, generator=generator)
        return patch_batch(target, masked, 1 if prefix else clips.shape[1], generator)
    budgets = torch.randint(int(low), int(high) + 1, (batch,), generator=generator)
    return pixel_batch(clips, target, budgets, generator)


def mae_loss(prediction: torch.Tensor, target: torch.Tensor, hit: torch.Tensor, args: Args) -> dict:
    """L1 and --l2 * MSE on the pixels that were not sampled, of the frames that were seen.

    ``prediction, target (B, T, P, C * 256)``, ``hit (B, T', P, 256)``."""
    seen, channels = hit.shape[1], target.shape[-1] // mae.PATCH_PIXELS
    unsampled = 1.0 - hit.repeat(1, 1, 1, channels)
    error = (prediction[:, :seen] - target[:, :seen]) * unsampled
    share = unsampled.mean().clamp(min=1e-6)
    return {"l1": error.abs().mean() / share, "l2": args.l2 * error.square().mean() / share}


@torch.no_grad()
def mae_validation(model: mae.MaskedAutoencoder, clips: torch.Tensor, args: Args) -> dict[str, float]:
    """PSNR (frames with their samples pasted) on fixed val clips at the design budgets: the patch MAE's 5% and
    10% of the pixels (95% and 90% of the patches masked), every frame of the clip; the pixel MAE's 2%."""
    model.eval()
    generator = torch.Generator().manual_seed(12345)  # the same masks every epoch
    scores, target = {}, mae.patchify(clips)
    if model.config.kind == "patch":
        design = {"psnr_5pct": 1.0 - 12 / mae.PATCHES, "psnr_10pct": 1.0 - 24 / mae.PATCHES}
        for name, share in design.items():
            inputs, hit = patch_batch(target, torch.full((len(clips),), share), clips.shape[1], generator)
            scores[name] = _pasted_psnr(model(inputs), target, hit)
    else:
        inputs, hit = pixel_batch(clips, target, torch.full((len(clips),), 1229), generator)
        scores["psnr_2pct"] = _pasted_psnr(model(inputs), target, hit)
    model.train()
    return scores


def _pasted_psnr(prediction: torch.Tensor, target: torch.Tensor, hit: torch.Tensor) -> float:
    """Mean PSNR per frame of ``prediction`` clamped, with the sampled pixels (``hit``) taken from ``target``."""
    seen, channels = hit.shape[1], target.shape[-1] // mae.PATCH_PIXELS
    known = hit.repeat(1, 1, 1, channels)
    pasted = prediction[:, :seen].clamp(0, 1) * (1 - known) + target[:, :seen] * known
    return float(sum(psnr(p.numpy(), t.numpy()) for p, t in zip(pasted.flatten(0, 1), target[:, :seen].flatten(0, 1)))
                 / (len(pasted) * seen))


def train_mae(args: Args) -> dict:
    """The masked autoencoders (models/mae.py), top to bottom:

    0. The train and val sessions are checked to hold no frame of worlds 5-8.
    1. Every frame of the train split is held in memory as palette indices (models.dataset.ClipBank); 64 clips
       of the val split are the fixed validation set.
    2. Each step draws --batch-pairs clips (patch MAE: --size's clip length, tube masked, a share of batches
       showing only the clip's first frame; pixel MAE: single frames, random pixels at the --curriculum
       budget) and is trained on L1 + --l2 * MSE of the pixels not sampled; AdamW (betas 0.9, 0.95 as in the
       HST-MAE design), warm-up and cosine decay, gradient clipping.
    3. Every epoch: validation PSNR at the design budgets; last.pt and best.pt (half-precision weights,
       loadable with models.mae.MAEReconstructor); TensorBoard logs; --max-minutes ends training early.
    """
    kind = args.model.removesuffix("-mae")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = mae.mae_config(kind, args.size)
    sessions = list_sessions(args.data, "train", need_frames=True) + list_sessions(args.data, "val", need_frames=True)
    check_training_sessions(sessions)
    print(f"split: {SPLIT_DESCRIPTION}")
    args.output.mkdir(parents=True, exist_ok=True)
    bank = ClipBank(args.data, "train", config.frames, progress=args.progress)
    val_clips = ClipBank(args.data, "val", config.frames, progress=False).draw(np.random.default_rng(args.seed), 64)
    print(f"{len(bank)} train clips of {config.frames} frame(s) from {bank.sessions} sessions; 64 val clips")

    model = mae.MaskedAutoencoder(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=args.weight_decay)
    steps_per_epoch = -(-args.pairs_per_epoch // args.batch_pairs)
    total_steps = steps_per_epoch * args.epochs
    # with --max-minutes the cosine follows the clock when that runs out first, so a run ended by the clock ends
    # with its learning rate decayed as one ended by --epochs does
    clock = {"share": 0.0}

    def rate(step: int) -> float:
        if step < args.warmup_steps:
            return learning_rate_factor(step, args.warmup_steps, total_steps)
        progress = max((step - args.warmup_steps) / max(1, total_steps - args.warmup_steps), clock["share"])
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    start_epoch, best, history, trained_s = 0, -math.inf, [], 0.0
    if args.resume:
        payload = mae.read_checkpoint(args.output / "last.pt")
        model.load_state_dict({name: tensor.float() for name, tensor in payload["state_dict"].items()})
        optimizer.load_state_dict(payload["training"]["optimizer"])
        scheduler.load_state_dict(payload["training"]["scheduler"])
        start_epoch, best = payload["training"]["epoch"] + 1, payload["training"]["best"]
        history, trained_s = json.loads(payload["training"]["history"]), payload["training"]["seconds"]
        print(f"resumed from {args.output / 'last.pt'} at epoch {start_epoch}")
    (args.output / "config.json").write_text(json.dumps({**asdict(args), "output": str(args.output),
                                                         "model_config": asdict(config)}, indent=2))
    writer = SummaryWriter(str(args.output / "tensorboard"))
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.model} {args.size}: {params / 1e6:.2f} M parameters; {args.epochs} epochs x {steps_per_epoch} steps")
    rng = np.random.default_rng((args.seed, start_epoch))
    generator = torch.Generator().manual_seed(args.seed * 1000 + start_epoch)
    step = start_epoch * steps_per_epoch
    model.train()
    for epoch in range(start_epoch, args.epochs):
        started, running = time.time(), {}
        phase = mae_phase(args, max(step / total_steps, clock["share"]))  # the epoch's phase, as it starts
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch",
                   disable=not args.progress)
        for _ in bar:
            if args.max_minutes is not None:
                clock["share"] = (trained_s + time.time() - started) / (60 * args.max_minutes)
                if clock["share"] >= 1.0:
                    break
            progress = max(step / total_steps, clock["share"])  # the curricula follow the clock too
            clips = bank.draw(rng, args.batch_pairs)
            target = mae.patchify(clips)
            prefix = kind == "patch" and bool(torch.rand(1, generator=generator) < args.prefix_share)
            inputs, hit = mae_inputs(kind, clips, target, args, progress, generator, prefix)
            terms = mae_loss(model(inputs), target, hit, args)
            loss = sum(terms.values())
            descend(loss, model, optimizer, scheduler, args.grad_clip)
            step += 1
            for name, value in {**terms, "loss": loss}.items():
                value = float(value.detach())
                running[name] = 0.95 * running.get(name, value) + 0.05 * value
                writer.add_scalar(f"train/{name}", value, step)
            writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
            bar.set_postfix(loss=f"{running['loss']:.4f}")
        trained_s += time.time() - started
        validation = mae_validation(model, val_clips, args)
        for name, value in validation.items():
            writer.add_scalar(f"val/{name}", value, step)
        score = min(validation.values())
        record = {"epoch": epoch + 1, "phase": [round(float(p), 4) for p in phase], "train_loss": running["loss"],
                  "minutes": round(trained_s / 60, 2), **{f"val_{k}": v for k, v in validation.items()}}
        history.append(record)
        print(json.dumps(record))
        metadata = {"trained_on": ", ".join(map(str, args.data)), **split_metadata(), "size": args.size,
                    "epochs": epoch + 1, "train_minutes": round(trained_s / 60, 1), **validation,
                    "command": "python experiments/train_reconstructor.py " + shlex.join(sys.argv[1:])}
        training = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "epoch": epoch,
                    "best": max(best, score), "history": json.dumps(history), "seconds": trained_s}
        mae.save_checkpoint(args.output / "last.pt", model, metadata, training=training)
        if score > best:
            best = score
            mae.save_checkpoint(args.output / "best.pt", model, metadata)
        if args.max_minutes is not None and trained_s / 60 >= args.max_minutes:
            print(f"stopping after epoch {epoch + 1}: --max-minutes {args.max_minutes} reached")
            break
    writer.close()
    summary = {"best_val_psnr": best, "minutes": trained_s / 60, "history": history}
    (args.output / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    run_script(main, Args, __doc__)
