"""The project installed into SIMPLER's virtual environment leaves SIMPLER working.

torch needs setuptools >= 77, and pip would take the newest (81+), which no longer ships `pkg_resources`,
which SAPIEN imports: the `simpler` extra caps setuptools below 81. Runs where SIMPLER is installed (e.g.
`. /opt/simpler/env.sh` after `pip install -e ".[simpler]"`); skipped elsewhere. The extra itself is
checked everywhere.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def simpler_environment():
    pytest.importorskip("mani_skill2_real2sim", reason="SIMPLER (ManiSkill2_real2sim) is not installed")
    try:
        importlib.metadata.distribution("sim2real-edit")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the project is not installed in SIMPLER's environment (pip install -e '.[simpler]')")


def simpler_extra() -> dict[str, Requirement]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "simpler" in extras, "pyproject.toml has no `simpler` extra for installing into SIMPLER's venv"
    return {requirement.name: requirement for requirement in map(Requirement, extras["simpler"])}


def test_the_simpler_extra_keeps_setuptools_with_pkg_resources_and_simplers_pins():
    extra = simpler_extra()
    assert not extra["setuptools"].specifier.contains("81"), extra["setuptools"]
    assert extra["setuptools"].specifier.contains("80.9")  # torch's setuptools>=77 can still be met
    assert not extra["numpy"].specifier.contains("2.0") and not extra["gymnasium"].specifier.contains("1.0")


@pytest.mark.simpler
def test_sapien_and_pkg_resources_import_after_the_project_is_installed(simpler_environment):
    setuptools_version = Version(importlib.metadata.version("setuptools"))
    assert setuptools_version < Version("81"), f"setuptools {setuptools_version} has no pkg_resources"
    # A fresh interpreter: what a user's `import sapien` meets, and the project's own imports beside it.
    program = "import pkg_resources, sapien, mani_skill2_real2sim.envs, torch, sim2real_edit, envs"
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert Version(importlib.metadata.version("numpy")) < Version("2")
    assert Version(importlib.metadata.version("gymnasium")) < Version("1.0")
