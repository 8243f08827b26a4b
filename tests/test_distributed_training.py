"""Training split over two processes equals training in one process with the same total batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

pytestmark = pytest.mark.usefixtures("tiny_base")  # the tiny preset's base: the session's small build

WORKER = Path(__file__).with_name("distributed_training_worker.py")


def run(args: list[str], home: Path, **extra_env: str) -> None:
    env = {**os.environ, "SIM2REAL_EDIT_HOME": str(home), "OMP_NUM_THREADS": "1", **extra_env}
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_two_process_training_equals_one_process(tmp_path):
    run([sys.executable, str(WORKER), str(tmp_path / "one"), "1"], tmp_path / "home_one")
    # accelerate's own multi-GPU launcher (torchrun underneath), told to use the CPU: `accelerate launch
    # --cpu` alone starts one process, since accelerate spreads CPU jobs with mpirun and a hostfile.
    run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
         "29517", str(WORKER), str(tmp_path / "two"), "2"], tmp_path / "home_two", ACCELERATE_USE_CPU="1")

    one = load_file(str(tmp_path / "one" / "specialist_weights.safetensors"))
    two = load_file(str(tmp_path / "two" / "specialist_weights.safetensors"))
    start = load_file(str(tmp_path / "one" / "checkpoints" / "reference.safetensors"))
    moved = max((one[k] - start[k]).abs().max().item() for k in one)
    differs = max((one[k] - two[k]).abs().max().item() for k in one)
    assert moved > 1e-3  # training changed the weights...
    assert differs < 0.01 * moved  # ...and both runs changed them alike, up to float summation order

    log_one = [json.loads(line) for line in (tmp_path / "one" / "log.jsonl").read_text().splitlines()]
    log_two = [json.loads(line) for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    assert len(log_one) == len(log_two) == 2
    for a, b in zip(log_one, log_two):
        for key in ("loss", "structure", "semantic", "win_margin"):
            assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-5), key
