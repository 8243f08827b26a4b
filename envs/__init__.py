"""Gymnasium environments: SIMPLER's drawer scenes (and a CPU stand-in) seen through editing specialists.

Importing this package registers `EditedDrawer-v0`.
"""

from gymnasium.envs.registration import register, registry

from .edited import EditedVectorEnv, EditObservation, EditSettings, FrameEditor, make_vec

if "EditedDrawer-v0" not in registry:
    register(id="EditedDrawer-v0", entry_point="envs.edited:make_edited_drawer")

__all__ = ["EditObservation", "EditSettings", "EditedVectorEnv", "FrameEditor", "make_vec"]
