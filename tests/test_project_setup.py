"""What a new user reads and sees: the README's install and offline instructions, and a test run whose
warnings are this project's own."""

from __future__ import annotations

import warnings
from pathlib import Path

from _pytest.config import parse_warning_filter

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_has_a_cpu_only_install_and_an_offline_section():
    assert "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu" in README
    offline = README.split("## Offline / air-gapped machines", 1)[1].split("\n## ", 1)[0]
    for needed in ("HF_HUB_OFFLINE", "hf download timbrooks/instruct-pix2pix --local-dir models/instruct-pix2pix",
                   "--models-dir", "--base", "--depth-model", "--embedder-model"):
        assert needed in offline, needed
    assert "huggingface-cli" not in README  # the installed huggingface_hub calls it `hf`


def test_pytest_hides_third_party_deprecations_but_not_ours(pytestconfig):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for entry in pytestconfig.getini("filterwarnings"):
            warnings.filterwarnings(*parse_warning_filter(entry, escape=False))
        for module in ("diffusers.schedulers.scheduling_euler_ancestral_discrete", "transformers.utils.hub",
                       "sim2real_edit.specialist", "envs.edited"):
            warnings.warn_explicit(f"deprecated in {module}", DeprecationWarning, f"{module}.py", 1, module=module)
    assert [str(warning.message) for warning in caught] == [
        "deprecated in sim2real_edit.specialist", "deprecated in envs.edited"]
