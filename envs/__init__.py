"""Gymnasium environments: SIMPLER's drawer scenes (and a CPU stand-in) seen through editing specialists.

Importing this package registers `EditedDrawer-v0`.
"""

from gymnasium.envs.registration import register, registry

from .edited import EditedVectorEnv, EditObservation, EditSettings, FrameEditor, make_vec

if "EditedDrawer-v0" not in registry:
    # SIMPLER's observation space holds empty Dicts, which Gymnasium's passive checker rejects; SIMPLER
    # registers its own envs without the checker too. tests/test_edited_env.py runs check_env explicitly.
    register(id="EditedDrawer-v0", entry_point="envs.edited:make_edited_drawer", disable_env_checker=True)

__all__ = ["EditObservation", "EditSettings", "EditedVectorEnv", "FrameEditor", "make_vec"]
