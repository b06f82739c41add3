"""Registers orrb's envs with Gymnasium (cheap: entry points are strings, nothing heavy loads)."""

from __future__ import annotations

__all__ = ["register_envs"]

DACTYL_MAX_EPISODE_STEPS = 100


def register_envs() -> None:
    """Registers ``OrrbDactyl-v0`` (idempotent); ``import orrb`` calls it."""
    import gymnasium

    if "OrrbDactyl-v0" in gymnasium.registry:
        return
    gymnasium.register(
        id="OrrbDactyl-v0",
        entry_point="orrb.envs.dactyl:OrrbDactylEnv",
        max_episode_steps=DACTYL_MAX_EPISODE_STEPS,
    )
