"""Gymnasium environments: SIMPLER's drawer scenes (and a CPU stand-in) seen through editing specialists.

Importing this package registers `EditedDrawer-v0` and nothing heavier: the env module (numpy, torch, the
simulator) loads when an env is made or a name below is first used.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from sim2real_edit.lazy_exports import lazy_exports

if "EditedDrawer-v0" not in registry:
    # SIMPLER's observation space holds empty Dicts, which Gymnasium's passive checker rejects; SIMPLER
    # registers its own envs without the checker too. tests/test_edited_env.py runs check_env explicitly.
    register(id="EditedDrawer-v0", entry_point="envs.edited:make_edited_drawer", disable_env_checker=True)

_EXPORTS = {
    "CabinetGainEditor": "cabinet_gain",
    "EditObservation": "edited",
    "EditOptions": "edited",
    "EditSettings": "edited",
    "EditedVectorEnv": "edited",
    "FrameEditor": "edited",
    "FramesEditor": "edited",
    "make_edited_drawer": "edited",
    "make_edited_vector_env": "edited",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
