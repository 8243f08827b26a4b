"""Builds the `policies.base.Policy` of a `PolicySpec`: an RT-1 checkpoint, a CNN checkpoint, or a scripted
stand-in.

A policy may also implement ``seed_episodes(seeds)``: the runner calls it before every ``reset`` with one
seed per env, derived from each episode's key, so that a random policy's episode does not depend on which
other episodes share its batch (and a resumed run reproduces it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from policies.base import Policy, PolicyStep

from .config import CNN, RT1, EvalConfig, PolicySpec


class EpisodeSeededScriptedPolicy:
    """A scripted drawer policy (`policies.scripted`) with its own random stream per episode.

    `ScriptedDrawerPolicy` draws from one generator for the whole batch; here every env gets its own
    instance, seeded by `seed_episodes`, and acts on its row of the batched observation.
    """

    def __init__(self, name: str, skill: float) -> None:
        self.name = name
        self.skill = skill
        self._seeds: list[int] = []
        self._episodes: list[Any] = []

    def seed_episodes(self, seeds: list[int]) -> None:
        self._seeds = [int(seed) for seed in seeds]

    def reset(self, instructions: list[str]) -> None:
        from policies.scripted import ScriptedDrawerPolicy

        if len(self._seeds) != len(instructions):
            raise ValueError(
                f"{self.name} has {len(self._seeds)} episode seeds for {len(instructions)} envs; "
                "call seed_episodes(seeds) with one seed per env before reset"
            )
        self._episodes = [ScriptedDrawerPolicy(self.skill, seed=seed, name=self.name) for seed in self._seeds]
        for policy, instruction in zip(self._episodes, instructions):
            policy.reset([instruction])

    def act(self, observations: dict[str, Any], instructions: list[str]) -> PolicyStep:
        steps = [
            policy.act(_row(observations, index), [instruction])
            for index, (policy, instruction) in enumerate(zip(self._episodes, instructions))
        ]
        return PolicyStep(
            actions=np.concatenate([step.actions for step in steps]),
            terminate=np.concatenate([step.terminate for step in steps]),
        )


def _row(tree: Any, index: int) -> Any:
    """Row ``index`` of a batched observation (nested dicts of arrays), keeping the batch axis."""
    if isinstance(tree, dict):
        return {key: _row(value, index) for key, value in tree.items()}
    return tree[index : index + 1]


def is_deterministic(spec: PolicySpec) -> bool:
    """Whether the policy of ``spec`` acts the same on the same observations whatever its episode seed: RT-1
    (the most likely action token) and the CNN policies (no sampling) do; a scripted policy does at skill 1, where
    it never misreads the instruction or gets distracted (`policies.scripted`)."""
    if spec.kind in (RT1, CNN):
        return True
    return float(spec.skill) == 1.0


def load_policy(spec: PolicySpec, config: EvalConfig) -> Policy:
    """The policy of ``spec``; RT-1 checkpoints load with the config's sentence encoder and action scale."""
    if spec.kind == CNN:
        from policies.cnn import CNNPolicy

        return CNNPolicy.from_pretrained(spec.checkpoint, name=spec.name)
    if spec.kind == RT1:
        from policies.rt1 import RT1Policy
        from policies.sentence_encoder import SentenceEncoder

        encoder = SentenceEncoder(config.sentence_encoder) if config.sentence_encoder else None
        return RT1Policy.from_pretrained(
            spec.checkpoint, sentence_encoder=encoder, action_scale=config.action_scale, name=spec.name
        )
    return EpisodeSeededScriptedPolicy(spec.name, float(spec.skill))
