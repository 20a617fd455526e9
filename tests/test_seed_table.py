"""experiments/seed_table.py: every approach on the same real frames, tables at design budgets and equal bytes."""
import math

import pytest
import torch
import tyro

from agents import collect
from experiments import seed_table
from models import mae
from sgaps_env.worlds import HELD_OUT_GROUP, TRAINING_GROUP


def test_equal_bytes_reads_the_measured_curve_in_log_bytes_and_nothing_outside_it():
    points = [{"uplink_bytes": 1000.0, "psnr": 20.0}, {"uplink_bytes": 4000.0, "psnr": 30.0}]
    assert seed_table.at_bytes(points, 2000, "psnr") == pytest.approx(25.0)  # halfway in log bytes
    assert seed_table.at_bytes(points, 1000, "psnr") == 20.0
    assert math.isnan(seed_table.at_bytes(points, 999, "psnr"))
    assert math.isnan(seed_table.at_bytes(points, 5000, "psnr"))


def test_design_rows_put_each_group_beside_the_claims():
    overall = [{"group": group, "approach": approach, "setting": pixels, "psnr": 30.0 + i, "pooled_psnr": 20.0,
                "ssim": 0.9, "foreground_psnr": 20.0, "uplink_bytes": 100.0 * (i + 1)}
               for group in (HELD_OUT_GROUP, TRAINING_GROUP)
               for i, (approach, pixels, _) in enumerate(seed_table.DESIGN_BUDGETS)]
    rows = seed_table.design_rows(overall, [HELD_OUT_GROUP, TRAINING_GROUP])
    sgaps = next(r for r in rows if r["approach"] == "SGAPS" and r["pixels"].startswith("307"))
    assert sgaps["PSNR 5-8"] == sgaps["PSNR 1-4"] == 33.0
    assert "39.2 dB" in sgaps["claimed (design documents, never measured)"]
    markdown = seed_table.table_markdown(rows)
    assert "| Patch MAE | 3072 (5%) |" in markdown and "lossless" not in markdown.split("Full frame")[0]


@pytest.fixture(scope="module")
def one_session(tmp_path_factory):
    output = tmp_path_factory.mktemp("sessions") / "eval.h5"
    collect.main(tyro.cli(collect.Args, args=["--output", str(output), "--no-progress", "--max-steps", "11",
                                              "--episodes", "1", "--player", "heuristic", "--color", "rgb",
                                              "--stages", "1-1"]))
    return output


def untrained_checkpoints(folder) -> dict:
    """Small untrained MAE checkpoints of both kinds in ``folder``."""
    checkpoints = {}
    for kind in mae.KINDS:
        torch.manual_seed(0)
        model = mae.MaskedAutoencoder(mae.mae_config(kind, "tiny", dim=16, heads=2, encoder_layers=1, decoder_dim=16,
                                                     decoder_heads=2, decoder_layers=1))
        checkpoints[kind] = folder / f"{kind}.pt"
        mae.save_checkpoint(checkpoints[kind], model, {"note": "untrained"})
    return checkpoints


def test_the_evaluation_scripts_score_the_maes_with_everything_else(one_session, tmp_path):
    from experiments import evaluate_policies, evaluate_reconstructors

    checkpoints = untrained_checkpoints(tmp_path)
    result = evaluate_reconstructors.main(tyro.cli(evaluate_reconstructors.Args, args=[
        "--data", str(one_session), "--reconstructors", "pixel-mae", "nearest", "--budgets", "1229", "--max-steps",
        "6", "--score-every", "3", "--pixel-checkpoint", str(checkpoints["pixel"]), "--output", str(tmp_path / "r"),
        "--no-progress"]))
    assert {e["reconstructor"] for e in result["overall"]} == {"pixel-mae", "nearest"}
    result = evaluate_policies.main(tyro.cli(evaluate_policies.Args, args=[
        "--data", str(one_session), "--reconstructor", "patch-mae", "--policies", "patch", "--scheduled", "patch",
        "--schedule-interval", "2", "--budgets", "3072", "--max-steps", "6", "--score-every", "3", "--live-steps", "0",
        "--workers", "1", "--patch-checkpoint", str(checkpoints["patch"]), "--output", str(tmp_path / "p"),
        "--no-progress"]))
    assert {e["policy"] for e in result["overall"]} == {"patch", "patch@every2"}
    assert all(e["frames"] == 2 and e["psnr"] > 5 for e in result["overall"])


def test_the_table_scores_every_approach_on_the_same_frames(one_session, tmp_path):
    checkpoints = untrained_checkpoints(tmp_path)
    args = tyro.cli(seed_table.Args, args=[
        "--data", str(one_session), "--max-steps", "10", "--score-every", "5", "--workers", "1", "--no-progress",
        "--patch-checkpoint", str(checkpoints["patch"]), "--pixel-checkpoint", str(checkpoints["pixel"]),
        "--codecs", "x264-420", "--sgaps-budgets", "3072", "--pixel-budgets", "3072", "--patch-budgets", "48",
        "--output", str(tmp_path / "out")])
    overall = seed_table.main(args)["overall"]
    frames = {(e["approach"], e["setting"]): e["frames"] for e in overall}
    assert set(frames.values()) == {2}  # steps 0 and 5 of the one session, for every approach and setting
    settings = {approach: sorted(s for a, s in frames if a == approach) for approach, _ in frames}
    assert settings["SGAPS"] == [307, 492, 1229, 3072] and settings["Pixel MAE"] == [1229, 3072]
    assert settings["Patch MAE"] == [3072, 6144, 12288] and len(settings["x264 4:2:0"]) >= 3
    by_key = {(e["approach"], e["setting"]): e for e in overall}
    # more pixels cost more uplink bytes; the wire's zlib packs a patch's neighbouring values tighter than 3 B each
    assert by_key[("SGAPS", 307)]["uplink_bytes"] < by_key[("SGAPS", 1229)]["uplink_bytes"]
    assert by_key[("Pixel MAE", 1229)]["uplink_bytes"] < by_key[("Pixel MAE", 3072)]["uplink_bytes"]
    assert by_key[("Patch MAE", 3072)]["uplink_bytes"] < 3072 * 3
    assert by_key[("SGAPS", 3072)]["psnr"] > by_key[("SGAPS", 307)]["psnr"]
    assert by_key[("Full frame", "png")]["psnr"] == 100.0 and by_key[("Full frame", "png")]["uplink_bytes"] > 1000
    # pooled PSNR: the PSNR of the mean squared error, never above the mean of the frames' PSNRs
    assert all(e["pooled_psnr"] <= e["psnr"] + 1e-9 for e in overall)
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "## At equal uplink bytes: pooled PSNR" in summary and "claimed" in summary
    assert (tmp_path / "out" / "psnr_vs_bytes.png").stat().st_size > 10_000
    # the tables come back from frames.csv alone, the same
    again = seed_table.main(tyro.cli(seed_table.Args, args=[
        "--frames-from", str(tmp_path / "out" / "frames.csv"), "--output", str(tmp_path / "again")]))["overall"]
    assert {(e["approach"], e["setting"]): round(e["pooled_psnr"], 9) for e in again} == {
        (e["approach"], e["setting"]): round(e["pooled_psnr"], 9) for e in overall}


def test_missing_inputs_are_named_with_how_to_make_them(tmp_path):
    args = tyro.cli(seed_table.Args, args=["--patch-checkpoint", str(tmp_path / "none.pt")])
    with pytest.raises(ValueError, match="train_reconstructor.py --model"):
        seed_table.validate(args)
    with pytest.raises(ValueError, match="frames.csv"):
        seed_table.main(tyro.cli(seed_table.Args, args=["--frames-from", str(tmp_path / "none.csv"),
                                                        "--output", str(tmp_path / "out")]))
