"""The project installed into SIMPLER's virtual environment leaves SIMPLER working.

torch needs setuptools >= 77, and pip would take the newest (81+), which no longer ships `pkg_resources`,
which SAPIEN imports: the `simpler` extra caps setuptools below 81. Runs where SIMPLER is installed (e.g.
`. /opt/simpler/env.sh` after `pip install -e ".[simpler]"`); skipped elsewhere. The extra itself is
checked everywhere.
"""

from __future__ import annotations

import ast
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


SIMPLER_MODULES = ("mani_skill2_real2sim", "simpler_env", "sapien")


def needs_simpler(node: ast.AST) -> bool:
    """Whether `node` skips without SIMPLER: it calls pytest.importorskip on one of SIMPLER's packages."""
    return any(isinstance(call, ast.Call) and ast.unparse(call.func).endswith("importorskip") and call.args
               and isinstance(call.args[0], ast.Constant) and str(call.args[0].value).startswith(SIMPLER_MODULES)
               for call in ast.walk(node))


def test_every_test_that_needs_simpler_is_marked_so_that_one_command_runs_them_all():
    """`python -m pytest -m simpler` runs every SIMPLER-only test: a test that skips without SIMPLER (itself,
    through a fixture, or its whole module) must carry the `simpler` mark."""
    unmarked, found = [], 0
    for path in sorted((REPO / "tests").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        module_needs = any(needs_simpler(node) for node in tree.body if isinstance(node, ast.Expr))
        module_marked = any(isinstance(node, ast.Assign) and "pytestmark" in ast.unparse(node.targets[0])
                            and "mark.simpler" in ast.unparse(node.value) for node in tree.body)
        functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
        fixtures = {node.name for node in functions
                    if any("fixture" in ast.unparse(d) for d in node.decorator_list) and needs_simpler(node)}
        for node in functions:
            if not node.name.startswith("test_"):
                continue
            uses = module_needs or needs_simpler(node) or any(arg.arg in fixtures for arg in node.args.args)
            marked = module_marked or any("mark.simpler" in ast.unparse(d) for d in node.decorator_list)
            found += uses
            if uses and not marked:
                unmarked.append(f"{path.name}::{node.name}")
    assert found >= 5  # the scan sees the SIMPLER tests at all
    assert not unmarked, f"tests that need SIMPLER without @pytest.mark.simpler: {unmarked}"
