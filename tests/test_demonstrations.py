"""Shipped demonstrations, their file format, the explorer, snapshots and the demonstration player."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import sgaps_env
from agents.demonstrations import (COLUMN_WIDTH, DEMONSTRATION_BUTTONS, DEMONSTRATIONS_DIR, DemonstrationError,
                                   DemonstrationPlayer, decode_actions, encode_actions, level_columns,
                                   SKIP_LEAD_STEPS, load_demonstrations, parse_demonstrations, replay,
                                   save_demonstrations, screen_columns, view_loops, view_skips)
from agents.explorer import Explorer
from sgaps_env.rollout import Rollout
from sgaps_env.sampler import PatternSampler
from sgaps_env.state import STATE_INDEX, STATE_SCALE


def demo_env(stage, **kwargs):
    kwargs = {"sample_count": 4, "buttons": "complex", "noop_max": 30, **kwargs}
    return sgaps_env.SGAPSSuperMarioBrosEnv(stage=stage, **kwargs)


# --- the shipped files ------------------------------------------------------------------------------------


SHIPPED = sorted(path.stem for path in DEMONSTRATIONS_DIR.glob("*.json"))


def test_the_shipped_files_are_small_and_complete():
    assert len(SHIPPED) >= 24 and {"1-1", "2-2", "4-4", "7-4"} <= set(SHIPPED)
    for stage in SHIPPED:
        demonstrations = load_demonstrations(stage)
        assert len({(d.route, d.noops) for d in demonstrations}) == len(demonstrations), "one per route and start"
        assert all(d.goal_x > 0 and d.spans and d.skips is not None and d.loops is not None
                   and d.found.get("frames_emulated") for d in demonstrations), stage
        assert any(d.route == "main" for d in demonstrations), stage
        assert (DEMONSTRATIONS_DIR / f"{stage}.json").stat().st_size < 64_000, "kilobytes per stage"


@pytest.mark.parametrize("stage", ["1-1", "2-2", "4-4"])
def test_shipped_demonstrations_replay_to_the_goal(stage):
    """Overworld, water and a castle maze: the flag (or axe) from reset, in the env users make."""
    env = demo_env(stage)
    try:
        demonstration = load_demonstrations(stage)[0]
        outcome = replay(demonstration, env)
        assert outcome.reached_goal, outcome
        assert outcome.steps == len(demonstration.actions)
        assert outcome.final_x == demonstration.goal_x
    finally:
        env.close()


@pytest.mark.slow
@pytest.mark.parametrize("stage", SHIPPED)
def test_every_shipped_demonstration_replays_to_the_goal(stage):
    env = demo_env(stage)
    try:
        for demonstration in load_demonstrations(stage):
            assert replay(demonstration, env).reached_goal, (stage, demonstration.route, demonstration.noops)
    finally:
        env.close()


def test_a_demonstration_fails_from_another_start_or_when_cut_short():
    """The check in replay is real: the last steps matter, and so does the stated start."""
    env = demo_env("1-1")
    try:
        demonstration = load_demonstrations("1-1")[0]
        demonstration.actions = demonstration.actions[:-20]
        assert not replay(demonstration, env).reached_goal
    finally:
        env.close()


def test_replay_refuses_an_env_that_cannot_play_it():
    demonstration = load_demonstrations("1-1")[0]
    for kwargs, message in [({"buttons": "simple"}, "complex"), ({"frame_skip": 2}, "frame_skip=4"),
                            ({"repeat_action_probability": 0.25}, "sticky")]:
        env = demo_env("1-1", **kwargs)
        with pytest.raises(ValueError, match=message):
            replay(demonstration, env)
        env.close()
    env = demo_env("1-2")
    with pytest.raises(ValueError, match="stage='1-1'"):
        replay(demonstration, env)
    env.close()


# --- the file format -----------------------------------------------------------------------------------------


@given(st.lists(st.integers(0, len(DEMONSTRATION_BUTTONS) - 1), max_size=400))
@settings(max_examples=60, deadline=None)
def test_action_code_round_trips(actions):
    actions = np.array(actions, np.uint8)
    code = encode_actions(actions)
    np.testing.assert_array_equal(decode_actions(code, len(DEMONSTRATION_BUTTONS)), actions)
    assert len(code) <= 3 * len(actions) + 1


def test_runs_are_counted():
    assert encode_actions(np.array([4] * 12 + [3] + [4] * 3)) == "e12de3"


def _file(**changes):
    content = {"format": "sgaps-demonstrations", "version": 1, "stage": "1-1", "frame_skip": 4,
               "buttons": [list(c) for c in DEMONSTRATION_BUTTONS],
               "demonstrations": [{"noops": 3, "steps": 3, "goal_x": 10, "actions": "e2d"}]}
    content.update(changes)
    return content


@pytest.mark.parametrize("changes, message", [
    ({"format": "other"}, "not a demonstration file"),
    ({"version": 2}, "version 2"),
    ({"stage": "9-1"}, "unknown stage"),
    ({"frame_skip": 2}, "frame_skip 2"),
    ({"buttons": [["jump"]]}, "unknown button"),
    ({"buttons": [["right", "up"]]}, "not in the demonstration button set"),
    ({"demonstrations": []}, "1 to 256"),
    ({"demonstrations": [{"noops": -1, "steps": 1, "actions": "a"}]}, "noops"),
    ({"demonstrations": [{"noops": True, "steps": 1, "actions": "a"}]}, "noops"),
    ({"demonstrations": [{"noops": 0, "steps": 2, "actions": "a"}]}, "decode to 1"),
    ({"demonstrations": [{"noops": 0, "steps": 1, "actions": "z"}]}, "names button 25"),
    ({"demonstrations": [{"noops": 0, "steps": 1, "actions": "a?"}]}, "unexpected '\\?'"),
    ({"demonstrations": [{"noops": 0, "steps": 1, "actions": "a99999b99999"}]}, "longer than"),
    ({"demonstrations": [{"noops": 0, "steps": 1, "actions": "a", "spans": [[0, 1, 5, 2]]}]}, "spans"),
    ({"demonstrations": [{"noops": 0, "steps": 2, "actions": "a2", "skips": [1, 1]}]}, "increasing"),
    ({"demonstrations": [{"noops": 0, "steps": 2, "actions": "a2", "skips": [2]}]}, "skips"),
    ({"demonstrations": [{"noops": 0, "steps": 2, "actions": "a2", "skips": "1"}]}, "skips"),
    ({"demonstrations": [{"noops": 0, "steps": 1, "actions": "a", "loops": [[0, 1]]}]}, "loops"),
    ({"demonstrations": [{"noops": 0, "steps": 1, "actions": "a", "route": "fly"}]}, "route"),
])
def test_malformed_files_are_refused_with_the_reason(changes, message):
    with pytest.raises(DemonstrationError, match=message):
        parse_demonstrations(_file(**changes), "demo.json", expected_stage="1-1")


def test_files_are_checked_before_they_are_read(tmp_path):
    (tmp_path / "1-1.json").write_text(" " * (2 << 20))
    with pytest.raises(DemonstrationError, match="more than"):
        load_demonstrations("1-1", tmp_path)
    (tmp_path / "1-1.json").write_text("{not json")
    with pytest.raises(DemonstrationError, match="not UTF-8 JSON"):
        load_demonstrations("1-1", tmp_path)
    (tmp_path / "1-1.json").write_text(json.dumps(_file(stage="1-2")))
    with pytest.raises(DemonstrationError, match="not 1-1"):
        load_demonstrations("1-1", tmp_path)
    with pytest.raises(FileNotFoundError, match="explore.py --stages 2-1"):
        load_demonstrations("2-1", tmp_path)


def test_saved_files_load_back(tmp_path):
    demonstrations = load_demonstrations("1-1")
    path = save_demonstrations(demonstrations, tmp_path)
    loaded = load_demonstrations("1-1", tmp_path)
    assert path.name == "1-1.json"
    assert {d.route for d in loaded} == {"main", "walk"}, "1-1 ships both routes"
    in_order = sorted(demonstrations, key=lambda d: (d.route != "main", d.noops))
    assert [(d.route, d.noops) for d in loaded] == [(d.route, d.noops) for d in in_order]
    for before, after in zip(in_order, loaded):
        np.testing.assert_array_equal(before.actions, after.actions)
        assert (before.spans, before.skips, before.loops, before.route, before.goal_x) == (
            after.spans, after.skips, after.loops, after.route, after.goal_x)


# --- snapshots and the no-op option of the environment ------------------------------------------------------


def test_reset_takes_the_number_of_noops(make_env):
    env = make_env(noop_max=30, sample_count=4)
    for noops in (0, 7, 100):
        assert env.reset(seed=1, options={"noops": noops})[1]["frame_index"] == 1 + noops
    for bad in (-1, 2.0, True, "3"):
        with pytest.raises(ValueError, match="noops"):
            env.reset(options={"noops": bad})


def test_restoring_a_snapshot_replays_exactly(make_env):
    env = make_env(sample_count=16, buttons="complex", noop_max=0)
    coords = np.random.default_rng(0).random((16, 2)).astype(np.float32)
    env.reset(options={"noops": 5})
    for _ in range(10):
        env.step({"buttons": 3, "coords": coords})
    snapshot = env.clone_state()
    actions = np.random.default_rng(1).integers(0, 12, 150)

    def play():
        out = []
        for action in actions:
            observation, reward, terminated, _, info = env.step({"buttons": int(action), "coords": coords})
            out.append((observation["pixels"].tobytes(), observation["state"].tobytes(), reward, info["frame_index"]))
            if terminated:
                break
        return out

    first = play()
    env.restore_state(snapshot)
    assert play() == first
    with pytest.raises(ValueError, match="clone_state"):
        env.restore_state(("not", "a", "snapshot"))


# --- the explorer ----------------------------------------------------------------------------------------------


def test_explorer_keeps_a_sequence_that_still_works_from_another_start():
    demonstration = load_demonstrations("1-1")[0]
    explorer = Explorer("1-1", noops=demonstration.noops, seed=0)
    try:
        result = explorer.run(max_frames=10, warm_start=[demonstration])
        assert result.demonstration is not None
        np.testing.assert_array_equal(result.demonstration.actions, demonstration.actions)
        assert result.demonstration.spans == demonstration.spans
    finally:
        explorer.close()


def test_explorer_grows_its_archive_from_where_a_sequence_died():
    demonstration = load_demonstrations("1-1")[0]
    demonstration.actions = demonstration.actions[:60]  # stops early in the level
    explorer = Explorer("1-1", noops=demonstration.noops, seed=0)
    try:
        assert explorer.seed_archive(demonstration) is None
        seeded_cells = len(explorer.archive)
        seeded_x = max(record.x for record in explorer.archive.values())
        result = explorer.run(max_frames=explorer.frames + 4000, warm_start=[demonstration])
        assert result.demonstration is None
        assert result.cells > seeded_cells and result.furthest_x > seeded_x
        for cell, record in list(explorer.archive.items())[:20]:  # every cell's sequence reaches that cell
            explorer.env.restore_state(record.snapshot)
            assert explorer.cell() == cell
    finally:
        explorer.close()


def test_ledges_tell_apart_the_rows_mario_stands_on():
    """With ledges, standing on the ground and on a pipe or block above it are different cells."""
    demonstration = load_demonstrations("1-1")[0]
    coarse = Explorer("1-1", noops=demonstration.noops, seed=0)
    fine = Explorer("1-1", noops=demonstration.noops, seed=0, ledges=True)
    try:
        coarse._reset()
        fine._reset()
        rows_stood_on, airborne_bands, merged = set(), set(), 0
        for action in demonstration.actions[:200]:
            coarse._step_counted(int(action))
            fine._step_counted(int(action))
            ram = fine.env.ram
            if ram[0x00B5] != 1:  # above or below the screen
                continue
            cell, coarse_cell = fine.cell(), coarse.cell()
            assert cell[:2] == coarse_cell[:2] and cell[3] == coarse_cell[3]
            if ram[0x001D] == 0:
                assert cell[2] == fine.y_bands + 1 + int(ram[0x00CE]) // 16
                rows_stood_on.add(cell[2])
                merged += cell[2] != coarse_cell[2]
            else:
                assert cell[2] == coarse_cell[2] < fine.y_bands + 1
                airborne_bands.add(cell[2])
        assert len(rows_stood_on) >= 2, "1-1's opening has Mario on the ground and on pipes and blocks"
        assert airborne_bands and merged
    finally:
        coarse.close()
        fine.close()


def test_a_walk_explorer_never_presses_down():
    """The walk route's explorer keeps no sequence with a down press (so no pipe is entered); the main one does."""
    down = DEMONSTRATION_BUTTONS.index(("down",))
    walker, main = Explorer("1-1", noops=30, seed=0, never_down=True), Explorer("1-1", noops=30, seed=0)
    try:
        walker.run(max_frames=1_500)
        main.run(max_frames=1_500)
    finally:
        walker.close()
        main.close()
    assert len(walker.archive) > 10
    assert not any(down in record.actions for record in walker.archive.values())
    assert any(down in record.actions for record in main.archive.values())


@pytest.mark.slow
def test_explorer_finds_the_flag_of_1_1_from_scratch():
    explorer = Explorer("1-1", noops=10, seed=3)
    try:
        result = explorer.run(max_frames=400_000)
    finally:
        explorer.close()
    assert result.demonstration is not None, result.summary()
    env = demo_env("1-1")
    assert replay(result.demonstration, env).reached_goal
    env.close()


# --- the player ---------------------------------------------------------------------------------------------------


def _play(player, seed, stage="1-1", **env_kwargs):
    env = demo_env(stage, **env_kwargs)
    try:
        rollout = Rollout(env, player, PatternSampler("random", env.sample_count), seed=seed, max_steps=3000)
        buttons = [step.buttons for step in rollout if step.buttons is not None]
        return rollout.summary, buttons
    finally:
        env.close()


def test_the_player_waits_into_step_with_a_demonstration_and_follows_it_to_the_flag():
    """Episodes whose no-op start n fits a shipped start m (m >= n, m - n a multiple of 4) replay it exactly."""
    player = DemonstrationPlayer(follow_probability=1.0)
    starts = {d.noops for d in load_demonstrations("1-1")}
    probe = demo_env("1-1")
    fitting = [seed for seed in range(40)
               if any(m >= n and (m - n) % 4 == 0 for m in starts
                      for n in [probe.reset(seed=seed)[1]["frame_index"] - 1])][:3]
    probe.close()
    assert len(fitting) == 3
    for seed in fitting:
        summary, buttons = _play(player, seed)
        assert summary.flag_get, f"seed {seed}: {summary}"
        wait = len(player._plan) - len(player.demonstration.actions)
        assert buttons[:wait] == [0] * wait and buttons[wait:] == player._plan[wait:len(buttons)]


def test_the_player_departs_and_the_episodes_differ():
    player = DemonstrationPlayer(follow_probability=0.0, skip_departure_probability=0.0, seed=0)
    departures = []
    for seed in range(3):
        _, buttons = _play(player, seed)
        departure = player._departure
        assert departure is not None and departure < len(player._plan)
        assert buttons[:departure] == player._plan[:departure], "followed exactly up to the departure"
        assert len(buttons) > departure, "and played on after it"
        departures.append(departure)
    assert len(set(departures)) == 3


def test_a_skip_departure_walks_the_stretch_the_pipe_skips():
    """1-1's demonstrations take the pipe at x 909 to the bonus room and come out at x 2616: departing
    just before it, the episode walks ground that no demonstration shows."""
    player = DemonstrationPlayer(follow_probability=0.0, skip_departure_probability=1.0, seed=1)
    shown_by_demonstrations = {column for d in load_demonstrations("1-1") if d.route == "main"
                               for column in screen_columns_of(d)}
    walked = []
    for seed in range(12):
        env = demo_env("1-1")
        rollout = Rollout(env, player, PatternSampler("random", env.sample_count), seed=seed, max_steps=500)
        states = np.stack([step.observation["state"] for step in rollout])
        env.close()
        if player.demonstration.route == "walk":  # it has no skips: it walks past the pipe anyway
            assert player.demonstration.skips == []
            continue
        (skip,), wait = player.demonstration.skips, len(player._plan) - len(player.demonstration.actions)
        assert SKIP_LEAD_STEPS[0] <= wait + skip - player._departure <= SKIP_LEAD_STEPS[1]
        walked.append(len((screen_columns(states) & level_columns("1-1")) - shown_by_demonstrations))
        if len(walked) == 3:
            break
    assert len(walked) == 3 and min(walked) >= 8, f"columns the pipe skips shown per episode: {walked}"


def screen_columns_of(demonstration):
    return {(area, area_type, column) for area, area_type, first, last in demonstration.spans
            for column in range(first, last + 1)}


def test_a_skip_is_a_jump_of_the_view_past_columns_it_never_shows():
    into_room_and_out_further = np.concatenate([_states([0, 10, 20]), _states([20], area_type=2), _states([600, 610])])
    assert view_skips(into_room_and_out_further) == [2], "out of the room (step 3) skips nothing"
    assert view_skips(_states([0, 600])) == [0], "a pipe within the area"
    assert view_skips(_states([0, 600, 100])) == [0], "a loop back skips nothing"
    assert view_skips(_states([0, 300, 40, 60])) == [], "columns 16-17 are shown later"
    assert view_skips(_states([0])) == []


def test_the_player_needs_the_complex_button_set():
    with pytest.raises(ValueError, match="complex"):
        DemonstrationPlayer(button_set="simple")
    with pytest.raises(ValueError, match="frame_skip=4"):
        DemonstrationPlayer(frame_skip=3)


# --- coverage -----------------------------------------------------------------------------------------------------


def _states(camera_x, area=0, area_type=1):
    states = np.zeros((len(camera_x), 64), np.float32)
    states[:, STATE_INDEX["camera_x"]] = np.asarray(camera_x) / STATE_SCALE["camera_x"]
    states[:, STATE_INDEX["area"]] = area / STATE_SCALE["area"]
    states[:, STATE_INDEX["area_type"]] = area_type / STATE_SCALE["area_type"]
    return states


def test_a_frame_shows_the_sixteen_columns_right_of_the_camera():
    assert screen_columns(_states([0], area=1, area_type=2)) == {(1, 2, c) for c in range(16)}
    assert screen_columns(_states([32])) == {(0, 1, c) for c in range(2, 18)}, "on a column boundary: 16"
    assert screen_columns(_states([40])) == {(0, 1, c) for c in range(2, 19)}, "pixels 40-295 touch 17 columns"
    assert screen_columns(_states([0, 8, 40])) == {(0, 1, c) for c in range(19)}


def test_the_level_spans_every_column_from_start_to_goal_of_each_area():
    level = level_columns("1-1")
    ground = sorted(c for a, t, c in level if (a, t) == (0, 1))
    assert ground == list(range(ground[0], ground[-1] + 1)), "no gaps, even where the pipe skips ahead"
    assert ground[0] == 0 and ground[-1] * COLUMN_WIDTH > load_demonstrations("1-1")[0].goal_x


def test_the_view_turning_back_is_a_loop():
    assert view_loops(_states([0, 10, 2454, 2460, 1437, 1440])) == [(0, 1, 2460)]
    assert view_loops(_states([0, 10, 20])) == [] and view_loops(_states([0])) == []
    assert view_loops(np.concatenate([_states([900]), _states([20], area_type=2)])) == [], "another area"


def test_columns_past_a_loop_are_not_level(tmp_path):
    """8-4 loops at camera x 2,454 unless Mario takes the pipe before it, which lands at 3,072: the columns
    in between are never on screen. Its probes find the second loop, at about 3,730, that a pipe skips."""
    (eight_four,) = [d for d in load_demonstrations("8-4") if d.noops == 30]
    assert any(2440 <= camera <= 2460 for _, _, camera in eight_four.loops), "seen in the replay"
    assert any(3700 <= camera <= 3750 for _, _, camera in eight_four.loops), "found by the probes"
    level = {c for a, t, c in level_columns("8-4") if (a, t) == (3, 3)}
    assert not level & set(range(2720 // COLUMN_WIDTH, 3072 // COLUMN_WIDTH))
    assert {3072 // COLUMN_WIDTH, 2700 // COLUMN_WIDTH} <= level
    # the same demonstration without its loops: every column from the first to the last
    bare = load_demonstrations("8-4")
    for demonstration in bare:
        demonstration.loops = []
    save_demonstrations(bare, tmp_path)
    assert set(range(2720 // COLUMN_WIDTH, 3072 // COLUMN_WIDTH)) <= {
        c for a, t, c in level_columns("8-4", tmp_path) if (a, t) == (3, 3)}


# --- recording with the player, and the coverage report -----------------------------------------------------


def _collect(output, *extra):
    import tyro

    from agents import collect

    args = tyro.cli(collect.Args, args=["--output", str(output), "--no-progress", "--workers", "1", *extra])
    return collect.main(args)


def test_collect_refuses_the_demonstration_player_without_the_complex_buttons(tmp_path):
    with pytest.raises(ValueError, match="--buttons complex"):
        _collect(tmp_path / "s.h5", "--player", "demonstration", "--episodes", "1")
    assert not (tmp_path / "s.h5").exists(), "nothing is created for a command that cannot run"


def test_coverage_counts_the_columns_the_recorded_frames_show(tmp_path):
    from experiments import coverage
    from sgaps_env.session_file import list_sessions
    from sgaps_env.state import field_ints

    output = tmp_path / "s.h5"
    _collect(output, "--player", "demonstration", "--buttons", "complex", "--episodes", "2", "--max-steps", "120",
             "--player-option", "follow_probability=1.0")
    report = coverage.measure([output], ["1-1", "1-2"], DEMONSTRATIONS_DIR)
    one_one, one_two = report
    level = level_columns("1-1")
    furthest_camera = max(int(field_ints(s.states()[0], "camera_x").max()) for s in list_sessions(output))
    # 120 steps along the demonstration stay on the ground of area 0, so the frames show the columns up to
    # the one holding the furthest screen's last pixel
    expected = {(0, 1, c) for c in range((furthest_camera + 255) // COLUMN_WIDTH + 1)} & level
    assert one_one.shown_columns == len(expected) and one_one.level_columns == len(level)
    assert one_one.coverage == pytest.approx(len(expected) / len(level))
    assert one_one.sessions == 2 and one_one.frames == sum(len(s) for s in list_sessions(output))
    assert one_one.frames_per_area == {"0/ground": one_one.frames}
    assert one_two.frames == 0 and one_two.coverage == 0.0


def _explore(output, *extra):
    import tyro

    from agents import explore

    return explore.main(tyro.cli(explore.Args, args=["--output", str(output), "--stages", "1-1", *extra]))


def _one_start(tmp_path):
    """A copy of the shipped 1-1 file with only its first start."""
    first = load_demonstrations("1-1")[0]
    save_demonstrations([first], tmp_path)
    return first


def test_explore_script_adds_the_missing_starts_and_skips_the_rest(tmp_path):
    first = _one_start(tmp_path)
    other = first.noops - 4  # the same residue: the shipped sequence still works after waiting
    summaries = _explore(tmp_path, "--noops", str(first.noops), str(other), "--workers", "1")
    assert [(s["noops"], s["found"]) for s in summaries] == [(other, True)]
    assert summaries[0]["warm_started_from"] == [first.noops]
    assert sorted(d.noops for d in load_demonstrations("1-1", tmp_path)) == sorted([first.noops, other])
    env = demo_env("1-1")
    assert replay(load_demonstrations("1-1", tmp_path)[0], env).reached_goal
    env.close()
    assert _explore(tmp_path, "--noops", str(first.noops), str(other)) == [], "a rerun has nothing to do"


@pytest.mark.slow
def test_explore_script_runs_on_ray(tmp_path):
    first = _one_start(tmp_path)
    summaries = _explore(tmp_path, "--noops", str(first.noops - 4), "--backend", "ray", "--workers", "1")
    assert [s["found"] for s in summaries] == [True]
    assert len(load_demonstrations("1-1", tmp_path)) == 2


def test_a_probe_on_a_pipe_top_enters_the_pipe_and_keeps_where_it_leads():
    """The shipped 1-1 sequence stands on the bonus-room pipe before pressing down: probing there enters it."""
    demonstration = load_demonstrations("1-1")[0]
    explorer = Explorer("1-1", noops=demonstration.noops, seed=0)
    try:
        explorer._reset()
        ram = explorer.env.ram
        actions = bytearray()
        for action in demonstration.actions:  # up to the last step before the first area change
            area, snapshot = int(ram[0x0750]), explorer.env.clone_state()
            explorer._step_counted(int(action))
            if int(ram[0x0750]) != area:
                explorer.env.restore_state(snapshot)
                break
            actions.append(int(action))
        else:
            pytest.skip("the shipped 1-1 sequence takes no pipe")
        areas_before = {cell[0] for cell in explorer.archive}
        frame_before = explorer.env.frame_index
        assert explorer._probe_pipe(bytes(actions))
        assert {cell[0] for cell in explorer.archive} - areas_before, "the room the pipe leads to is in the archive"
        assert explorer.env.frame_index == frame_before, "and the game is back where the probe started"
        assert not explorer._probe_pipe(bytes(actions)), "each standing place is probed once"
    finally:
        explorer.close()


def test_a_stage_without_demonstrations_is_played_by_the_heuristic_with_a_warning(tmp_path):
    from agents.heuristic import HeuristicPlayer

    player = DemonstrationPlayer(directory=tmp_path, seed=0)
    with pytest.warns(UserWarning, match="heuristic player plays stage 1-1"):
        _, buttons = _play(player, 0)
    assert player.demonstration is None and isinstance(player._fallback, HeuristicPlayer)
    assert len(buttons) > 20


def test_a_file_written_without_spans_gets_them_on_the_next_run(tmp_path):
    from agents.explore import explore_stage

    shipped = load_demonstrations("1-1")[0]
    bare = load_demonstrations("1-1")[0]
    bare.spans = None
    save_demonstrations([bare], tmp_path)
    assert "spans" not in (tmp_path / "1-1.json").read_text()
    assert explore_stage("1-1", [bare.noops], 10, 10.0, 0, str(tmp_path), False) == [], "nothing to explore"
    assert load_demonstrations("1-1", tmp_path)[0].spans == shipped.spans
