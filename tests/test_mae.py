"""The seed's masked autoencoders (models/mae.py): patches, tube masking, the reconstructor, checkpoints, training."""
import numpy as np
import pytest
import torch
import tyro

from agents import collect
from agents.policies import MaskUpdateScheduler, PatchPolicy, ScheduledPolicy, make_policy
from models import mae
from models.baselines import Reconstructor, make_baseline
from models.policy_replay import replay_offline
from sgaps_env.coords import extract_pixels, make_pattern, uv_to_pixel


def tiny_model(kind: str) -> mae.MaskedAutoencoder:
    torch.manual_seed(0)
    overrides = dict(dim=16, heads=2, encoder_layers=1, decoder_dim=16, decoder_heads=2, decoder_layers=1)
    return mae.MaskedAutoencoder(mae.mae_config(kind, "tiny", **overrides)).eval()


def patch_pixels(frame: np.ndarray, seed: int, patches: int = 6) -> np.ndarray:
    """``(N, 5)`` RGB samples of ``patches`` whole random 16x16 patches of ``frame``."""
    policy = PatchPolicy(patches * mae.PATCH_PIXELS)
    return extract_pixels(frame, policy.reset(seed), "rgb")


# --- patches -------------------------------------------------------------------------------------------------


def test_patchify_is_raster_order_of_16x16_patches_and_unpatchify_inverts_it():
    frames = torch.rand(2, 3, 3, 240, 256)
    patches = mae.patchify(frames)
    assert patches.shape == (2, 3, 240, 3 * 256)
    torch.testing.assert_close(patches[0, 1, 17].view(3, 16, 16), frames[0, 1, :, 16:32, 16:32])
    torch.testing.assert_close(patches[1, 2, 16].view(3, 16, 16), frames[1, 2, :, 16:32, 0:16])
    assert torch.equal(mae.unpatchify(patches, 3), frames)


def test_gather_tokens_packs_the_kept_rows_in_order_and_pads_the_rest():
    tokens = torch.arange(12.0).view(2, 6, 1)
    keep = torch.tensor([[False, True, False, True, True, False], [True, False, False, False, False, False]])
    packed, padding = mae.gather_tokens(tokens, keep)
    assert packed[0, :, 0].tolist() == [1.0, 3.0, 4.0] and packed[1, 0, 0].item() == 6.0
    assert padding.tolist() == [[False, False, False], [False, True, True]]


def test_training_batches_tube_mask_patches_and_sample_the_frames_exactly():
    from experiments.train_reconstructor import patch_batch, pixel_batch

    generator = torch.Generator().manual_seed(0)
    clips = torch.rand(4, 2, 3, 240, 256)
    inputs, hit = patch_batch(mae.patchify(clips), torch.tensor([0.95, 0.9, 0.85, 0.5]), 2, generator)
    visible = hit.amin(-1) > 0  # (B, T, P)
    assert visible.sum(-1)[:, 0].tolist() == [12, 24, 36, 120]
    assert torch.equal(visible[:, 0], visible[:, 1])  # tube: the same patches in every frame of the clip
    shown = visible[..., None].repeat(1, 1, 1, 3 * 256)
    assert torch.equal(inputs["patches"][shown], mae.patchify(clips)[shown])
    assert not inputs["patches"][~shown].any()
    frames = clips[:, :1]
    inputs, hit = pixel_batch(frames, mae.patchify(frames), torch.tensor([100, 1229, 7, 500]), generator)
    assert hit.sum((1, 2, 3)).tolist() == [100, 1229, 7, 500]
    assert inputs["token_valid"].sum(1).tolist() == [100, 1229, 7, 500]
    xy = inputs["token_xy"][1]
    torch.testing.assert_close(inputs["token_values"][1], frames[1, 0][:, xy[:, 1], xy[:, 0]].T)


# --- the reconstructor ---------------------------------------------------------------------------------------


def test_patch_reconstructor_continues_a_clip_only_while_the_patches_stay(heuristic_play_1_1):
    frames, states, masks = heuristic_play_1_1
    reconstructor = mae.MAEReconstructor.from_model(tiny_model("patch"))
    assert isinstance(reconstructor, Reconstructor) and reconstructor.stateful and reconstructor.name == "patch-mae"
    first, second = patch_pixels(frames[30], 1), patch_pixels(frames[31], 1)
    coords_first = first[:, :2]
    np.testing.assert_array_equal(coords_first, second[:, :2])  # the same patches: one tube
    reconstructor.reconstruct(first, states[30], masks[30])
    in_clip = reconstructor.reconstruct(second, states[31], masks[31])
    reconstructor.reset()
    alone = reconstructor.reconstruct(second, states[31], masks[31])
    assert np.abs(in_clip - alone).max() > 1e-4  # the clip's first frame informs its second
    # a third frame at the same patches starts a new clip (clips are config.frames = 2 long)
    third = patch_pixels(frames[32], 1)
    reconstructor.reset()
    reconstructor.reconstruct(first, states[30], masks[30])
    reconstructor.reconstruct(second, states[31], masks[31])
    after_clip = reconstructor.reconstruct(third, states[32], masks[32])
    reconstructor.reset()
    np.testing.assert_allclose(after_clip, reconstructor.reconstruct(third, states[32], masks[32]), atol=1e-6)
    # other patches start a new clip too
    other = patch_pixels(frames[31], 2)
    reconstructor.reset()
    reconstructor.reconstruct(first, states[30], masks[30])
    switched = reconstructor.reconstruct(other, states[31], masks[31])
    reconstructor.reset()
    np.testing.assert_allclose(switched, reconstructor.reconstruct(other, states[31], masks[31]), atol=1e-6)


def test_reconstructions_keep_the_samples_ignore_the_state_and_refuse_bad_pixels(heuristic_play_1_1, rng):
    frames, states, masks = heuristic_play_1_1
    for kind in mae.KINDS:
        reconstructor = mae.MAEReconstructor.from_model(tiny_model(kind))
        pixels = patch_pixels(frames[40], 3) if kind == "patch" else extract_pixels(
            frames[40], make_pattern("random", 1229, rng), "rgb")
        output = reconstructor.reconstruct(pixels, states[40], masks[40])
        assert output.shape == (240, 256, 3) and output.dtype == np.float32
        assert output.min() >= 0 and output.max() <= 1
        rows, cols = uv_to_pixel(pixels[:, :2], 240, 256)
        np.testing.assert_array_equal(output[rows, cols], pixels[:, 2:])
        reconstructor.reset()
        no_state = reconstructor.reconstruct(pixels, np.zeros_like(states[40]), np.zeros_like(masks[40]))
        np.testing.assert_array_equal(output, no_state)
        with pytest.raises(ValueError, match=r"expected \(N, 5\)"):
            reconstructor.reconstruct(pixels[:, :3], states[40], masks[40])
        with pytest.raises(ValueError, match=r"in \[0, 1\]"):
            reconstructor.reconstruct(pixels * 2, states[40], masks[40])


def test_replay_without_state_sends_fewer_bytes_and_hides_the_state(heuristic_play_1_1):
    frames, states, masks = heuristic_play_1_1

    class Recorder:
        name, stateful = "recorder", True

        def __init__(self):
            self.masks = []
            self.inner = make_baseline("nearest")

        def reset(self):
            self.masks = []

        def reconstruct(self, pixels, state, state_mask):
            self.masks.append(state_mask.copy())
            return self.inner.reconstruct(pixels, state, state_mask)

    recorder = Recorder()
    with_state, _ = replay_offline(make_policy("random", 300), recorder, frames[:10], states[:10], masks[:10], "rgb",
                                   seed=1, with_ssim=False)
    assert all(m.any() for m in recorder.masks)
    without, _ = replay_offline(make_policy("random", 300), recorder, frames[:10], states[:10], masks[:10], "rgb",
                                seed=1, with_ssim=False, send_state=False)
    assert not any(m.any() for m in recorder.masks)
    assert [r["psnr"] for r in with_state] == [r["psnr"] for r in without]  # nearest reads no state
    assert all(a["uplink_bytes"] > b["uplink_bytes"] for a, b in zip(with_state, without))


def test_tube_patch_sampling_replays_into_the_patch_mae(heuristic_play_1_1):
    frames, states, masks = heuristic_play_1_1
    policy = ScheduledPolicy(PatchPolicy(12 * mae.PATCH_PIXELS), MaskUpdateScheduler("interval", 2))
    rows, _ = replay_offline(policy, mae.MAEReconstructor.from_model(tiny_model("patch")), frames[:8], states[:8],
                             masks[:8], "rgb", seed=3, with_ssim=False, send_state=False)
    assert len(rows) == 8
    # the positions go down as a seed every other frame and as 'same' in between: a few bytes each
    assert max(r["downlink_bytes"] for r in rows) < 40
    assert rows[0]["uplink_bytes"] < 12 * 256 * 3  # 3072 RGB values, compressed


# --- checkpoints ---------------------------------------------------------------------------------------------


def test_checkpoints_round_trip_in_half_precision_and_bad_files_are_refused(tmp_path):
    model = tiny_model("patch")
    path = tmp_path / "patch.pt"
    mae.save_checkpoint(path, model, {"note": "test"})
    payload = torch.load(path, weights_only=True)
    assert payload["state_dict"]["to_pixels.weight"].dtype == torch.float16
    loaded, metadata = mae.load_checkpoint(path)
    assert metadata == {"note": "test"} and loaded.config == model.config
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor.half().float())
    with pytest.raises(FileNotFoundError, match="train_reconstructor.py --model patch-mae"):
        mae.MAEReconstructor(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        mae.read_checkpoint(tmp_path / "junk.pt")
    for change, message in [({"version": 9}, "upgrade sgaps"), ({"format": "sgaps-spt"}, "not an MAE checkpoint"),
                            ({"config": {**payload["config"], "dim": 10 ** 7}}, r"dim must be an int in"),
                            ({"config": {**payload["config"], "kind": "video"}}, "kind must be one of"),
                            ({"config": {**payload["config"], "extra": 1}}, "unknown MAEConfig fields"),
                            ({"state_dict": {**payload["state_dict"], "position": torch.zeros(3)}},
                             "weight position is")]:
        torch.save({**payload, **change}, tmp_path / "bad.pt")
        with pytest.raises(ValueError, match=message):
            mae.load_checkpoint(tmp_path / "bad.pt")


def test_sizes_are_named_configs_and_bad_configs_say_what_is_wrong():
    assert mae.mae_config("patch", "small").dim == 192 and mae.mae_config("pixel", "tiny").frames == 1
    with pytest.raises(ValueError, match="expected one of"):
        mae.mae_config("patch", "huge")
    with pytest.raises(ValueError, match="frames must be 1"):
        mae.MAEConfig(kind="pixel", frames=2)


def test_shipped_checkpoints_are_small_and_record_their_training():
    total = sum(path.stat().st_size for path in mae.DEFAULT_CHECKPOINTS.values())
    assert total <= 20 * 1024 * 1024
    for kind, path in mae.DEFAULT_CHECKPOINTS.items():
        model, metadata = mae.load_checkpoint(path)
        assert model.config.kind == kind and "command" in metadata and metadata["held_out_worlds"] == [5, 6, 7, 8]


# --- training ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_sessions(tmp_path_factory):
    output = tmp_path_factory.mktemp("sessions") / "train.h5"
    collect.main(tyro.cli(collect.Args, args=["--output", str(output), "--no-progress", "--max-steps", "30",
                                              "--episodes", "12", "--player", "heuristic", "--color", "rgb"]))
    return output


@pytest.mark.slow
@pytest.mark.parametrize("model", ["patch-mae", "pixel-mae"])
def test_training_learns_writes_checkpoints_and_resumes(tiny_sessions, tmp_path, model):
    from experiments import train_reconstructor

    common = ["--model", model, "--data", str(tiny_sessions), "--output", str(tmp_path / "run"), "--size", "tiny",
              "--pairs-per-epoch", "64", "--batch-pairs", "8", "--no-progress", "--warmup-steps", "2", "--lr", "3e-3"]
    first = train_reconstructor.main(tyro.cli(train_reconstructor.Args, args=[*common, "--epochs", "2"]))
    history = first["history"]
    metric = "val_psnr_5pct" if model == "patch-mae" else "val_psnr_2pct"
    assert len(history) == 2 and history[1][metric] > 12  # an untrained model's flat grey scores about 7 dB
    resumed = train_reconstructor.main(tyro.cli(train_reconstructor.Args, args=[*common, "--epochs", "3", "--resume"]))
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    reconstructor = mae.MAEReconstructor(tmp_path / "run" / "best.pt")
    assert reconstructor.name == model and reconstructor.metadata["held_out_worlds"] == [5, 6, 7, 8]


def test_training_refuses_options_it_cannot_use():
    from experiments import train_reconstructor

    for options, message in [(["--mask-curriculum", "0.99"], "mask-curriculum"), (["--prefix-share", "2"], "prefix"),
                             (["--color", "gray"], "RGB")]:
        with pytest.raises(ValueError, match=message):
            train_reconstructor.validate(tyro.cli(train_reconstructor.Args, args=["--model", "patch-mae", *options]))
