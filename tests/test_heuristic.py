"""HeuristicPlayer (agents/heuristic.py) and the player evaluation (experiments/evaluate_players.py)."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `agents` and `experiments` live at the repo root
    sys.path.insert(0, str(ROOT))

import tyro  # noqa: E402

import agents  # noqa: E402
from agents.heuristic import HARMLESS_TYPES, HeuristicPlayer  # noqa: E402
from agents.players import PLAYERS, RunRightPlayer, make_player  # noqa: E402
from experiments import evaluate_players  # noqa: E402
from sgaps_env.buttons import resolve_button_set  # noqa: E402
from sgaps_env.sampler import PatternSampler  # noqa: E402
from sgaps_env.rollout import Rollout  # noqa: E402
from sgaps_env.state import (DEFAULT_MAX_STATE_DIM, DEFAULT_SENTINEL, ENEMY_SLOTS, STATE_FIELDS,  # noqa: E402
                             STATE_INDEX, STATE_SCALE, field_int, field_value)

# button indices of the "simple" set: NOOP, right, right+A, right+B, right+A+B, A, left
NOOP, RUN, JUMP, LEFT = 0, 3, 4, 6
GOOMBA, PIRANHA = 0x06, 0x0D


def observation(enemies=(), **values):
    """An observation as the env builds it, from game units (pixels, RAM codes) rather than scaled values.

    ``enemies`` is a list of ``(type, screen_x, screen_y)``, one per slot from slot 0; the camera
    defaults to level x - screen x, as while the screen scrolls.
    """
    units = {"player_level_x": 500.0, "player_screen_x": 112.0, "player_screen_y": 176.0, "player_y_viewport": 1,
             "player_x_speed": 48.0, "player_y_speed": 0.0, "player_state": 8, "player_float_state": 0,
             "player_facing": 1, "game_mode": 1, "timer": 300, "lives": 2}
    units.update(values)
    units.setdefault("camera_x", units["player_level_x"] - units["player_screen_x"])
    state = np.full(DEFAULT_MAX_STATE_DIM, DEFAULT_SENTINEL, np.float32)
    mask = np.zeros(DEFAULT_MAX_STATE_DIM, np.float32)
    for index, field in enumerate(STATE_FIELDS):
        if field.active_flag is None:
            state[index], mask[index] = units.get(field.name, 0.0) / STATE_SCALE[field.name], 1.0
    for slot, (etype, x, y) in enumerate(enemies):
        assert slot < ENEMY_SLOTS
        for name, value in (("active", 1), ("type", etype), ("screen_x", x), ("screen_y", y)):
            field = f"enemy{slot}_{name}"
            state[STATE_INDEX[field]], mask[STATE_INDEX[field]] = value / STATE_SCALE[field], 1.0
    return {"pixels": np.zeros((1, 3), np.float32), "state": state, "state_mask": mask}


def quiet_player(**kwargs):
    """A player that never hops on its own and never pauses, so only the rule under test makes it jump."""
    return HeuristicPlayer(jitter=0.0, hop_speed=1e9, **kwargs)


def play(player, observations):
    return [player.act(obs, {}) for obs in observations]


# --- the player interface and registration ----------------------------------------------------------------------


def test_registered_exported_and_checks_its_button_set():
    assert PLAYERS["heuristic"] is HeuristicPlayer and agents.HeuristicPlayer is HeuristicPlayer
    player = make_player("heuristic", seed=1, jitter=0.0)
    assert isinstance(player, HeuristicPlayer) and player.name == "heuristic"
    assert isinstance(player.act(observation(), {}), int)
    blocked = [observation(player_level_x=488), observation(player_level_x=488, player_x_speed=0)]
    jump = play(HeuristicPlayer(button_set="right_only", jitter=0.0, hop_speed=1e9), blocked)[-1]
    assert resolve_button_set("right_only")[jump] == ("right", "A", "B"), "it jumps with its own set's combo"
    with pytest.raises(ValueError, match="right\\+A\\+B"):
        HeuristicPlayer(button_set=[["NOOP"], ["right"]])
    with pytest.raises(ValueError, match="jitter"):
        HeuristicPlayer(jitter=1.5)


# --- rules, on synthetic observations ---------------------------------------------------------------------------


def approaching_goomba(start_ahead, steps, screen_x_of=None):
    """Mario runs right at 12 px per step with the screen scrolling; a goomba walks left at 2.5 px per step."""
    observations = []
    for step in range(steps):
        mario_x = 500.0 + 12 * step
        camera = mario_x - 112
        goomba_level_x = mario_x + start_ahead - 14.5 * step
        screen_x = goomba_level_x - camera if screen_x_of is None else screen_x_of(step)
        observations.append(observation([(GOOMBA, screen_x, 184.0)], player_level_x=mario_x, camera_x=camera))
    return observations


def test_jumps_when_an_enemy_comes_close_ahead_and_not_before():
    player = quiet_player()
    actions = play(player, approaching_goomba(start_ahead=160, steps=12))
    first_jump = actions.index(JUMP)
    distance = 160 - 14.5 * first_jump
    assert player.last_reason in ("enemy ahead", "hold A")
    assert first_jump >= 2 and actions[:first_jump] == [RUN] * first_jump  # runs while the goomba is far
    assert 16 < distance < 160 - 14.5, "it takes off before the goomba reaches Mario, not at first sight"


def test_ignores_an_enemy_x_that_does_not_move_like_an_enemy():
    # the RAM byte behind enemy{k}_screen_x is not always that enemy's x: a value that stays put on screen
    # while the camera scrolls 12 px per step is not trusted, however close it claims the enemy is
    player = quiet_player(dead_reckoning=False)
    actions = play(player, approaching_goomba(start_ahead=40, steps=8, screen_x_of=lambda step: 140.0))
    assert JUMP not in actions


def test_jumps_when_blocked_holds_a_then_backs_off_after_repeated_blocks():
    player = quiet_player(jump_hold=4, backoff_after=2, backoff_steps=3)
    on_wall = observation(player_level_x=500, player_x_speed=0)
    in_air = observation(player_level_x=500, player_x_speed=0, player_float_state=1, player_screen_y=150)
    assert player.act(observation(player_level_x=488), {}) == RUN  # running up to the wall
    assert player.act(on_wall, {}) == JUMP and player.last_reason == "blocked"
    assert play(player, [in_air] * 4) == [JUMP, JUMP, JUMP, RUN]  # A held 4 steps in all, then released
    assert player.act(on_wall, {}) == JUMP and player.last_reason == "blocked"  # landed, still blocked
    assert play(player, [in_air] * 4) == [JUMP, JUMP, JUMP, RUN]
    assert player.act(on_wall, {}) == LEFT and player.last_reason == "back off"  # third time: take a run-up
    assert play(player, [on_wall] * 3) == [LEFT, LEFT, RUN]


def test_releases_a_before_every_new_jump():
    player = HeuristicPlayer(jitter=0.0)  # hops whenever it is on the ground at running speed
    actions = play(player, [observation(player_level_x=500 + 12 * step) for step in range(12)])
    assert actions[0] == JUMP
    presses = [i for i in range(1, len(actions)) if actions[i] == JUMP and actions[i - 1] != JUMP]
    assert presses, "it should jump again"
    assert all(actions[i - 1] != JUMP for i in presses)  # every new press follows a step without A


def test_waits_for_a_piranha_plant_to_go_down_before_jumping_its_pipe():
    player = quiet_player()
    def at_pipe(plant_y, x_speed=0):
        return observation([(PIRANHA, 200.0, plant_y)], player_level_x=500, player_x_speed=x_speed)

    assert player.act(observation([(PIRANHA, 200.0, 144.0)], player_level_x=488), {}) == RUN
    # out and back: moving, or still at 24 px above its hiding place (y = 8 mod 16), or just arrived back
    out = [at_pipe(y) for y in (140, 132, 124, 120, 120, 120, 124, 132, 140, 144)]
    for plant_up in out:  # keeps pressing against the pipe, never jumps into the plant
        assert player.act(plant_up, {}) == RUN and player.last_reason == "wait for the piranha plant"
    assert player.act(at_pipe(144), {}) == JUMP and player.last_reason == "blocked"  # still in its pipe: go


def test_jitter_pauses_come_from_its_own_seeded_generator():
    stream = [observation(player_level_x=500 + 12 * step) for step in range(300)]
    player = HeuristicPlayer(jitter=0.3, seed=5)
    first = play(player, stream)
    player.reset(5)
    assert play(player, stream) == first
    player.reset(6)
    assert play(player, stream) != first
    assert NOOP in first and HeuristicPlayer(jitter=0.0).act(stream[0], {}) != NOOP


# --- playing the game -------------------------------------------------------------------------------------------


def play_stage(env, player, seed, max_steps, inspect=None):
    """Play one episode through the rollout loop -> ``(furthest x, actions, the rollout's summary)``.

    ``inspect(step, action, player)`` sees every step's observation with the action chosen on it.
    """
    rollout = Rollout(env, player, PatternSampler("uniform_grid", env.sample_count), seed=seed, max_steps=max_steps)
    actions, previous = [], None
    for step in rollout:
        if previous is not None:
            actions.append(step.buttons)
            if inspect is not None:
                inspect(previous, step.buttons, player)
        previous = step
    return rollout.summary.furthest_x, actions, rollout.summary


def nearest_enemy_ahead(state, mask):
    """Screen pixels from Mario to the nearest harmful enemy in front of him, from the RAM (None if none)."""
    distances = [field_value(state, f"enemy{slot}_screen_x") - field_value(state, "player_screen_x")
                 for slot in range(ENEMY_SLOTS)
                 if mask[STATE_INDEX[f"enemy{slot}_screen_x"]] and field_int(state, f"enemy{slot}_type") not in HARMLESS_TYPES]
    ahead = [d for d in distances if d > 0]
    return min(ahead) if ahead else None


def test_jumps_the_goombas_and_pipes_of_1_1_without_hopping(make_env):
    # with hops and pauses off, only the enemy and blocked rules make it jump: 1-1 up to its first pit has four
    # pipes and four goombas, and run_right dies at the goombas after the second pipe
    env = make_env(stage="1-1", sample_count=16)
    reasons = []

    def inspect(step, action, player):
        reasons.append((player.last_reason, nearest_enemy_ahead(step.observation["state"],
                                                                step.observation["state_mask"])))

    quiet, _, summary = play_stage(env, quiet_player(), seed=0, max_steps=250, inspect=inspect)
    run_right, _, _ = play_stage(env, RunRightPlayer(), seed=0, max_steps=250)
    assert run_right < 1000 and quiet > 1000, (run_right, quiet)
    enemy_jumps = [distance for reason, distance in reasons if reason == "enemy ahead"]
    assert sum(distance is not None and distance < 100 for distance in enemy_jumps) >= 2, enemy_jumps
    assert any(reason == "blocked" for reason, _ in reasons), "the pipes are jumped because they block"
    assert not any(reason == "hop" for reason, _ in reasons)


def test_same_seed_same_actions_in_the_game(make_env):
    env = make_env(stage="1-1", sample_count=16)
    player = HeuristicPlayer(jitter=0.2)
    _, first, _ = play_stage(env, player, seed=3, max_steps=80)
    _, again, _ = play_stage(env, player, seed=3, max_steps=80)
    _, other, _ = play_stage(env, player, seed=4, max_steps=80)
    assert again == first and other != first


def test_gets_far_beyond_run_right_on_1_1(make_env):
    env = make_env(stage="1-1", sample_count=16)
    run_right, _, _ = play_stage(env, RunRightPlayer(), seed=0, max_steps=600)
    heuristic, _, _ = play_stage(env, HeuristicPlayer(), seed=0, max_steps=600)
    assert run_right < 1000  # dies at the goombas after the second pipe, x ~ 708
    assert heuristic > 1500  # past both pits of the first half (seed 0 reaches the flag, x = 3161)


# --- experiments/evaluate_players.py ----------------------------------------------------------------------------


def episode(player, stage, seed, flag, x, steps, died=None):
    return evaluate_players.Episode(player, stage, seed, flag, (not flag) if died is None else died, x, steps)


def test_summarize_computes_share_deaths_mean_max_and_steps():
    episodes = [episode("heuristic", "1-1", 0, True, 3161, 400),
                episode("heuristic", "1-1", 1, False, 1000, 100),
                episode("heuristic", "1-1", 2, False, 1500, 3000, died=False),  # cut off by the step cap
                episode("heuristic", "1-1", 3, True, 3161, 500),
                episode("random", "1-1", 0, False, 300, 50)]
    rows = evaluate_players.summarize(episodes)
    assert [(row.player, row.stage, row.episodes) for row in rows] == [("heuristic", "1-1", 4), ("random", "1-1", 1)]
    row = rows[0]
    assert row.flag_share == 0.5 and row.deaths == 1 and row.max_x == 3161
    assert row.mean_x == pytest.approx((3161 + 1000 + 1500 + 3161) / 4) and row.mean_steps == 1000
    table = evaluate_players.format_table(rows)
    assert "| heuristic | 1-1 | 4 | 50% | 1 | 2,206 | 3,161 | 1,000 |" in table
    assert table.splitlines()[0].startswith("| player | stage |") and len(table.splitlines()) == 4


def test_parse_options():
    assert evaluate_players.parse_options(["heuristic.jitter=0", "heuristic.dead_reckoning=false",
                                           "heuristic.button_set=simple"], ["heuristic"]) == {
        "heuristic": {"jitter": 0, "dead_reckoning": False, "button_set": "simple"}}
    for bad in (["jitter=0"], ["heuristic.jitter"], ["random.stickiness=0.5"]):
        with pytest.raises(ValueError):
            evaluate_players.parse_options(bad, ["heuristic"])


def test_evaluate_plays_capped_seeded_episodes_and_main_writes_json(tmp_path, capsys):
    results = evaluate_players.evaluate(["run_right"], ["1-1"], episodes=2, max_steps=20)
    assert [(e.player, e.stage, e.seed, e.steps, e.flag, e.died) for e in results] == [
        ("run_right", "1-1", 0, 20, False, False), ("run_right", "1-1", 1, 20, False, False)]
    assert all(40 < e.furthest_x < 400 for e in results)

    path = tmp_path / "evaluation.json"
    args = tyro.cli(evaluate_players.Args, args=["--players", "run_right", "heuristic", "--stages", "1-1",
                                                 "--episodes", "1", "--max-steps", "30", "--no-progress",
                                                 "--set", "heuristic.jitter=0", "--json", str(path)])
    rows = evaluate_players.main(args)
    assert [row.player for row in rows] == ["run_right", "heuristic"]
    printed = capsys.readouterr().out
    assert "| run_right | 1-1 | 1 | 0% |" in printed and "options of heuristic: jitter=0" in printed
    saved = json.loads(path.read_text())
    assert len(saved["episodes"]) == 2 and saved["rows"][1]["player"] == "heuristic"


def test_evaluate_refuses_unknown_stages_and_players():
    with pytest.raises(SystemExit):
        tyro.cli(evaluate_players.Args, args=["--players", "nobody"])
    with pytest.raises(ValueError, match="unknown stage"):
        evaluate_players.evaluate(["run_right"], ["9-9"], episodes=1)
