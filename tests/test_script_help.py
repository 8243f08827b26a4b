"""Every script answers --help without loading torch or the other model libraries: they load only once the
arguments are parsed, so a user's first command (and every usage error) answers at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO_ROOT / "scripts").glob("*.py"))
HEAVY_PACKAGES = {"torch", "diffusers", "transformers", "tensorflow"}


def imported_packages(importtime_log: str) -> set[str]:
    """The top-level packages in `python -X importtime`'s lines `import time: self | cumulative | name`."""
    names = (line.rsplit("|", 1)[-1].strip() for line in importtime_log.splitlines()
             if line.startswith("import time:"))
    return {name.split(".")[0] for name in names}


def test_every_script_is_checked():
    assert len(SCRIPTS) >= 8 and (REPO_ROOT / "scripts" / "bench_editor.py") in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_help_answers_without_the_heavy_libraries(script: Path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-X", "importtime", str(script), "--help"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(f"usage: {script.name}"), done.stdout[:500]
    heavy = HEAVY_PACKAGES & imported_packages(done.stderr)
    assert not heavy, f"{script.name} --help imports {sorted(heavy)}"
