"""Real video codecs as a baseline: what a live game stream of the same frames would cost and look like.

Our reconstructors rebuild each frame from a few sampled pixels; the ordinary alternative is to encode
the whole frame with a video codec and send that. This module encodes a clip of RGB frames in memory
with PyAV's bundled FFmpeg, decodes it back, and counts the bytes each frame cost, so the codecs can sit
on the same PSNR-versus-bytes plot (:func:`codec_curve`). The codecs, by name (see :data:`CODECS`):

- ``x264-420``: H.264 (libx264), 4:2:0 chroma, preset ``medium``, ``tune=zerolatency``, CRF 0-51.
- ``x264-444``: the same with full-resolution chroma (High 4:4:4 Predictive profile).
- ``x265``: HEVC (libx265), 4:2:0, preset ``medium``, ``tune=zerolatency``, CRF 0-51.
- ``x265-444``: the same with full-resolution chroma (Main 4:4:4 profile).
- ``svt-av1``: AV1 (SVT-AV1 encoder, dav1d decoder), 4:2:0, real-time mode (``rtc=1``: low-delay
  prediction structure) at preset 8 with screen-content tools forced on (``scm=1``), CRF 1-63.
  4:2:0 only: SVT-AV1 does not encode 4:4:4.

Every codec runs at low-latency settings, as a live stream would: no B-frames, no lookahead, each
frame's packet comes out of the encoder as soon as the frame goes in and decodes on its own arrival
(checked: a frame that needs a later packet raises). The rate control is constant quality (CRF), the
one knob the caller sweeps; there is no bitrate cap. The clip is one long GOP: a keyframe on the first
frame and then only where the encoder's own scene-cut detection puts one (x264, x265), never on a timer,
which is what a stream to one viewer over a reliable transport can afford. Each frame's cost is the size
of its packets, the stream headers (SPS/PPS, AV1 sequence header) included in the first frame's; no
container overhead. Presets: x264's and x265's default (``medium``) and SVT-AV1's 8, each encoding a
256x240 frame in about 1-3 ms on one core (a 60 fps stream has 16.7 ms), so the baseline is a good codec,
not a hurried one; the faster presets usual for 1080p streams (x264 ``veryfast``, SVT-AV1 10) spend
15-60% more bytes for the same PSNR on these frames.

Colour: frames go RGB -> Y'CbCr (BT.601, limited range, 8 bits) with swscale, chroma box-filtered for
4:2:0, and back with bicubic chroma upsampling. That conversion alone caps PSNR on NES frames: about
27 dB for 4:2:0 (the NES palette puts sharp colour edges on single pixels) and about 50 dB for 4:4:4
(8-bit rounding), whatever the bitrate.

CPU: every encoder, decoder and colour conversion runs on one thread (x264 ``threads=1``, x265
``pools=1:frame-threads=1``, SVT-AV1 ``lp=1``, dav1d ``threads=1``), so the timing is per core and
the measurement stays polite beside a training job. SVT-AV1's own console log is turned down to errors
through the ``SVT_LOG`` environment variable unless the caller set it.

The frame rate the encoder is told moves x264's and x265's points along their curve (their CRF scales with
frame duration: one CRF spends about 25% more bytes a frame at 15 fps than at 60, for a higher PSNR;
SVT-AV1's does not), so the curve stays put but a CRF means different things. Pass
``fps = 60 / frame_skip`` for frames ``frame_skip`` NES frames apart, e.g. 15 for the environment's
default ``frame_skip=4``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import Interpolation

from models.metrics import psnr, ssim

#: The NES's frame rate (frames a second); the default ``fps``.
NES_FPS = 60

#: GOP length given to every encoder: longer than any clip, so the only keyframe on a timer is the first.
GOP_SIZE = 1_000_000

# RGB -> Y'CbCr: box-filter the chroma; Y'CbCr -> RGB: bicubic chroma at full horizontal resolution
# (swscale's default upsampling replicates chroma and scores about 0.5 dB lower on 4:2:0).
_TO_YUV = Interpolation.AREA | Interpolation.ACCURATE_RND
_TO_RGB = Interpolation.BICUBIC | Interpolation.FULL_CHR_H_INT | Interpolation.ACCURATE_RND
_COLORSPACE, _COLOR_RANGE = "ITU601", "MPEG"
# Chroma samples sit at the centre of their 2x2 block (what the box filter computes). FFmpeg's H.264 and
# HEVC decoders tag their pictures "left" (the MPEG-2 siting) unless the stream says otherwise, which shifts
# the chroma half a pixel on the way back and costs 0.7 dB; so the encoder signals "centre"
# (AVChromaLocation 2) where the format can (H.264/HEVC VUI; AV1 cannot) and decoding assumes it for all.
_CHROMA_CENTER = 2


@dataclass(frozen=True)
class CodecSettings:
    """One named codec configuration (a value of :data:`CODECS`)."""

    encoder: str
    """FFmpeg encoder name, e.g. ``"libx264"``"""
    decoder: str
    """FFmpeg decoder name that reads the encoder's packets, e.g. ``"h264"``"""
    pix_fmt: str
    """the encoded picture format: ``"yuv420p"`` or ``"yuv444p"``"""
    quality_option: str
    """the encoder option the quality knob sets (``"crf"``; lower is better quality and more bytes)"""
    quality_range: tuple[int, int]
    """lowest and highest allowed quality value, inclusive"""
    options: dict[str, str] = field(default_factory=dict)
    """the encoder's other options, exactly as passed to FFmpeg"""
    decoder_options: dict[str, str] = field(default_factory=dict)
    """the decoder's options, exactly as passed to FFmpeg"""


_X264 = {"preset": "medium", "tune": "zerolatency"}  # zerolatency: bframes=0, rc-lookahead=0, no mb-tree
_X265 = {"preset": "medium", "tune": "zerolatency",  # zerolatency: bframes=0, rc-lookahead=0, no cu-tree
         "x265-params": "bframes=0:rc-lookahead=0:pools=1:frame-threads=1:log-level=error"}
_SVT_AV1 = {"preset": "8", "svtav1-params": "rtc=1:pred-struct=1:scm=1:lp=1"}  # rtc: low delay, no lookahead

#: The codecs by name.
CODECS: dict[str, CodecSettings] = {
    "x264-420": CodecSettings("libx264", "h264", "yuv420p", "crf", (0, 51), _X264),
    "x264-444": CodecSettings("libx264", "h264", "yuv444p", "crf", (0, 51), _X264),
    "x265": CodecSettings("libx265", "hevc", "yuv420p", "crf", (0, 51), _X265),
    "x265-444": CodecSettings("libx265", "hevc", "yuv444p", "crf", (0, 51), _X265),
    "svt-av1": CodecSettings("libsvtav1", "libdav1d", "yuv420p", "crf", (1, 63), _SVT_AV1,
                             {"max_frame_delay": "1"}),
}

#: A quality sweep per codec, best quality first: from where the colour conversion's PSNR ceiling is reached
#: (4:2:0) or about 49 dB (4:4:4) down to 100-300 bytes a frame, the fewest each codec spends on
#: 312 frames of heuristic play of 1-1 at 15 fps (1.0-2.1 kB a frame at the top). x264-444 stops at CRF 44:
#: above it the bytes no longer fall. CRF 0 is lossless in x264 and on NES frames costs less than CRF 4-12
#: (exact-match inter prediction), so it is left out of the sweeps to keep each curve monotonic.
DEFAULT_QUALITIES: dict[str, tuple[int, ...]] = {
    "x264-420": (8, 16, 20, 24, 28, 32, 36, 40, 44, 51),
    "x264-444": (4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44),
    "x265": (8, 16, 20, 24, 28, 32, 36, 40, 44, 48, 51),
    "x265-444": (8, 16, 20, 24, 28, 32, 36, 40, 44, 48, 51),
    "svt-av1": (10, 20, 30, 35, 40, 45, 50, 55, 60, 63),
}


# --- checks -----------------------------------------------------------------------------------------


def _check_frames(frames: np.ndarray, settings: CodecSettings) -> np.ndarray:
    """``frames`` as a C-contiguous uint8 ``(T, H, W, 3)`` array, or a ValueError saying what was expected."""
    array = np.asarray(frames)
    if array.ndim != 4 or array.shape[3] != 3 or 0 in array.shape:
        raise ValueError(f"frames has shape {array.shape}, expected (T, H, W, 3) RGB with T >= 1: "
                         "stack a clip's frames with np.stack (one frame needs frames[None])")
    if array.dtype != np.uint8:
        raise ValueError(f"frames has dtype {array.dtype}, expected uint8 in [0, 255]: convert frames in "
                         "[0, 1] with (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)")
    height, width = array.shape[1:3]
    if settings.pix_fmt == "yuv420p" and (height % 2 or width % 2):
        raise ValueError(f"4:2:0 codecs need an even frame size, got {height}x{width}: crop or pad the frames "
                         "by one row/column, or use a 4:4:4 codec (x264-444)")
    return np.ascontiguousarray(array)


def codec_settings(codec: str) -> CodecSettings:
    """The :class:`CodecSettings` named ``codec``, or a ValueError listing the known names."""
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}: choose one of {sorted(CODECS)}")
    return CODECS[codec]


def _check_quality(codec: str, settings: CodecSettings, quality: int) -> int:
    """``quality`` as an int inside the codec's range, or a ValueError giving the range."""
    low, high = settings.quality_range
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not low <= quality <= high:
        raise ValueError(f"{codec} quality ({settings.quality_option}) must be an int in [{low}, {high}] "
                         f"(lower = better quality, more bytes), got {quality!r}")
    return int(quality)


def _check_fps(fps: float) -> Fraction:
    """``fps`` as a positive Fraction, or a ValueError."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction, np.integer, np.floating)) or not fps > 0:
        raise ValueError(f"fps must be a positive number of frames a second, got {fps!r}: "
                         "use 60 / frame_skip for frames frame_skip NES frames apart")
    return Fraction(fps).limit_denominator(1001)


# --- encode and decode ------------------------------------------------------------------------------


def encode(frames: np.ndarray, codec: str, quality: int, fps: float = NES_FPS) -> list[bytes]:
    """Encode one clip, in order, as a live stream would; returns each frame's encoded bytes.

    ``frames`` is ``(T, H, W, 3)`` uint8 RGB. Returns ``T`` byte strings: entry ``t`` is everything the
    encoder emitted for frame ``t`` (normally one packet; the stream headers are in entry 0), so
    ``b"".join`` of them is the whole elementary stream and ``len`` of each is that frame's cost.
    Raises RuntimeError if a frame's packets do not come out of the encoder as soon as the frame goes
    in (the encoder is buffering or reordering: not low-latency), or if it keeps headers out of band.
    """
    settings = codec_settings(codec)
    frames = _check_frames(frames, settings)
    quality = _check_quality(codec, settings, quality)
    rate = _check_fps(fps)
    if settings.encoder == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")  # errors only; SVT-AV1 prints its banner to stderr otherwise
    context = av.CodecContext.create(settings.encoder, "w")
    context.width, context.height, context.pix_fmt = frames.shape[2], frames.shape[1], settings.pix_fmt
    context.time_base, context.framerate = 1 / rate, rate
    context.gop_size, context.max_b_frames, context.thread_count = GOP_SIZE, 0, 1
    context.chroma_sample_location = _CHROMA_CENTER  # signalled in H.264/HEVC's VUI; AV1 cannot say "centre"
    context.options = {**settings.options, settings.quality_option: str(quality)}
    chunks = []
    for index, frame in enumerate(frames):
        picture = _to_yuv(frame, settings.pix_fmt)
        picture.pts = index
        packets = context.encode(picture)
        if not packets or any(packet.pts != index for packet in packets):
            raise RuntimeError(f"{codec} returned packets for frames {[packet.pts for packet in packets]} when "
                               f"given frame {index}: the encoder is delaying or reordering frames, not low-latency")
        chunks.append(b"".join(bytes(packet) for packet in packets))
    held = context.encode(None)
    if held:
        raise RuntimeError(f"{codec} still held {len(held)} packet(s) at the end of the clip: "
                           "the encoder is delaying frames, not low-latency")
    if context.extradata:
        raise RuntimeError(f"{codec} put {len(context.extradata)} header bytes out of band (extradata): "
                           "they would be missing from the per-frame counts")
    return chunks


def decode(chunks: list[bytes], codec: str) -> np.ndarray:
    """Decode :func:`encode`'s per-frame byte strings, one at a time as they would arrive.

    Returns ``(T, H, W, 3)`` uint8 RGB, ``T = len(chunks)``. Raises RuntimeError if a frame does not come
    out of the decoder as soon as its bytes go in (a delay a live viewer would see) or the count differs.
    """
    settings = codec_settings(codec)
    if len(chunks) == 0 or not all(isinstance(chunk, (bytes, bytearray)) and chunk for chunk in chunks):
        raise ValueError("decode needs a non-empty list of non-empty byte strings, one per frame, "
                         "as returned by encode()")
    context = av.CodecContext.create(settings.decoder, "r")
    context.thread_count = 1
    context.options = dict(settings.decoder_options)
    decoded = []
    for index, chunk in enumerate(chunks):
        pictures = context.decode(av.Packet(bytes(chunk)))
        if len(pictures) != 1:
            raise RuntimeError(f"{codec}: frame {index}'s bytes decoded to {len(pictures)} frames, expected "
                               "exactly 1 (the decoder is buffering, or the bytes hold more than one frame)")
        decoded.append(_to_rgb(pictures[0]))
    leftover = context.decode(None)
    if leftover:
        raise RuntimeError(f"{codec}: the decoder flushed {len(leftover)} extra frame(s) after {len(chunks)}")
    return np.stack(decoded)


def _to_yuv(frame: np.ndarray, pix_fmt: str) -> av.VideoFrame:
    """An ``(H, W, 3)`` uint8 RGB frame as a Y'CbCr picture of ``pix_fmt`` (BT.601, limited range)."""
    picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
    picture.chroma_location = _CHROMA_CENTER
    return picture.reformat(format=pix_fmt, interpolation=_TO_YUV, dst_colorspace=_COLORSPACE,
                            dst_color_range=_COLOR_RANGE, threads=1)


def _to_rgb(picture: av.VideoFrame) -> np.ndarray:
    """A decoded Y'CbCr picture as ``(H, W, 3)`` uint8 RGB (the inverse of encode's conversion)."""
    picture.chroma_location = _CHROMA_CENTER
    return picture.reformat(format="rgb24", interpolation=_TO_RGB, src_colorspace=_COLORSPACE,
                            src_color_range=_COLOR_RANGE, threads=1).to_ndarray()


def colour_round_trip(frames: np.ndarray, codec: str) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 RGB ``frames`` after only ``codec``'s colour conversion, RGB -> Y'CbCr -> RGB.

    No codec can do better than this (a lossless one, x264 at CRF 0, returns exactly it), so its PSNR is
    the ceiling to draw under that codec's curve: about 27 dB for 4:2:0 and 50 dB for 4:4:4 on NES frames.
    """
    settings = codec_settings(codec)
    frames = _check_frames(frames, settings)
    return np.stack([_to_rgb(_to_yuv(frame, settings.pix_fmt)) for frame in frames])


def encode_decode(frames: np.ndarray, codec: str, quality: int,
                  fps: float = NES_FPS) -> tuple[np.ndarray, np.ndarray]:
    """Send one clip through ``codec`` at ``quality``: ``(decoded (T, H, W, 3) uint8 RGB, bytes (T,) int64)``.

    ``frames`` is ``(T, H, W, 3)`` uint8 RGB, encoded in order; ``bytes[t]`` is the encoded size of
    frame ``t`` (:func:`encode`), which alone let the decoder output frame ``t``.
    """
    chunks = encode(frames, codec, quality, fps)
    return decode(chunks, codec), np.array([len(chunk) for chunk in chunks], dtype=np.int64)


def codec_curve(frames: np.ndarray, codec: str, qualities: tuple[int, ...] | list[int] | None = None,
                fps: float = NES_FPS) -> list[dict]:
    """One rate-distortion point per quality setting of ``codec`` on the clip ``frames``.

    ``frames`` is ``(T, H, W, 3)`` uint8 RGB; ``qualities`` defaults to :data:`DEFAULT_QUALITIES`.
    Each point is ``{"codec", "quality", "fps", "bytes_per_frame", "psnr", "ssim"}`` (means over frames;
    PSNR in dB and SSIM from :mod:`models.metrics` on [0, 1] floats) plus the per-frame lists
    ``"frame_bytes"``, ``"frame_psnr"`` and ``"frame_ssim"`` for splitting the clip afterwards.
    """
    settings = codec_settings(codec)
    frames = _check_frames(frames, settings)
    qualities = DEFAULT_QUALITIES[codec] if qualities is None else tuple(qualities)
    for quality in qualities:
        _check_quality(codec, settings, quality)
    targets = frames.astype(np.float32) / 255.0
    points = []
    for quality in qualities:
        decoded, sizes = encode_decode(frames, codec, quality, fps)
        scored = decoded.astype(np.float32) / 255.0
        frame_psnr = [psnr(prediction, target) for prediction, target in zip(scored, targets)]
        frame_ssim = [ssim(prediction, target) for prediction, target in zip(scored, targets)]
        points.append({"codec": codec, "quality": int(quality), "fps": float(fps),
                       "bytes_per_frame": float(sizes.mean()), "psnr": float(np.mean(frame_psnr)),
                       "ssim": float(np.mean(frame_ssim)), "frame_bytes": sizes.tolist(),
                       "frame_psnr": frame_psnr, "frame_ssim": frame_ssim})
    return points
