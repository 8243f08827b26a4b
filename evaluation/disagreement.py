"""Where sim and real disagree: the paired trials whose simulated outcome differs from the real one.

In a run with the miniature's real world (domain ``real``) every simulated episode has a real twin - the same
policy, trial, URDF version and seed index, so the same reset seed. A trial's outcomes are compared per view
(a domain, with its style for the styled domains); the floor (the real world under fresh noise) is a real
world, not a simulator, and is left out. Rates hide which episodes flipped; this lists them, so that their
videos can be watched side by side.
"""

from __future__ import annotations

from typing import Any

from .config import FLOOR, REAL, EvalConfig, view_name
from .results import EpisodeResult

NO_REAL_DOMAIN = ("this run has no real domain (only the tiny preset's miniature real world gives one), so no "
                  "simulated episode has a real twin to disagree with; the agreement tables compare rates with "
                  "the real-world table instead")


def _outcome(episode: EpisodeResult) -> dict[str, Any]:
    return {"success": episode.success, "steps": episode.steps, "drawer_qpos": round(episode.drawer_qpos, 4)}


def sim_real_disagreements(config: EvalConfig, episodes: list[EpisodeResult]) -> dict[str, Any]:
    """Per simulated view, how many paired trials it shares with the real world and on how many the outcome
    differs (each way), and every paired trial where at least one view differs, with all views' outcomes.
    Trials in the config's order, then URDF version and seed; only trials whose real episode is stored."""
    if REAL not in config.domains:
        return {"real_domain": False, "note": NO_REAL_DOMAIN, "views": [], "counts": [], "trials": []}
    order = {trial.key: position for position, trial in enumerate(config.trial_list())}
    policies = {policy.name: position for position, policy in enumerate(config.policies)}
    real: dict[tuple, EpisodeResult] = {}
    sim: dict[str, dict[tuple, EpisodeResult]] = {}
    for episode in episodes:
        pair = (episode.policy, episode.task, episode.pose, episode.urdf_version, episode.seed)
        if episode.domain == REAL:
            real[pair] = episode
        elif episode.domain != FLOOR:
            sim.setdefault(view_name(episode.domain, episode.style), {})[pair] = episode
    views = [view_name(domain, style) for domain, style in config.domain_styles() if domain not in (REAL, FLOOR)]
    views = [view for view in views if view in sim]
    counts = []
    for view in views:
        shared = [(sim[view][pair], real[pair]) for pair in sim[view] if pair in real]
        counts.append({
            "view": view,
            "paired": len(shared),
            "disagree": sum(s.success != r.success for s, r in shared),
            "sim_success_real_failure": sum(s.success and not r.success for s, r in shared),
            "sim_failure_real_success": sum(r.success and not s.success for s, r in shared),
        })
    trials = []
    for pair in sorted(real, key=lambda p: (policies.get(p[0], len(policies)), order.get(f"{p[1]}/{p[2]}", 0),
                                            p[3], p[4])):
        outcomes = {view: sim[view].get(pair) for view in views}
        differing = [view for view, episode in outcomes.items()
                     if episode is not None and episode.success != real[pair].success]
        if differing:
            policy, task, pose, urdf_version, seed = pair
            trials.append({"policy": policy, "task": task, "pose": pose, "urdf_version": urdf_version, "seed": seed,
                           "real": _outcome(real[pair]),
                           "sim": {view: _outcome(e) if e is not None else None for view, e in outcomes.items()},
                           "disagree": differing})
    return {"real_domain": True, "note": None, "views": views, "counts": counts, "trials": trials}
