"""Importing `sim2real_edit.feedback` loads no deep-learning library and no judge; each name loads on use."""

import json
import subprocess
import sys
import textwrap

import pytest

from sim2real_edit import feedback

HEAVY_MODULES = ["torch", "transformers", "dreamsim", "open_clip", "timm"]
JUDGE_MODULES = [
    f"sim2real_edit.feedback.{name}" for name in ("depth", "embeddings", "dreamsim_embedder", "segmentation")
]


def imported_after(code: str) -> list[str]:
    """The modules a fresh interpreter holds after running `code`."""
    script = textwrap.dedent(code) + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.splitlines()[-1])


def test_importing_the_package_loads_no_heavy_library_and_no_judge():
    modules = imported_after("import sim2real_edit.feedback")
    assert [name for name in HEAVY_MODULES + JUDGE_MODULES if name in modules] == []


def test_the_feedback_loop_and_analytic_judges_load_no_model_library():
    modules = imported_after(
        """
        import sim2real_edit.feedback
        from sim2real_edit.feedback.analytic import GradientDepth

        assert sim2real_edit.feedback.Feedback.__name__ == "Feedback"
        """
    )
    assert "sim2real_edit.feedback.feedback" in modules and "torch" in modules
    assert [name for name in ("transformers", "dreamsim", "open_clip", "timm") if name in modules] == []


def test_every_exported_name_resolves_and_dir_lists_it():
    assert len(set(feedback.__all__)) == len(feedback.__all__)
    for name in feedback.__all__:
        assert getattr(feedback, name) is not None, name
    assert set(feedback.__all__) <= set(dir(feedback))


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="NoSuchJudge"):
        feedback.NoSuchJudge  # noqa: B018
