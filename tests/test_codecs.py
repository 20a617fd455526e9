"""The video-codec baseline on real emulator frames: round trips, byte counts, quality knobs, low latency."""
import dataclasses

import av
import numpy as np
import pytest

from models import codecs
from models.codecs import CODECS, DEFAULT_QUALITIES, codec_curve, colour_round_trip, decode, encode, encode_decode
from models.metrics import psnr

FPS = 15  # the fixture's frames are 4 NES frames apart (the environment's default frame_skip)


@pytest.fixture(scope="module")
def clip(heuristic_play_1_1):
    """The first 40 steps of heuristic play of 1-1: ``(40, 240, 256, 3)`` uint8 RGB."""
    frames = heuristic_play_1_1[0][:40]
    assert frames.shape == (40, 240, 256, 3) and frames.dtype == np.uint8
    return frames


def mean_psnr(decoded, frames):
    return float(np.mean([psnr(a / 255.0, b / 255.0) for a, b in zip(decoded, frames)]))


def receiver_decode(stream, codec):
    """Decode the joined elementary stream the way a receiver without frame boundaries would: parse, then decode."""
    context = av.CodecContext.create(CODECS[codec].decoder, "r")
    pictures = []
    for packet in context.parse(stream) + context.parse(None):
        pictures += context.decode(packet)
    pictures += context.decode(None)
    return np.stack([codecs._to_rgb(picture) for picture in pictures])


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_round_trip_keeps_every_frame_and_counts_every_byte(clip, codec):
    chunks = encode(clip, codec, 30, fps=FPS)
    decoded, sizes = encode_decode(clip, codec, 30, fps=FPS)
    assert decoded.shape == clip.shape and decoded.dtype == np.uint8
    assert sizes.shape == (len(clip),) and sizes.dtype == np.int64 and (sizes > 0).all()
    assert sizes.tolist() == [len(chunk) for chunk in chunks]  # one thread: the encoders are deterministic
    assert sizes[0] > sizes[1:].max()  # the keyframe, stream headers included
    # the counted bytes are the whole stream: decoded without the per-frame boundaries, they give the same frames
    stream = b"".join(chunks)
    assert int(sizes.sum()) == len(stream)
    np.testing.assert_array_equal(receiver_decode(stream, codec), decoded)
    np.testing.assert_array_equal(decode(chunks, codec), decoded)
    assert 15.0 < mean_psnr(decoded, clip) < 60.0


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_lower_quality_costs_fewer_bytes_and_scores_lower(clip, codec):
    best, worst = DEFAULT_QUALITIES[codec][1], DEFAULT_QUALITIES[codec][-2]
    high, low = codec_curve(clip[:20], codec, [best, worst], fps=FPS)
    assert (high["quality"], low["quality"]) == (best, worst)
    assert low["bytes_per_frame"] < 0.7 * high["bytes_per_frame"]
    assert low["psnr"] < high["psnr"] and low["ssim"] < high["ssim"]
    for point in (high, low):
        assert len(point["frame_psnr"]) == len(point["frame_ssim"]) == len(point["frame_bytes"]) == 20
        assert point["psnr"] == pytest.approx(np.mean(point["frame_psnr"]))
        assert point["bytes_per_frame"] == pytest.approx(np.mean(point["frame_bytes"]))


def test_full_chroma_beats_the_4_2_0_ceiling(clip):
    """NES colour edges are one pixel wide: 4:2:0 caps PSNR near 27 dB, 4:4:4 goes past 40 at the same CRF."""
    decoded_420, _ = encode_decode(clip, "x264-420", 12, fps=FPS)
    decoded_444, _ = encode_decode(clip, "x264-444", 12, fps=FPS)
    psnr_420, psnr_444 = mean_psnr(decoded_420, clip), mean_psnr(decoded_444, clip)
    assert psnr_444 > 40.0
    assert psnr_444 > psnr_420 + 10.0
    assert psnr_420 <= mean_psnr(colour_round_trip(clip, "x264-420"), clip) + 0.05


@pytest.mark.parametrize("codec", ["x264-420", "x264-444"])
def test_lossless_x264_returns_exactly_the_colour_round_trip(clip, codec):
    """CRF 0 is lossless, so any mismatch between the encode and decode colour conversions shows up here."""
    decoded, _ = encode_decode(clip[:10], codec, 0, fps=FPS)
    np.testing.assert_array_equal(decoded, colour_round_trip(clip[:10], codec))


def test_high_quality_4_2_0_reaches_its_colour_ceiling(clip):
    """The chroma siting of the decoded pictures matches the encoded ones (a half-pixel shift costs 0.7 dB)."""
    ceiling = mean_psnr(colour_round_trip(clip, "x265"), clip)
    for codec in ("x265", "svt-av1"):
        decoded, _ = encode_decode(clip, codec, DEFAULT_QUALITIES[codec][0], fps=FPS)
        assert mean_psnr(decoded, clip) > ceiling - 0.2


def test_an_encoder_that_buffers_frames_is_refused(clip, monkeypatch):
    """x264 without tune=zerolatency looks ahead 40 frames before emitting the first: not a live stream."""
    monkeypatch.setitem(CODECS, "x264-lookahead", dataclasses.replace(CODECS["x264-420"], options={"preset": "medium"}))
    with pytest.raises(RuntimeError, match="not low-latency"):
        encode(clip[:5], "x264-lookahead", 30)


def test_fps_changes_x264_rate_control(clip):
    slow, fast = encode_decode(clip, "x264-420", 30, fps=15)[1], encode_decode(clip, "x264-420", 30, fps=60)[1]
    assert slow.sum() != fast.sum()


@pytest.mark.parametrize("frames, message", [
    (np.zeros((240, 256, 3), np.uint8), r"\(T, H, W, 3\)"),
    (np.zeros((2, 240, 256), np.uint8), r"\(T, H, W, 3\)"),
    (np.zeros((0, 240, 256, 3), np.uint8), r"T >= 1"),
    (np.zeros((2, 240, 256, 3), np.float32), "uint8"),
    (np.zeros((2, 241, 256, 3), np.uint8), "even frame size"),
])
def test_bad_frames_are_refused(frames, message):
    with pytest.raises(ValueError, match=message):
        encode_decode(frames, "x264-420", 23)


def test_odd_sizes_work_in_4_4_4():
    frames = np.random.default_rng(0).integers(0, 256, (3, 33, 47, 3), dtype=np.uint8)
    decoded, sizes = encode_decode(frames, "x264-444", 0)
    np.testing.assert_array_equal(decoded, colour_round_trip(frames, "x264-444"))
    assert len(sizes) == 3


def test_bad_codec_quality_and_fps_are_refused(clip):
    with pytest.raises(ValueError, match="x264-420") as error:
        encode_decode(clip[:2], "h264", 23)
    assert all(name in str(error.value) for name in CODECS)
    for codec, quality in [("x264-420", 52), ("x264-420", -1), ("svt-av1", 0), ("svt-av1", 64), ("x265", 23.5),
                           ("x265", True)]:
        with pytest.raises(ValueError, match=r"quality \(crf\) must be an int in"):
            encode_decode(clip[:2], codec, quality)
    with pytest.raises(ValueError, match="quality"):
        codec_curve(clip[:2], "x264-420", [23, 99])
    with pytest.raises(ValueError, match="fps"):
        encode_decode(clip[:2], "x264-420", 23, fps=0)
    with pytest.raises(ValueError, match="byte strings"):
        decode([], "x264-420")


def test_default_sweeps_are_in_range_and_best_first():
    assert set(DEFAULT_QUALITIES) == set(CODECS)
    for codec, qualities in DEFAULT_QUALITIES.items():
        low, high = CODECS[codec].quality_range
        assert list(qualities) == sorted(set(qualities)) and low <= qualities[0] and qualities[-1] <= high
