"""Pictures of what the agent sees: sampled pixels drawn on a canvas, and the ``human`` window."""
from __future__ import annotations

import numpy as np

from sgaps_env.coords import FRAME_HEIGHT, FRAME_WIDTH, uv_to_pixel

#: Colour of the pixels that were not sampled in a canvas (dark blue, so black samples stay visible).
BACKGROUND = np.array([24, 24, 48], dtype=np.uint8)


def sample_canvas(pixels: np.ndarray, height: int = FRAME_HEIGHT, width: int = FRAME_WIDTH,
                  dot: int = 1) -> np.ndarray:
    """Draw ``(N, 2 + C)`` sampled pixels on an ``(H, W, 3)`` uint8 canvas.

    Each sample colours a ``dot x dot`` square centred on its pixel (``dot=1``
    is the honest picture; larger dots make a sparse set visible in a figure).
    """
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[:] = BACKGROUND
    rows, cols = uv_to_pixel(pixels[:, :2], height, width)
    values = np.clip(pixels[:, 2:] * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if values.shape[1] == 1:
        values = np.repeat(values, 3, axis=1)
    half = dot // 2
    for dy in range(-half, dot - half):
        for dx in range(-half, dot - half):
            canvas[np.clip(rows + dy, 0, height - 1), np.clip(cols + dx, 0, width - 1)] = values
    return canvas


class HumanViewer:
    """A pygame window showing the true frame beside the sampled pixels.

    Needs a display; for headless runs set ``SDL_VIDEODRIVER=dummy``.
    """

    def __init__(self, caption: str, fps: float, scale: int = 2):
        try:
            import pygame
        except ImportError as error:  # pragma: no cover - pygame is a dependency
            raise ImportError("render_mode='human' needs pygame: pip install pygame") from error
        self._pygame = pygame
        pygame.display.init()
        size = (2 * FRAME_WIDTH * scale, FRAME_HEIGHT * scale)
        try:
            self._window = pygame.display.set_mode(size)
        except pygame.error as error:
            raise RuntimeError(f"render_mode='human' could not open a window ({error}); use render_mode="
                               "'rgb_array' on a machine without a display, or set SDL_VIDEODRIVER=dummy") from error
        pygame.display.set_caption(caption)
        self._clock = pygame.time.Clock()
        self._fps = fps
        self._size = size

    def show(self, frame: np.ndarray, pixels: np.ndarray) -> None:
        """Show ``frame`` (H, W, 3) uint8 on the left and the samples on the right."""
        pygame = self._pygame
        pygame.event.pump()
        picture = np.concatenate([frame, sample_canvas(pixels, dot=2)], axis=1)
        surface = pygame.surfarray.make_surface(picture.swapaxes(0, 1))
        self._window.blit(pygame.transform.scale(surface, self._size), (0, 0))
        pygame.display.flip()
        self._clock.tick(self._fps)

    def close(self) -> None:
        self._pygame.display.quit()
