"""The seed documents' two masked-autoencoder baselines, trained here so that their claims can be measured.

    from models.mae import MAEReconstructor
    patch = MAEReconstructor("patch")   # models/checkpoints/patch-mae-tiny-worlds1-4.pt
    pixel = MAEReconstructor("pixel")   # models/checkpoints/pixel-mae-small-worlds1-4.pt
    frame = patch.reconstruct(pixels, state, mask)  # (240, 256, 3); the state is not read

- **Patch MAE** (the HST-MAE design, ``kind="patch"``): a ViT encoder over the *visible* 16 x 16 patches of
  a short clip of consecutive frames (tube masking: the same patch positions in every frame of the clip;
  the seed's 2 x 16 x 16 cubes), one token per frame and patch with a learned (time, row, column)
  embedding, and a lightweight decoder.
- **Pixel MAE** (the SGAPS design's "Pixel MAE" row, ``kind="pixel"``): the same encoder and decoder
  over sparse pixels (each token a pixel's colour and the Fourier features of its position), one frame at
  a time, without the state vector and without any memory of earlier frames.

Neither reads the state vector, as in their designs. The decoder is shared: one query per 16 x 16 patch
position, carrying that patch's samples (all its pixels for a visible patch, a few or none otherwise) and
its position; the queries cross-attend to the encoded tokens, attend to each other, and each becomes
its patch's pixels in every frame of the clip. The loss (``experiments/train_reconstructor.py --model``)
is on the pixels that were not sampled; sampled pixels are pasted back exactly.

Streaming (:class:`MAEReconstructor`, the common reconstructor interface): consecutive frames sampled at
the same whole patches form a clip, up to ``config.frames`` long; each frame is reconstructed from the
clip so far (the model is trained on clip prefixes too), so nothing waits for a later frame.

Tensor shapes: B batch, T frames of a clip, C colour channels, H x W = 240 x 256, P = 15 x 16 patch
positions, L = T * P patch tokens, N pixel tokens, M encoded tokens, d model width.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.checkpoint_files import check_config_fields, check_state_dict, read_payload
from models.spt import CrossAttentionBlock, SelfAttentionBlock, fourier_features
from sgaps_env.coords import FRAME_HEIGHT, FRAME_WIDTH, uv_to_pixel
from sgaps_env.descriptions import PATCH_SIZE

CHECKPOINT_FORMAT = "sgaps-mae"
CHECKPOINT_VERSION = 1
KINDS = ("patch", "pixel")
_CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
#: The checkpoints :class:`MAEReconstructor` loads by default, per kind.
DEFAULT_CHECKPOINTS = {"patch": _CHECKPOINTS / "patch-mae-tiny-worlds1-4.pt",
                       "pixel": _CHECKPOINTS / "pixel-mae-small-worlds1-4.pt"}


@dataclass
class MAEConfig:
    """Everything that fixes an MAE's shape. Saved inside every checkpoint."""

    kind: str = "patch"
    """``"patch"`` (visible 16 x 16 patches of a clip) or ``"pixel"`` (sparse pixels of one frame)"""
    frames: int = 2
    """clip length T (1 for the pixel MAE: it has no memory)"""
    channels: int = 3
    dim: int = 128
    """encoder width d"""
    heads: int = 4
    encoder_layers: int = 4
    decoder_dim: int = 96
    decoder_heads: int = 4
    decoder_layers: int = 2
    """self-attention layers over the patch queries after their cross-attention to the encoder"""
    fourier_bands: int = 8
    """octaves of the pixel tokens' positional encoding (pixel MAE)"""
    mlp_ratio: int = 4
    dropout: float = 0.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"MAEConfig.kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "pixel" and self.frames != 1:
            raise ValueError("the pixel MAE reconstructs one frame without memory: MAEConfig.frames must be 1")
        if self.channels not in (1, 3):
            raise ValueError(f"MAEConfig.channels must be 1 (luma) or 3 (RGB), got {self.channels}")
        if self.dim % self.heads or self.decoder_dim % self.decoder_heads:
            raise ValueError(f"MAEConfig widths ({self.dim}, {self.decoder_dim}) must be multiples of their heads "
                             f"({self.heads}, {self.decoder_heads})")

    @classmethod
    def from_dict(cls, values: dict) -> "MAEConfig":
        """A config from a checkpoint: known fields only, each of its type and within :data:`CONFIG_LIMITS`,
        checked before anything is built (a checkpoint is untrusted input)."""
        check_config_fields(cls, values, CONFIG_LIMITS, {"kind": KINDS})
        return cls(**values)


#: Named sizes per kind: keyword overrides of :class:`MAEConfig`.
SIZES: dict[str, dict[str, dict]] = {
    "patch": {
        "tiny": dict(frames=2, dim=128, heads=4, encoder_layers=4, decoder_dim=96, decoder_heads=4, decoder_layers=2),
        "small": dict(frames=2, dim=192, heads=6, encoder_layers=6, decoder_dim=128, decoder_heads=4,
                      decoder_layers=2),
        "base": dict(frames=4, dim=384, heads=6, encoder_layers=8, decoder_dim=192, decoder_heads=6,
                     decoder_layers=4),
    },
    "pixel": {
        "tiny": dict(frames=1, dim=32, heads=2, encoder_layers=1, decoder_dim=64, decoder_heads=2, decoder_layers=1,
                     mlp_ratio=2),
        "small": dict(frames=1, dim=64, heads=4, encoder_layers=2, decoder_dim=96, decoder_heads=4, decoder_layers=2,
                      mlp_ratio=2),
        "base": dict(frames=1, dim=128, heads=4, encoder_layers=4, decoder_dim=128, decoder_heads=4,
                     decoder_layers=3, mlp_ratio=2),
    },
}

#: Inclusive ranges of a checkpoint's int config fields (about twice the largest named size).
CONFIG_LIMITS: dict[str, tuple[int, int]] = {
    "frames": (1, 8), "channels": (1, 3), "dim": (8, 768), "heads": (1, 16), "encoder_layers": (0, 16),
    "decoder_dim": (8, 512), "decoder_heads": (1, 16), "decoder_layers": (0, 8), "fourier_bands": (1, 16),
    "mlp_ratio": (1, 8),
}


def mae_config(kind: str, size: str = "tiny", **overrides) -> MAEConfig:
    """The :class:`MAEConfig` of a named size of ``kind``, with ``overrides`` applied."""
    if kind not in SIZES:
        raise ValueError(f"unknown MAE kind {kind!r}: expected one of {KINDS}")
    if size not in SIZES[kind]:
        raise ValueError(f"unknown {kind} MAE size {size!r}: expected one of {sorted(SIZES[kind])}")
    return MAEConfig(kind=kind, **{**SIZES[kind][size], **overrides})


# --- patches -------------------------------------------------------------------------------------------------

GRID_ROWS, GRID_COLS = FRAME_HEIGHT // PATCH_SIZE, FRAME_WIDTH // PATCH_SIZE
PATCHES = GRID_ROWS * GRID_COLS
PATCH_PIXELS = PATCH_SIZE * PATCH_SIZE


def patchify(images: torch.Tensor) -> torch.Tensor:
    """``(..., C, H, W)`` -> ``(..., P, C * 16 * 16)`` in raster order of the patch grid."""
    *lead, c, _, _ = images.shape
    x = images.reshape(-1, c, GRID_ROWS, PATCH_SIZE, GRID_COLS, PATCH_SIZE).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(*lead, PATCHES, c * PATCH_PIXELS)


def unpatchify(patches: torch.Tensor, channels: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``(..., P, C * 16 * 16)`` -> ``(..., C, H, W)``."""
    *lead, _, _ = patches.shape
    x = patches.reshape(-1, GRID_ROWS, GRID_COLS, channels, PATCH_SIZE, PATCH_SIZE).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(*lead, channels, FRAME_HEIGHT, FRAME_WIDTH)


def gather_tokens(tokens: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of ``tokens (B, L, D)`` where ``keep (B, L)`` is True, packed to the front ->
    ``(packed (B, M, D), padding (B, M))`` with M the largest count and padding True past each row's count."""
    counts = keep.sum(1)
    longest = max(1, int(counts.max())) if keep.numel() else 1
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :longest]
    packed = torch.gather(tokens, 1, order[..., None].expand(-1, -1, tokens.shape[-1]))
    padding = torch.arange(longest, device=tokens.device)[None] >= counts[:, None]
    return packed, padding


# --- the model -----------------------------------------------------------------------------------------------


class MaskedAutoencoder(nn.Module):
    """See the module docstring. Build with ``MaskedAutoencoder(mae_config("patch", "tiny"))``."""

    def __init__(self, config: MAEConfig):
        super().__init__()
        self.config = config
        c, d, e, t = config.channels, config.dim, config.decoder_dim, config.frames
        patch_values = c * PATCH_PIXELS
        if config.kind == "patch":
            self.token_embed = nn.Linear(patch_values, d)
        else:
            self.token_embed = nn.Linear(c + 4 * config.fourier_bands, d)
        self.position = nn.Parameter(torch.zeros(1, PATCHES, d))
        self.time = nn.Parameter(torch.zeros(t, 1, d))
        # always attended to, so an empty frame (nothing visible) still has a key
        self.summary = nn.Parameter(torch.zeros(1, 1, d))
        self.encoder = nn.ModuleList(SelfAttentionBlock(d, config.heads, config.dropout, config.mlp_ratio)
                                     for _ in range(config.encoder_layers))
        self.encoder_norm = nn.LayerNorm(d)
        self.to_decoder = nn.Linear(d, e)
        # a query carries its patch's samples in every frame (values and where they are) and its position
        self.query_embed = nn.Linear(t * (c + 1) * PATCH_PIXELS, e)
        self.query_position = nn.Parameter(torch.zeros(1, PATCHES, e))
        self.cross = CrossAttentionBlock(e, config.decoder_heads, config.dropout, config.mlp_ratio)
        self.decoder = nn.ModuleList(SelfAttentionBlock(e, config.decoder_heads, config.dropout, config.mlp_ratio)
                                     for _ in range(config.decoder_layers))
        self.decoder_norm = nn.LayerNorm(e)
        self.to_pixels = nn.Linear(e, t * patch_values)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for parameter in (self.position, self.time, self.summary, self.query_position):
            nn.init.trunc_normal_(parameter, std=0.02)

    def patch_tokens(self, patches: torch.Tensor, visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Visible patches -> ``(tokens (B, M, d), padding (B, M))``.

        ``patches (B, T', P, C * 256)`` the clip so far, ``visible (B, T', P)`` bool.
        """
        batch, frames = patches.shape[:2]
        index = torch.arange(frames * PATCHES, device=patches.device).expand(batch, -1)
        # only the visible patches go through the embedding (about a tenth of them)
        picked, padding = gather_tokens(index[..., None], visible.reshape(batch, -1))
        picked = picked[..., 0]
        flat = patches.reshape(batch, frames * PATCHES, -1)
        values = torch.gather(flat, 1, picked[..., None].expand(-1, -1, flat.shape[-1]))
        time, position = torch.div(picked, PATCHES, rounding_mode="floor"), picked % PATCHES
        tokens = self.token_embed(values) + self.position[0, position] + self.time[time, 0]
        return tokens, padding

    def pixel_tokens(self, xy: torch.Tensor, pixel_values: torch.Tensor,
                     valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampled pixels -> ``(tokens (B, N, d), padding (B, N))``.

        ``xy (B, N, 2)`` long pixel column, row; ``pixel_values (B, N, C)``; ``valid (B, N)`` bool.
        """
        centres = (xy.float() + 0.5) / torch.tensor([FRAME_WIDTH, FRAME_HEIGHT], device=xy.device)
        features = torch.cat([pixel_values, fourier_features(centres, self.config.fourier_bands)], dim=-1)
        return self.token_embed(features), ~valid

    def encode(self, tokens: torch.Tensor, padding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``tokens (B, M, d)`` with the summary token in front through the encoder ->
        ``(encoded (B, 1 + M, d), padding (B, 1 + M))``."""
        tokens = torch.cat([self.summary.expand(len(tokens), -1, -1), tokens], dim=1)
        padding = torch.cat([padding.new_zeros(len(tokens), 1), padding], dim=1)
        mask = padding if bool(padding.any()) else None
        for block in self.encoder:
            tokens = block(tokens, mask)
        return self.encoder_norm(tokens), padding

    def decode(self, encoded: torch.Tensor, padding: torch.Tensor, patches: torch.Tensor,
               hit: torch.Tensor) -> torch.Tensor:
        """Patch queries read the encoding -> the clip's patches ``(B, T, P, C * 256)``.

        ``patches (B, T', P, C * 256)`` and ``hit (B, T', P, 256)`` hold what was sampled in the first
        T' <= T frames of the clip (zero where not sampled; the frames not yet seen are left out).
        """
        batch, seen = patches.shape[:2]
        frames, c = self.config.frames, self.config.channels
        planes = torch.cat([patches, hit], dim=-1)  # (B, T', P, (C + 1) 256)
        if seen < frames:
            planes = torch.cat([planes, planes.new_zeros(batch, frames - seen, *planes.shape[2:])], dim=1)
        queries = self.query_embed(planes.transpose(1, 2).reshape(batch, PATCHES, -1)) + self.query_position
        queries, _ = self.cross(queries, self.to_decoder(encoded), padding)
        for block in self.decoder:
            queries = block(queries, None)
        pixels = self.to_pixels(self.decoder_norm(queries))  # (B, P, T C 256)
        return 0.5 + pixels.reshape(batch, PATCHES, frames, c * PATCH_PIXELS).transpose(1, 2)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``inputs`` from :func:`clip_inputs` -> the clip's patches ``(B, T, P, C * 256)`` (unclamped;
        :func:`unpatchify` makes them frames).

        ``patches (B, T', P, C * 256)`` (zero where not sampled), ``hit (B, T', P, 256)`` and, for the pixel
        MAE, ``token_xy``, ``token_values``, ``token_valid`` of the frame's samples.
        """
        patches, hit = inputs["patches"], inputs["hit"]
        if self.config.kind == "patch":
            tokens, padding = self.patch_tokens(patches, hit.amin(-1) > 0)  # visible: every pixel sampled
        else:
            tokens, padding = self.pixel_tokens(inputs["token_xy"], inputs["token_values"], inputs["token_valid"])
        encoded, padding = self.encode(tokens, padding)
        return self.decode(encoded, padding, patches, hit)


def clip_inputs(clip: list[tuple[np.ndarray, np.ndarray, np.ndarray]], channels: int,
                device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """One clip's samples as batched model inputs (batch of one): per frame, pixel ``(rows (N,), cols (N,))``
    int and ``values (N, C)`` in [0, 1]. The pixel tokens are the last frame's."""
    grid = torch.zeros(len(clip), channels, FRAME_HEIGHT, FRAME_WIDTH)
    sampled = torch.zeros(len(clip), 1, FRAME_HEIGHT, FRAME_WIDTH)
    for t, (rows, cols, values) in enumerate(clip):
        r, c = torch.from_numpy(rows), torch.from_numpy(cols)
        grid[t, :, r, c] = torch.from_numpy(np.ascontiguousarray(values, np.float32)).T
        sampled[t, 0, r, c] = 1.0
    rows, cols, values = clip[-1]
    inputs = {"patches": patchify(grid)[None], "hit": patchify(sampled)[None],
              "token_xy": torch.from_numpy(np.stack([cols, rows], -1).astype(np.int64))[None],
              "token_values": torch.from_numpy(np.ascontiguousarray(values, np.float32))[None],
              "token_valid": torch.ones(1, len(rows), dtype=torch.bool)}
    return {key: value.to(device) for key, value in inputs.items()}


# --- checkpoints ---------------------------------------------------------------------------------------------


def save_checkpoint(path: str | Path, model: MaskedAutoencoder, metadata: dict | None = None, **extra) -> None:
    """Write a checkpoint that ``torch.load(path, weights_only=True)`` reads: plain dicts, numbers, strings,
    tensors. The weights are stored in half precision (:func:`load_checkpoint` makes them float32 again)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = {name: tensor.detach().to(torch.float16) for name, tensor in model.state_dict().items()}
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": asdict(model.config),
               "state_dict": weights, "metadata": dict(metadata or {}), **extra}
    temporary = path.with_name(path.name + ".tmp")
    torch.save(payload, temporary)
    temporary.replace(path)


def read_checkpoint(path: str | Path) -> dict:
    """The raw checkpoint dict, after checking that it is an MAE checkpoint this version understands."""
    return read_payload(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "MAE",
                        "train one with `python experiments/train_reconstructor.py --model patch-mae` (or pixel-mae) "
                        "or use the shipped ones in models/checkpoints/")


def check_weights(state_dict, config: MAEConfig) -> None:
    """A ValueError unless ``state_dict`` holds exactly the tensors, of exactly the shapes, that an MAE of
    ``config`` has (:func:`models.checkpoint_files.check_state_dict`)."""
    check_state_dict(state_dict, lambda: MaskedAutoencoder(config), "models.mae.save_checkpoint")


def load_checkpoint(path: str | Path) -> tuple[MaskedAutoencoder, dict]:
    """``(model in eval mode, float32, metadata)``; the config and the weights' names and shapes are checked
    before the model is built."""
    payload = read_checkpoint(path)
    missing = sorted({"config", "state_dict"} - set(payload))
    if missing:
        raise ValueError(f"{path} lacks the checkpoint entries {missing}: write checkpoints with "
                         "models.mae.save_checkpoint")
    config = MAEConfig.from_dict(payload["config"])
    check_weights(payload["state_dict"], config)
    metadata = payload.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: the checkpoint's metadata must be a dict, got {type(metadata).__name__}")
    model = MaskedAutoencoder(config)
    model.load_state_dict({name: tensor.float() for name, tensor in payload["state_dict"].items()})
    model.eval()
    return model, metadata


# --- the reconstructor ---------------------------------------------------------------------------------------


class MAEReconstructor:
    """A trained MAE behind the common reconstructor interface (see models.baselines.Reconstructor).

    The patch MAE keeps the current clip: frames sampled at the same whole patches as the one before
    continue it (up to ``config.frames``), any other frame starts a new one; call :meth:`reset` when a
    session starts. Only whole sampled 16 x 16 patches are its tokens (other samples still reach the
    decoder's queries and are pasted into the output). The pixel MAE reads each frame alone.
    """

    def __init__(self, kind_or_checkpoint: str | Path = "patch", device: str = "cpu"):
        path = DEFAULT_CHECKPOINTS.get(str(kind_or_checkpoint), kind_or_checkpoint)
        model, self.metadata = load_checkpoint(path)
        self.checkpoint = Path(path)
        self._setup(model, device)

    @classmethod
    def from_model(cls, model: MaskedAutoencoder, device: str = "cpu") -> "MAEReconstructor":
        """Wrap a model in memory (e.g. during training) instead of loading a checkpoint."""
        self = cls.__new__(cls)
        self.metadata, self.checkpoint = {}, None
        self._setup(model, device)
        return self

    def _setup(self, model: MaskedAutoencoder, device: str) -> None:
        self.model, self.device = model.to(device).eval(), device
        self.name = f"{model.config.kind}-mae"
        self.stateful = model.config.kind == "patch" and model.config.frames > 1
        self.reset()

    def reset(self) -> None:
        """Start a new session: the clip is emptied."""
        self._clip: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._clip_key: bytes | None = None

    def _check_pixels(self, pixels) -> np.ndarray:
        array = np.asarray(pixels)
        channels = self.model.config.channels
        if array.ndim != 2 or array.shape[1] != 2 + channels or len(array) == 0 or array.dtype.kind not in "fiu":
            raise ValueError(f"pixels has shape {array.shape} ({array.dtype}), expected (N, {2 + channels}) numeric "
                             f"rows (u, v, value...) with N >= 1: this MAE was trained on {channels}-channel samples")
        array = array.astype(np.float32)
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise ValueError("pixels must hold finite u, v and values in [0, 1]: pass the observation's pixels "
                             "unchanged")
        return array

    @torch.inference_mode()
    def reconstruct(self, pixels: np.ndarray, state: np.ndarray, state_mask: np.ndarray) -> np.ndarray:
        """``pixels (N, 2 + C)`` -> the frame ``(H, W, C)`` float32 in [0, 1]. The state is not read."""
        pixels = self._check_pixels(pixels)
        rows, cols = uv_to_pixel(pixels[:, :2], FRAME_HEIGHT, FRAME_WIDTH)
        values = pixels[:, 2:]
        if self.stateful:
            key = np.unique(rows * FRAME_WIDTH + cols).tobytes()
            if key != self._clip_key or len(self._clip) >= self.model.config.frames:
                self._clip, self._clip_key = [], key
            self._clip.append((rows, cols, values))
            clip = self._clip
        else:
            clip = [(rows, cols, values)]
        inputs = clip_inputs(clip, self.model.config.channels, self.device)
        patches = self.model(inputs)[0, len(clip) - 1]
        output = unpatchify(patches, self.model.config.channels).clamp(0, 1).permute(1, 2, 0).cpu().numpy()
        output[rows, cols] = values  # sampled pixels are known exactly
        return output

    def __repr__(self) -> str:
        return f"MAEReconstructor({self.name}, checkpoint={self.checkpoint})"
