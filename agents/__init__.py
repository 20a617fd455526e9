"""Players that generate play (and so training data) in ``SGAPS-SMB-v0``."""
from agents.heuristic import HeuristicPlayer
from agents.players import PLAYERS, Player, RandomPlayer, RunRightPlayer, make_player

__all__ = ["PLAYERS", "HeuristicPlayer", "Player", "RandomPlayer", "RunRightPlayer", "make_player"]
