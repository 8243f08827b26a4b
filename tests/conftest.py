import os

# Tests never touch the network: everything they load is built in code or saved to tmp_path first.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path

import torch

# Tiny models gain nothing from intra-op threads, and on a shared 2-core runner they thrash.
torch.set_num_threads(1)

import pytest


@pytest.fixture(scope="session")
def small_tiny_base_folder(tmp_path_factory):
    """The tiny preset's base at the tests' size (`MiniatureSettings.small()`, 2-3 minutes on 2 cores), built
    once per test session; tests run one at a time, so the build may use both cores."""
    from envs.tiny_base import ensure_tiny_base
    from miniature.experiment import MiniatureSettings

    settings = MiniatureSettings.small()
    torch.set_num_threads(2)
    try:
        return ensure_tiny_base(tmp_path_factory.mktemp("tiny-base"), settings.base, settings.base_frames,
                                progress=False)
    finally:
        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def full_tiny_base_folder(tmp_path_factory):
    """The tiny preset's full base (`TinyBaseConfig()`): the folder `SIM2REAL_EDIT_TINY_BASE` names when it holds
    one (e.g. the main job's `<data root>/tiny/base`), else built once per session (about 8 minutes)."""
    from envs.tiny_base import ensure_tiny_base
    from sim2real_edit.tiny_base import TinyBaseConfig, read_tiny_base_report

    given = os.environ.get("SIM2REAL_EDIT_TINY_BASE")
    if given:
        report = read_tiny_base_report(given)
        if report is not None and report.config == TinyBaseConfig().to_dict():
            return Path(given)
    torch.set_num_threads(2)
    try:
        return ensure_tiny_base(tmp_path_factory.mktemp("full-tiny-base"), TinyBaseConfig(), progress=False)
    finally:
        torch.set_num_threads(1)


@pytest.fixture
def tiny_base(small_tiny_base_folder, monkeypatch):
    """The tiny preset (envs, trainer, evaluation) finds its base in the session's small build, also in the
    subprocesses a test starts, instead of building the full one."""
    monkeypatch.setenv("SIM2REAL_EDIT_TINY_BASE", str(small_tiny_base_folder))
    return small_tiny_base_folder


@pytest.fixture(scope="session")
def small_tiny_policies(tmp_path_factory):
    """The small build of the miniature's CNN policies and their real-world table, once per test session."""
    from miniature.experiment import MiniatureSettings
    from miniature.policy_family import build_tiny_policies

    return build_tiny_policies(tmp_path_factory.mktemp("tiny-policies"), MiniatureSettings.small().policies,
                               progress=False, workers=2)


@pytest.fixture
def both_cores():
    """Tests run one at a time: a long one may use both cores of the 2-core runner."""
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(1)
