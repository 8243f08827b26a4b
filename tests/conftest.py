import os

# Tests never touch the network: everything they load is built in code or saved to tmp_path first.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

# Tiny models gain nothing from intra-op threads, and on a shared 2-core runner they thrash.
torch.set_num_threads(1)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def small_tiny_base_folder(tmp_path_factory):
    """A tiny preset base trained for a few dozen steps (about half a minute), once per test session: it runs
    every code path of the trained base without its quality."""
    from envs.tiny_base import ensure_tiny_base
    from sim2real_edit.evaluation.miniature import MiniatureSettings

    settings = MiniatureSettings.small()
    return ensure_tiny_base(tmp_path_factory.mktemp("tiny-base"), settings.base, settings.base_frames,
                            progress=False)


@pytest.fixture
def tiny_base(small_tiny_base_folder, monkeypatch):
    """The tiny preset (envs, trainer, evaluation) finds its base in the session's small build, also in the
    subprocesses a test starts, instead of building the full one."""
    monkeypatch.setenv("SIM2REAL_EDIT_TINY_BASE", str(small_tiny_base_folder))
    return small_tiny_base_folder
