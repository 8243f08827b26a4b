"""Episodes that cannot differ: a deterministic policy in a deterministic domain repeats the same episode at
every seed, so "3 seeds" there is one episode run three times, not three pieces of evidence.

In SIMPLER's unedited simulator nothing random enters an episode but the policy, so a deterministic policy's
episodes of one trial are identical at every seed. `independent_episodes` finds such repeats in the stored
episodes: in a domain known to be deterministic (`DETERMINISTIC_DOMAINS`), episodes of the same policy, style,
robot URDF version and trial whose outcome, step count and final drawer opening are all identical are counted
once. Outside those domains every episode counts (the edits' diffusion noise, or the miniature real world's
sensor noise, changes with the seed even where the outcome happens to repeat). The intervals resample trials,
so repeats never narrowed them; the count says how much evidence the episode totals really hold.
"""

from __future__ import annotations

from collections.abc import Iterable

from .config import COLOUR_TRANSFER, GAIN_ORACLE, UNEDITED
from .results import EpisodeResult

#: Domains in which an episode depends on nothing random but the policy (and the reset seed's start state): the
#: unedited simulator and the deterministic colour edits (per-channel gains, which ignore the seed).
DETERMINISTIC_DOMAINS = (UNEDITED, COLOUR_TRANSFER, GAIN_ORACLE)


def episode_signature(episode: EpisodeResult) -> tuple[bool, int, float]:
    """What two runs of the same episode share exactly: outcome, steps and the drawer's final opening."""
    return bool(episode.success), int(episode.steps), float(episode.drawer_qpos)


def independent_episodes(
    episodes: Iterable[EpisodeResult], deterministic_domains: Iterable[str] = DETERMINISTIC_DOMAINS
) -> int:
    """How many of ``episodes`` are independent: in a deterministic domain, the episodes of one policy, style,
    URDF version and trial (over seeds) count once per distinct `episode_signature`; elsewhere each counts."""
    deterministic = set(deterministic_domains)
    count = 0
    distinct: dict[tuple[str, str, str, str, str, str], set[tuple[bool, int, float]]] = {}
    for episode in episodes:
        if episode.domain not in deterministic:
            count += 1
            continue
        key = (episode.policy, episode.domain, episode.style, episode.urdf_version, episode.task, episode.pose)
        distinct.setdefault(key, set()).add(episode_signature(episode))
    return count + sum(len(signatures) for signatures in distinct.values())
