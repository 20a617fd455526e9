"""The Sparse Pixel Transformer (SPT): a whole frame from a few hundred pixels, the state and the memory.

    from models.spt import SPTReconstructor
    spt = SPTReconstructor()                      # the shipped checkpoint
    frame = spt.reconstruct(pixels, state, mask)  # (240, 256, C) in [0, 1]; call spt.reset() per session

The model follows the seed design (pixel tokens with Fourier positions, a masked state token, a
self-attention encoder, a cross-attention decoder whose queries are a grid of positions, a global
skip, a CNN refinement head, attention weights for importance maps, MC dropout), changed where
measurements said so (see docs/reconstructor.md):

1. The background of a Super Mario Bros frame is a function of the camera x, so the global skip is
   the temporal memory's canvas in world coordinates (:mod:`models.memory`), and positions are
   encoded on screen and in the level (camera x + screen x).
2. The decoder's queries are the 30 x 32 grid of 8 x 8 NES tiles. Each query carries its tile's
   pixels of the memory canvas, its confidence, the splatted samples and the recent samples, and
   the head decodes every query back into its 8 x 8 pixels (pixel shuffle).
3. Most of what the memory cannot know is sprites, and the state vector says where they are. A
   learned sprite layer (one RGBA template per player pose and enemy type, 48 x 32 pixels, placed
   at the RAM position) is composited over the canvas before the transformer corrects the rest.

Tensor shapes in docstrings: B batch, N pixel tokens, C colour channels, H x W = 240 x 256, K
sprite slots, Q = 960 tile queries, d model width.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.checkpoint_files import check_config_fields, check_state_dict, read_payload
from models.memory import MemoryBank, MemoryConfig, StagePriors
from sgaps_env.coords import FRAME_HEIGHT, FRAME_WIDTH, uv_to_pixel
from sgaps_env.sprites import (HUD_DIGIT_SLOTS, HUD_ROWS, POSE_COUNT, TEMPLATE_SIZE, camera_x, hud_digits,
                              sprite_boxes, template_windows)
from sgaps_env.state import (ENEMY_SLOTS, FIELD_HIGH, FIELD_LOW, LEGACY_STATE_FIELDS, STATE_FIELDS, STATE_INDEX,
                             field_out_of_range)

#: The checkpoint the environment's scorer and the demo use by default.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "spt-small-smb1.pt"
CHECKPOINT_FORMAT = "sgaps-spt"
CHECKPOINT_VERSION = 1
#: Sprite slots per frame: the player and the enemy slots.
MAX_SPRITES = 1 + ENEMY_SLOTS
#: World x is divided by this before its Fourier encoding (levels are shorter than 4096 pixels).
WORLD_SCALE = 4096.0


@dataclass
class SPTConfig:
    """Everything that fixes an SPT's shape. Saved inside every checkpoint."""

    channels: int = 3
    """colour channels in and out: 1 (luma) or 3 (RGB)"""
    dim: int = 64
    """model width d"""
    heads: int = 4
    encoder_layers: int = 2
    decoder_layers: int = 1
    refine_layers: int = 2
    """3x3 residual conv blocks on the tile grid (the CNN refinement head)"""
    tile: int = 8
    """query grid cell in pixels (8 = the NES tile)"""
    fourier_bands: int = 8
    """octaves of the sin/cos positional encoding"""
    state_dim: int = 64
    state_fields: int = len(STATE_FIELDS)
    """named state fields the model reads; the entries after them are masked before it sees them (a checkpoint
    without this field was trained on the first ``LEGACY_STATE_FIELDS`` and keeps reading only those)"""
    dropout: float = 0.05
    """dropout in the MLPs (what MC dropout samples)"""
    global_skip: bool = True
    """predict a correction of the memory canvas (True) or the frame itself"""
    sprite_layer: bool = True
    """composite learned sprite templates at the RAM positions before the transformer"""
    world_positions: bool = True
    """also encode level x (camera x + screen x) of tokens and queries"""
    height: int = FRAME_HEIGHT
    width: int = FRAME_WIDTH

    def __post_init__(self):
        if self.channels not in (1, 3):
            raise ValueError(f"SPTConfig.channels must be 1 (luma) or 3 (RGB), got {self.channels}")
        if self.dim % self.heads:
            raise ValueError(f"SPTConfig.dim={self.dim} must be a multiple of heads={self.heads}")
        if not 1 <= self.state_fields <= len(STATE_FIELDS):
            raise ValueError(f"SPTConfig.state_fields={self.state_fields} must be in [1, {len(STATE_FIELDS)}] "
                             "(the named state fields it reads)")
        if self.height % self.tile or self.width % self.tile:
            raise ValueError(f"frame {self.height}x{self.width} is not a whole number of {self.tile}-pixel tiles")

    @classmethod
    def from_dict(cls, values: dict) -> "SPTConfig":
        """A config from a checkpoint: known fields only, each of its type and within :data:`CONFIG_LIMITS`,
        checked before anything is built (a checkpoint is untrusted input)."""
        check_config_fields(cls, values, CONFIG_LIMITS)
        return cls(**{"state_fields": LEGACY_STATE_FIELDS, **values})


#: Named sizes: keyword overrides of :class:`SPTConfig`.
SIZES: dict[str, dict] = {
    "tiny": dict(dim=32, heads=2, encoder_layers=1, decoder_layers=1, refine_layers=1),
    "small": dict(dim=64, heads=4, encoder_layers=2, decoder_layers=1, refine_layers=2),
    "base": dict(dim=128, heads=8, encoder_layers=4, decoder_layers=2, refine_layers=3),
}


#: Inclusive ranges of a checkpoint's int config fields: about twice the largest named size, and the NES
#: frame the memory is built for. A checkpoint outside them is refused before the model is built.
CONFIG_LIMITS: dict[str, tuple[int, int]] = {
    "channels": (1, 3), "dim": (8, 2 * SIZES["base"]["dim"]), "heads": (1, 2 * SIZES["base"]["heads"]),
    "encoder_layers": (0, 2 * SIZES["base"]["encoder_layers"]), "decoder_layers": (1, 2 * SIZES["base"]["decoder_layers"]),
    "refine_layers": (0, 2 * SIZES["base"]["refine_layers"]), "tile": (4, 16), "fourier_bands": (1, 16),
    "state_dim": (len(STATE_FIELDS), 1024), "state_fields": (1, len(STATE_FIELDS)),
    "height": (FRAME_HEIGHT, FRAME_HEIGHT), "width": (FRAME_WIDTH, FRAME_WIDTH),
}


def spt_config(size: str = "small", **overrides) -> SPTConfig:
    """The :class:`SPTConfig` of a named size, with ``overrides`` applied."""
    if size not in SIZES:
        raise ValueError(f"unknown SPT size {size!r}: expected one of {sorted(SIZES)}")
    return SPTConfig(**{**SIZES[size], **overrides})


def fourier_features(positions: torch.Tensor, bands: int) -> torch.Tensor:
    """``(..., P)`` positions in about [0, 1] -> ``(..., P * 2 * bands)`` sin/cos at octave frequencies."""
    frequencies = math.pi * 2.0 ** torch.arange(bands, device=positions.device, dtype=positions.dtype)
    angles = positions[..., None] * frequencies
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)


class SelfAttentionBlock(nn.Module):
    """Pre-norm self-attention and MLP over the tokens, with PyTorch's fused scaled-dot-product attention."""

    def __init__(self, dim: int, heads: int, dropout: float, mlp_ratio: int = 2):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm_attention, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(mlp_ratio * dim, dim))

    def forward(self, tokens: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        """``tokens (B, N, d)``, ``padding (B, N)`` True = ignore (or None) -> ``(B, N, d)``."""
        batch, count, dim = tokens.shape
        q, k, v = self.qkv(self.norm_attention(tokens)).view(batch, count, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        mask = None if padding is None else ~padding[:, None, None, :]
        # dropout lives in the MLPs: attention dropout would force the slow unfused kernel on the CPU
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        tokens = tokens + self.out(attended.transpose(1, 2).reshape(batch, count, dim))
        return tokens + self.mlp(self.norm_mlp(tokens))


class CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention (queries -> tokens) and MLP."""

    def __init__(self, dim: int, heads: int, dropout: float, mlp_ratio: int = 2):
        super().__init__()
        self.norm_query, self.norm_tokens = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(mlp_ratio * dim, dim))

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor, padding: torch.Tensor,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``queries (B, Q, d)``, ``tokens (B, N, d)``, ``padding (B, N)`` True = ignore -> ``(B, Q, d)``, weights
        ``(B, Q, N)`` averaged over heads (only with ``need_weights``)."""
        attended, weights = self.attention(self.norm_query(queries), self.norm_tokens(tokens),
                                           self.norm_tokens(tokens), key_padding_mask=padding,
                                           need_weights=need_weights)
        queries = queries + attended
        return queries + self.mlp(self.norm_mlp(queries)), weights


class SparsePixelTransformer(nn.Module):
    """See the module docstring. Build with ``SparsePixelTransformer(spt_config("small"))``."""

    def __init__(self, config: SPTConfig):
        super().__init__()
        self.config = config
        c, d = config.channels, config.dim
        position_inputs = 3 if config.world_positions else 2
        fourier = position_inputs * 2 * config.fourier_bands
        self.token_embed = nn.Linear(2 * c + 1 + fourier, d)
        # the state (with sin/cos of the frame counter: palette cycling and animation phases are its bits)
        self.state_embed = nn.Sequential(nn.Linear(2 * config.state_dim + 2 * config.fourier_bands, d), nn.GELU(),
                                         nn.Linear(d, d))
        self.state_to_queries = nn.Linear(d, d)
        self.digit_embed = nn.Embedding(HUD_DIGIT_SLOTS * 10, d)
        self.encoder = nn.ModuleList(SelfAttentionBlock(d, config.heads, config.dropout)
                                     for _ in range(config.encoder_layers))
        self.encoder_norm = nn.LayerNorm(d)
        # one strided convolution = each tile's pixels of every input plane through one linear map
        self.tile_embed = nn.Conv2d(3 * c + 4, d, config.tile, stride=config.tile)
        self.position_embed = nn.Linear(fourier, d)
        self.decoder = nn.ModuleList(CrossAttentionBlock(d, config.heads, config.dropout)
                                     for _ in range(config.decoder_layers))
        self.refine = nn.ModuleList(nn.Sequential(nn.Conv2d(d, d, 3, padding=1), nn.GELU(), nn.Conv2d(d, d, 1))
                                    for _ in range(config.refine_layers))
        self.to_pixels = nn.Conv2d(d, c * config.tile ** 2, 1)
        height, width = TEMPLATE_SIZE
        # templates start transparent (alpha logit -4), so an untrained model shows the canvas
        templates = torch.zeros(POSE_COUNT, c + 1, height, width)
        templates[:, c] = -4.0
        self.sprite_templates = nn.Parameter(templates, requires_grad=config.sprite_layer)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        # the correction starts at zero: an untrained model returns the composited canvas
        nn.init.zeros_(self.to_pixels.weight)
        nn.init.zeros_(self.to_pixels.bias)

    # --- pieces --------------------------------------------------------------------------------------------

    def render_sprites(self, canvas: torch.Tensor, pose: torch.Tensor, top: torch.Tensor, left: torch.Tensor,
                       valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Composite the pose templates at their windows over ``canvas (B, C, H, W)``.

        ``pose, top, left (B, K)`` long, ``valid (B, K)`` bool -> ``(composite (B, C, H, W), coverage (B, 1, H, W))``.
        Overlapping sprites are blended by their alphas (exact where sprites do not overlap).
        """
        batch, c, height, width = canvas.shape
        th, tw = TEMPLATE_SIZE
        if not self.config.sprite_layer or pose.shape[1] == 0:
            return canvas, torch.zeros_like(canvas[:, :1])
        padded_h, padded_w = height + 2 * th, width + 2 * tw
        rows = (top.clamp(-th, height) + th)[..., None, None] + torch.arange(th, device=canvas.device)[:, None]
        cols = (left.clamp(-tw, width) + tw)[..., None, None] + torch.arange(tw, device=canvas.device)[None, :]
        index = (rows * padded_w + cols).flatten(1)  # (B, K * th * tw)
        template = self.sprite_templates[pose]  # (B, K, C + 1, th, tw)
        alpha = torch.sigmoid(template[:, :, c]) * valid[..., None, None]
        colour = torch.sigmoid(template[:, :, :c])
        flat = padded_h * padded_w
        alpha_sum = canvas.new_zeros(batch, flat).scatter_add(1, index, alpha.flatten(1))
        log_clear = canvas.new_zeros(batch, flat).scatter_add(1, index, torch.log1p(-alpha.clamp(max=0.999)).flatten(1))
        weighted = (alpha[:, :, None] * colour).permute(0, 2, 1, 3, 4).flatten(2)  # (B, C, K * th * tw)
        colour_sum = canvas.new_zeros(batch, c, flat).scatter_add(2, index[:, None].expand(-1, c, -1), weighted)

        def crop(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, -1, padded_h, padded_w)[:, :, th:th + height, tw:tw + width]

        coverage = 1.0 - crop(log_clear.exp())
        mean_colour = crop(colour_sum) / crop(alpha_sum).clamp(min=1e-6)
        return canvas * (1.0 - coverage) + coverage * mean_colour, coverage

    def positions(self, x: torch.Tensor, y: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
        """Pixel centres ``x, y (B, M)`` float and ``camera (B,)`` -> Fourier features ``(B, M, F)``."""
        u = x / self.config.width
        v = y / self.config.height
        parts = [u, v]
        if self.config.world_positions:
            parts.append((camera[:, None] + x) / WORLD_SCALE)
        return fourier_features(torch.stack(parts, dim=-1), self.config.fourier_bands)

    def encode(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel tokens and the state token through the encoder -> ``(tokens (B, 1 + N, d), padding (B, 1 + N))``."""
        xy, values, valid = inputs["token_xy"], inputs["token_values"], inputs["token_valid"]
        canvas, confidence = inputs["canvas"], inputs["confidence"]
        batch = xy.shape[0]
        flat_index = (xy[..., 1] * self.config.width + xy[..., 0])  # (B, N)
        memory_value = canvas.flatten(2).gather(2, flat_index[:, None].expand(-1, canvas.shape[1], -1))
        memory_confidence = confidence.flatten(2).gather(2, flat_index[:, None])
        features = torch.cat([values, values - memory_value.transpose(1, 2), memory_confidence.transpose(1, 2),
                              self.positions(xy[..., 0].float() + 0.5, xy[..., 1].float() + 0.5,
                                             inputs["camera_x"])], dim=-1)
        tokens = self.token_embed(features)
        state_token = self.embed_state(inputs)[:, None]
        padding = torch.cat([valid.new_zeros(batch, 1), ~valid], dim=1)
        tokens = torch.cat([state_token, tokens], dim=1)
        # without padding the fused attention kernels apply (batches of one budget have none)
        encoder_padding = padding if bool(padding.any()) else None
        for block in self.encoder:
            tokens = block(tokens, encoder_padding)
        return self.encoder_norm(tokens), padding

    def embed_state(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The masked state vector and the frame-counter phase -> ``(B, d)``."""
        state, mask = inputs["state"], inputs["state_mask"]
        mask = mask * (torch.arange(mask.shape[-1], device=mask.device) < self.config.state_fields)
        counter = state[:, STATE_INDEX["frame_phase"]] * mask[:, STATE_INDEX["frame_phase"]]
        phase = fourier_features(counter[:, None], self.config.fourier_bands)
        return self.state_embed(torch.cat([state * mask, mask, phase], dim=-1))

    def splat(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """This frame's samples on the pixel grid -> ``(B, C + 1, H, W)`` (values, then 1 where sampled)."""
        xy, values, valid = inputs["token_xy"], inputs["token_values"], inputs["token_valid"]
        batch, _, c = values.shape
        size = self.config.height * self.config.width
        index = (xy[..., 1] * self.config.width + xy[..., 0]).masked_fill(~valid, size)  # padding -> spare slot
        grid = values.new_zeros(batch, c + 1, size + 1)
        stacked = torch.cat([values, valid[..., None].to(values.dtype)], dim=-1).transpose(1, 2)
        grid.scatter_(2, index[:, None].expand(-1, c + 1, -1), stacked)
        return grid[:, :, :size].view(batch, c + 1, self.config.height, self.config.width)

    def tile_queries(self, inputs: dict[str, torch.Tensor], composite: torch.Tensor,
                     coverage: torch.Tensor) -> torch.Tensor:
        """One query per tile from its pixels of every input plane and its position -> ``(B, Q, d)``."""
        planes = torch.cat([composite, inputs["confidence"], coverage, self.splat(inputs), inputs["dynamic"]],
                           dim=1)  # (B, 3C + 4, H, W)
        tiles = self.tile_embed(planes).flatten(2).transpose(1, 2)  # (B, Q, d)
        batch = planes.shape[0]
        rows, cols = self.grid_shape
        half = self.config.tile / 2
        y = (torch.arange(rows, device=planes.device).float() * self.config.tile + half).repeat_interleave(cols)
        x = (torch.arange(cols, device=planes.device).float() * self.config.tile + half).repeat(rows)
        positions = self.positions(x.expand(batch, -1), y.expand(batch, -1), inputs["camera_x"])
        # every tile hears the state; the status bar's tiles also the digits the state says it shows
        queries = tiles + self.position_embed(positions) + self.state_to_queries(self.embed_state(inputs))[:, None]
        hud_tiles = (HUD_ROWS // self.config.tile) * cols
        digits = self.digit_embed(inputs["hud_digits"]).sum(dim=1)  # (B, d)
        return torch.cat([queries[:, :hud_tiles] + digits[:, None], queries[:, hud_tiles:]], dim=1)

    @property
    def grid_shape(self) -> tuple[int, int]:
        return self.config.height // self.config.tile, self.config.width // self.config.tile

    def decode(self, queries: torch.Tensor, tokens: torch.Tensor, padding: torch.Tensor,
               need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Cross-attention of the tile queries to the encoded tokens -> ``((B, Q, d), weights (B, Q, 1 + N))``."""
        weights = None
        for block in self.decoder:
            queries, weights = block(queries, tokens, padding, need_weights)
        return queries, weights

    def correction(self, queries: torch.Tensor) -> torch.Tensor:
        """CNN refinement on the tile grid, then each tile to its pixels -> ``(B, C, H, W)``."""
        rows, cols = self.grid_shape
        grid = queries.transpose(1, 2).reshape(queries.shape[0], -1, rows, cols)
        for block in self.refine:
            grid = grid + block(grid)
        return F.pixel_shuffle(self.to_pixels(grid), self.config.tile)

    def forward(self, inputs: dict[str, torch.Tensor], need_weights: bool = False) -> dict[str, torch.Tensor]:
        """``inputs`` from :func:`collate_inputs` -> ``{"frame": (B, C, H, W), "composite": (B, C, H, W)}`` and,
        with ``need_weights``, ``"attention": (B, Q, 1 + N)`` (the last decoder layer's, token 0 = state)."""
        composite, coverage = self.render_sprites(inputs["canvas"], inputs["sprite_pose"], inputs["sprite_top"],
                                                  inputs["sprite_left"], inputs["sprite_valid"])
        tokens, padding = self.encode(inputs)
        queries, weights = self.decode(self.tile_queries(inputs, composite, coverage), tokens, padding, need_weights)
        correction = self.correction(queries)
        frame = composite + correction if self.config.global_skip else 0.5 + correction
        outputs = {"frame": frame, "composite": composite}
        if need_weights:
            outputs["attention"] = weights
        return outputs

    @torch.no_grad()
    def mc_dropout(self, inputs: dict[str, torch.Tensor], samples: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
        """Monte-Carlo dropout: ``samples`` stochastic passes -> ``(mean, std)``, each ``(B, C, H, W)``."""
        if samples < 2:
            raise ValueError(f"mc_dropout needs samples >= 2 to estimate a spread, got {samples}")
        was_training = self.training
        self.train()
        try:
            frames = torch.stack([self(inputs)["frame"] for _ in range(samples)])
        finally:
            self.train(was_training)
        return frames.mean(0), frames.std(0)


# --- inputs --------------------------------------------------------------------------------------------------


def frame_inputs(memory: MemoryBank, rows: np.ndarray, cols: np.ndarray, values: np.ndarray, state: np.ndarray,
                 state_mask: np.ndarray) -> dict[str, np.ndarray]:
    """One frame's model inputs (numpy, unbatched) from the memory before this frame's update.

    ``rows, cols (N,)`` int pixel positions and ``values (N, C)`` in [0, 1] are this frame's samples.
    """
    canvas, confidence = memory.view(state)
    dynamic, freshness = memory.dynamic(state)
    windows = template_windows(sprite_boxes(state, state_mask))[:MAX_SPRITES]
    pose = np.zeros(MAX_SPRITES, np.int64)
    top = np.zeros(MAX_SPRITES, np.int64)
    left = np.zeros(MAX_SPRITES, np.int64)
    valid = np.zeros(MAX_SPRITES, bool)
    for slot, (p, t, l) in enumerate(windows):
        pose[slot], top[slot], left[slot], valid[slot] = p, t, l, True
    return {
        "token_xy": np.stack([cols, rows], axis=-1).astype(np.int64),
        "token_values": np.asarray(values, np.float32).reshape(len(rows), -1),
        "state": np.asarray(state, np.float32),
        "state_mask": np.asarray(state_mask, np.float32),
        "camera_x": np.float32(camera_x(state)),
        "canvas": canvas.transpose(2, 0, 1),
        "confidence": confidence[None],
        "dynamic": np.concatenate([dynamic.transpose(2, 0, 1), freshness[None]], axis=0),
        "sprite_pose": pose, "sprite_top": top, "sprite_left": left, "sprite_valid": valid,
        "hud_digits": hud_digits(state),
    }


def collate_inputs(items: list[dict[str, np.ndarray]], device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Batch :func:`frame_inputs` dicts, padding the pixel tokens to the longest (``token_valid`` marks real ones)."""
    longest = max(len(item["token_xy"]) for item in items)
    batch: dict[str, torch.Tensor] = {}
    for key in items[0]:
        if key in ("token_xy", "token_values"):
            padded = np.zeros((len(items), longest) + items[0][key].shape[1:], items[0][key].dtype)
            for i, item in enumerate(items):
                padded[i, :len(item[key])] = item[key]
            batch[key] = torch.from_numpy(padded)
        else:
            batch[key] = torch.from_numpy(np.stack([np.asarray(item[key]) for item in items]))
    valid = np.zeros((len(items), longest), bool)
    for i, item in enumerate(items):
        valid[i, :len(item["token_xy"])] = True
    batch["token_valid"] = torch.from_numpy(valid)
    return {key: value.to(device) for key, value in batch.items()}


# --- checkpoints -------------------------------------------------------------------------------------------


def save_checkpoint(path: str | Path, model: SparsePixelTransformer, priors: StagePriors,
                    memory_config: MemoryConfig, metadata: dict | None = None, **extra) -> None:
    """Write a checkpoint that ``torch.load(path, weights_only=True)`` reads: plain dicts, numbers, strings, tensors."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": asdict(model.config),
               "state_dict": model.state_dict(), "priors": priors.to_tensors(), "memory": asdict(memory_config),
               "metadata": dict(metadata or {}), **extra}
    temporary = path.with_name(path.name + ".tmp")
    torch.save(payload, temporary)
    temporary.replace(path)


def read_checkpoint(path: str | Path) -> dict:
    """The raw checkpoint dict, after checking that it is an SPT checkpoint this version understands."""
    return read_payload(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "SPT",
                        f"train one with `python experiments/train_reconstructor.py` or use the shipped "
                        f"{DEFAULT_CHECKPOINT}")


def check_weights(state_dict, config: SPTConfig) -> None:
    """A ValueError unless ``state_dict`` holds exactly the tensors, of exactly the shapes, that an SPT of
    ``config`` has (:func:`models.checkpoint_files.check_state_dict`)."""
    check_state_dict(state_dict, lambda: SparsePixelTransformer(config), "save_checkpoint")


def load_checkpoint(path: str | Path = DEFAULT_CHECKPOINT) -> tuple[SparsePixelTransformer, StagePriors, MemoryConfig, dict]:
    """``(model in eval mode, stage priors, memory config, metadata)`` from a checkpoint file.

    Everything read is checked (config fields and ranges, the weights' names and shapes, the memory
    config, the priors' arrays) before the model is built, so a bad file fails fast and allocates nothing big.
    """
    payload = read_checkpoint(path)
    missing = sorted({"config", "state_dict", "priors", "memory"} - set(payload))
    if missing:
        raise ValueError(f"{path} lacks the checkpoint entries {missing}: write checkpoints with save_checkpoint")
    config = SPTConfig.from_dict(payload["config"])
    check_weights(payload["state_dict"], config)
    memory_config = MemoryConfig.from_dict(payload["memory"])
    priors = StagePriors.from_tensors(payload["priors"])
    metadata = payload.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: the checkpoint's metadata must be a dict, got {type(metadata).__name__}")
    model = SparsePixelTransformer(config)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, priors, memory_config, metadata


# --- the reconstructor ----------------------------------------------------------------------------------

# float32 rounding of value / scale may land a hair outside a field's exact bounds
_FIELD_SLACK = 1e-5 * np.maximum(1.0, np.maximum(np.abs(FIELD_LOW), np.abs(FIELD_HIGH)))
#: Fields the memory indexes its canvases by: checked whatever the mask says.
PLACING_FIELDS = ("camera_x", "world", "stage", "area")


def _real_array(value, what: str) -> np.ndarray:
    """``value`` as a float64 array, or a ValueError unless it holds real numbers (no bools, strings, complex)."""
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise ValueError(f"{what} must be an array of real numbers (float or int), got dtype {array.dtype}")
    return array.astype(np.float64, copy=False)


def check_frame_inputs(pixels, state, state_mask, channels: int, state_dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(pixels (N, 2 + C) float32, state (D,) float32, state_mask (D,) float32)`` after checking them, or a
    ValueError saying what is wrong: one frame's input to an SPT of ``channels`` colours and ``state_dim``."""
    colour = "RGB" if channels == 3 else "luma"
    pixels = _real_array(pixels, "pixels")
    if pixels.ndim != 2 or pixels.shape[1] != 2 + channels:
        raise ValueError(f"this SPT takes pixels of shape (N, {2 + channels}) (u, v and {colour}), got "
                         f"{pixels.shape}: use the environment's color={'rgb' if channels == 3 else 'gray'!r} or a "
                         "checkpoint of the other colour mode")
    if not 1 <= len(pixels) <= FRAME_HEIGHT * FRAME_WIDTH:
        raise ValueError(f"{len(pixels)} pixels: a frame's input needs at least 1 and at most the "
                         f"{FRAME_HEIGHT * FRAME_WIDTH} pixels a frame has")
    if not np.isfinite(pixels).all():
        raise ValueError("pixels hold NaN or infinite values: pass the observation's pixels unchanged")
    if (pixels.min() < 0.0 or pixels.max() > 1.0):
        column = "coordinates (u, v)" if (pixels[:, :2].min() < 0 or pixels[:, :2].max() > 1) else "values"
        raise ValueError(f"pixel {column} must lie in [0, 1], got [{pixels.min():g}, {pixels.max():g}]: values are "
                         "uint8 / 255 (sgaps_env.coords.frame_values), coordinates are pixel centres in [0, 1]")
    state, state_mask = _real_array(state, "state"), _real_array(state_mask, "state_mask")
    if state.ndim != 1 or state.shape != state_mask.shape or len(state) != state_dim:
        raise ValueError(f"state and state_mask must both be 1-D of length {state_dim} (this SPT's state_dim; at "
                         f"least the {len(STATE_FIELDS)} named fields), got {state.shape} and {state_mask.shape}")
    if not (np.isfinite(state).all() and np.isfinite(state_mask).all()):
        raise ValueError("state and state_mask must be finite (masked entries hold the sentinel, e.g. -999)")
    if not np.isin(state_mask, (0.0, 1.0)).all():
        raise ValueError("state_mask must hold only 0 (invalid) and 1 (valid)")
    named = state[:len(STATE_FIELDS)]
    checked = state_mask[:len(STATE_FIELDS)] == 1
    checked[[STATE_INDEX[name] for name in PLACING_FIELDS]] = True
    index = field_out_of_range(named, checked, _FIELD_SLACK)
    if index is not None:
        field = STATE_FIELDS[index]
        raise ValueError(f"state field {field.name} is {named[index]:g}, outside its range [{field.low:g}, "
                         f"{field.high:g}] (sgaps_env.STATE_FIELDS): pass the state the environment gives")
    return pixels.astype(np.float32), state.astype(np.float32), state_mask.astype(np.float32)



class SPTReconstructor:
    """The SPT behind the common reconstructor interface (see models.baselines.Reconstructor).

    Stateful: it keeps the session's :class:`~models.memory.MemoryBank`; call :meth:`reset` when a
    session starts. ``reconstruction_feedback`` writes each reconstruction into the memory where it
    knows nothing better (confidence below ``MemoryConfig.reconstruction_confidence``).
    """

    name = "spt"

    def __init__(self, checkpoint: str | Path = DEFAULT_CHECKPOINT, device: str = "cpu",
                 reconstruction_feedback: bool = True, use_prior: bool | None = None):
        model, priors, memory_config, self.metadata = load_checkpoint(checkpoint)
        self.checkpoint = Path(checkpoint)
        self._setup(model, priors, memory_config, device, reconstruction_feedback, use_prior)

    @classmethod
    def from_model(cls, model: SparsePixelTransformer, priors: StagePriors, memory_config: MemoryConfig,
                   device: str = "cpu", reconstruction_feedback: bool = True) -> "SPTReconstructor":
        """Wrap a model in memory (e.g. during training) instead of loading a checkpoint."""
        self = cls.__new__(cls)
        self.metadata, self.checkpoint = {}, None
        self._setup(model, priors, memory_config, device, reconstruction_feedback, None)
        return self

    def _setup(self, model, priors, memory_config, device, reconstruction_feedback, use_prior) -> None:
        memory_config = MemoryConfig(**asdict(memory_config))
        if use_prior is not None:
            memory_config.use_prior = use_prior
        self.model, self.priors, self.device = model.to(device), priors, device
        self.reconstruction_feedback = reconstruction_feedback
        self.memory = MemoryBank(model.config.channels, priors, memory_config)

    @property
    def channels(self) -> int:
        return self.model.config.channels

    def reset(self) -> None:
        self.memory.reset()

    def inputs(self, pixels: np.ndarray, state: np.ndarray, state_mask: np.ndarray) -> dict[str, np.ndarray]:
        """This frame's model inputs (before the memory update), after :func:`check_frame_inputs`: a rejected
        frame raises a ValueError and leaves the memory as it was."""
        pixels, state, state_mask = check_frame_inputs(pixels, state, state_mask, self.channels,
                                                       self.model.config.state_dim)
        rows, cols = uv_to_pixel(pixels[:, :2], self.model.config.height, self.model.config.width)
        # fields appended after the model's training are not read, by the network, the sprite layer or the memory
        state_mask = np.where(np.arange(len(state_mask)) < self.model.config.state_fields, state_mask,
                              np.float32(0.0))
        return frame_inputs(self.memory, rows, cols, pixels[:, 2:], state, state_mask)

    @torch.inference_mode()
    def reconstruct(self, pixels: np.ndarray, state: np.ndarray, state_mask: np.ndarray) -> np.ndarray:
        """``pixels (N, 2 + C)``, ``state``, ``state_mask`` -> the frame ``(H, W, C)`` float32 in [0, 1]."""
        return self.reconstruct_detailed(pixels, state, state_mask)["frame"]

    @torch.inference_mode()
    def reconstruct_detailed(self, pixels: np.ndarray, state: np.ndarray, state_mask: np.ndarray,
                             need_weights: bool = False, mc_samples: int = 0) -> dict[str, np.ndarray]:
        """:meth:`reconstruct` that also returns what importance maps are made of.

        Returns ``{"frame": (H, W, C)}`` plus, with ``need_weights``, ``"attention": (Q, 1 + N)`` (each
        tile query's last-layer attention over the state token and this frame's N samples, in
        ``"token_xy"`` order: ``(N, 2)`` int column, row) and, with ``mc_samples >= 2``, ``"uncertainty":
        (H, W)``, the Monte-Carlo-dropout standard deviation averaged over channels. The frame is the
        deterministic pass's either way, and the memory is updated once, as by :meth:`reconstruct`.
        """
        inputs = self.inputs(pixels, state, state_mask)
        state, state_mask = inputs["state"], inputs["state_mask"]
        batch = collate_inputs([inputs], self.device)
        outputs = self.model(batch, need_weights=need_weights)
        frame = outputs["frame"][0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
        cols, rows = inputs["token_xy"][:, 0], inputs["token_xy"][:, 1]
        frame[rows, cols] = inputs["token_values"]  # sampled pixels are known exactly
        self.memory.update(rows, cols, inputs["token_values"], state, state_mask,
                           reconstruction=frame if self.reconstruction_feedback else None)
        result = {"frame": frame}
        if need_weights:
            result["attention"] = outputs["attention"][0].float().cpu().numpy()
            result["token_xy"] = inputs["token_xy"]
        if mc_samples:
            _, spread = self.model.mc_dropout(batch, mc_samples)
            result["uncertainty"] = spread[0].mean(0).cpu().numpy()
        return result

    @staticmethod
    @torch.inference_mode()
    def reconstruct_batch(reconstructors: list["SPTReconstructor"],
                          frames: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> list[np.ndarray | ValueError]:
        """Frames of several sessions in one forward pass: ``frames[i] = (pixels, state, state_mask)`` of the
        session whose memory is ``reconstructors[i]`` (all on one network) -> its ``(H, W, C)`` frame, the same as
        ``reconstructors[i].reconstruct(*frames[i])``. A frame its session rejects comes back as the ValueError and
        leaves that memory as it was; the others are reconstructed all the same (what a server batching many
        clients needs)."""
        if len(reconstructors) != len(frames):
            raise ValueError(f"{len(reconstructors)} reconstructors for {len(frames)} frames: pass one per frame")
        if len({id(r.model) for r in reconstructors}) > 1:
            raise ValueError("reconstruct_batch batches one network: the reconstructors must share their model "
                             "(build them with SPTReconstructor.from_model)")
        results: list[np.ndarray | ValueError] = [ValueError("not reconstructed")] * len(frames)
        accepted, inputs = [], []
        for index, (reconstructor, frame) in enumerate(zip(reconstructors, frames)):
            try:
                inputs.append(reconstructor.inputs(*frame))
            except ValueError as error:
                results[index] = error
                continue
            accepted.append(index)
        if not accepted:
            return results
        first = reconstructors[accepted[0]]
        outputs = first.model(collate_inputs(inputs, first.device))["frame"].clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        for row, index in enumerate(accepted):
            reconstructor, prepared, frame = reconstructors[index], inputs[row], outputs[row]
            cols, rows = prepared["token_xy"][:, 0], prepared["token_xy"][:, 1]
            frame[rows, cols] = prepared["token_values"]
            reconstructor.memory.update(rows, cols, prepared["token_values"], prepared["state"],
                                        prepared["state_mask"],
                                        reconstruction=frame if reconstructor.reconstruction_feedback else None)
            results[index] = frame
        return results

    def __repr__(self) -> str:
        return f"SPTReconstructor({str(self.checkpoint) if self.checkpoint else 'in-memory model'!r})"
