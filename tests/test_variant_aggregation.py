"""SIMPLER's second drawer setting, variant aggregation, as data (envs.protocol) and as a run (EvalConfig).

The trial list is checked against SIMPLER's own script (`scripts/rt1_drawer_variant_agg.sh`) where a SimplerEnv
source tree is on this machine, and against its count computed from the setting's definition everywhere.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from envs.protocol import (
    ALL_TASKS,
    SCENE_VARIANTS,
    VARIANT_AGGREGATION,
    VARIANT_POSES,
    VISUAL_MATCHING,
    DrawerTask,
    Trial,
    check_trial_pose,
    protocol_trials,
    variant_aggregation_trials,
)
from envs.trial_env import DrawerTrialEnv, parse_trial
from evaluation.config import EvalConfig, PolicySpec, full_config, select_trials, tiny_config

REPO = Path(__file__).resolve().parents[1]
SIMPLER_SCRIPT = Path(os.environ.get("SIMPLER_ENV_SRC", "/opt/simpler/src/SimplerEnv")) / "scripts" / \
    "rt1_drawer_variant_agg.sh"


def _script_runs(script: str) -> list[dict[str, object]]:
    """The env runs SIMPLER's variant-aggregation script asks for, in its order: one dict per EvalSim call and
    env name, with the scene name, the extra env build kwargs, whether it ray-traces and the robot grids.

    A small reading of the script's structure (arrays, assignments, `for` loops, EvalSim calls), enough for
    this script; it fails loudly on anything it does not expect."""
    arrays = {name: body.split() for name, body in re.findall(r"declare -a (\w+)=\(([^)]*)\)", script)}
    arrays = {name: [item.strip('"') for item in items] for name, items in arrays.items()}
    function = re.search(r"EvalSim\(\) \{(.*?)\n\}", script, re.DOTALL)
    assert function, "EvalSim() not found in SIMPLER's script"
    command = shlex.split(function.group(1).replace("\\\n", " "))
    grid = {}
    for flag in ("--robot-init-x", "--robot-init-y"):
        start = command.index(flag)
        first, last, count = command[start + 1: start + 4]
        grid[flag] = tuple(np.linspace(float(first), float(last), int(count)))
    body = script[: function.start()] + script[function.end():]
    runs: list[dict[str, object]] = []
    variables: dict[str, str] = {}
    loops: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        line = line.strip()
        if match := re.fullmatch(r'for (\w+) in "\$\{(\w+)\[@\]\}"; do', line):
            loops.append((match.group(1), arrays[match.group(2)]))
        elif line == "done":
            loops.pop()
        elif match := re.fullmatch(r'(\w+)="?(.*?)"?', line):
            variables[match.group(1)] = match.group(2)
        elif line == "EvalSim":
            looped = {name: values for name, values in loops}
            for scene in looped.get("scene_name", [variables["scene_name"]]):
                for env_name in looped["env_name"]:
                    extra = shlex.split(variables["EXTRA_ARGS"])
                    kwargs = {}
                    if "--additional-env-build-kwargs" in extra:
                        pairs = extra[extra.index("--additional-env-build-kwargs") + 1:]
                        kwargs = dict(pair.split("=", 1) for pair in pairs)
                    ray_traced = "--enable-raytracing" in extra or kwargs.pop("shader_dir", None) == "rt"
                    runs.append({"scene_name": scene, "kwargs": kwargs, "ray_traced": ray_traced,
                                 "env_name": env_name, "xs": grid["--robot-init-x"], "ys": grid["--robot-init-y"]})
    assert not loops, "unbalanced for/done in SIMPLER's script"
    return runs


def _script_trials(runs: list[dict[str, object]]) -> list[tuple[str, str, dict[str, str], float, float]]:
    """(env id, scene name, build kwargs, x, y) of every trial of one checkpoint, in the script's order (the
    script repeats each run for every checkpoint: the checkpoint loop is left out here)."""
    return [(run["env_name"], run["scene_name"], run["kwargs"], x, y)
            for run in runs for x in run["xs"] for y in run["ys"]]


def _our_trials() -> list[tuple[str, str, dict[str, str], float, float]]:
    rows = []
    for trial in variant_aggregation_trials():
        kwargs = SCENE_VARIANTS[trial.variant].build_kwargs()
        scene = kwargs.pop("scene_name")
        x, y, _ = trial.robot_init_xyyaw
        rows.append((trial.task.simpler_env_id, scene, kwargs, x, y))
    return rows


@pytest.fixture
def simpler_script() -> str:
    if not SIMPLER_SCRIPT.is_file():
        pytest.skip(f"SIMPLER's script {SIMPLER_SCRIPT} is not on this machine (set SIMPLER_ENV_SRC to a SimplerEnv "
                    "source tree)")
    return SIMPLER_SCRIPT.read_text()


def test_trials_match_simpler_script_count_first_and_last(simpler_script):
    runs = _script_runs(simpler_script)
    assert all(run["ray_traced"] for run in runs), "SIMPLER ray-traces every variant"
    theirs, ours = _script_trials(runs), _our_trials()
    assert len(theirs) == len(ours) == 378
    assert ours[0][:3] == theirs[0][:3] and ours[-1][:3] == theirs[-1][:3]
    assert np.allclose(ours[0][3:], theirs[0][3:]) and np.allclose(ours[-1][3:], theirs[-1][3:])

    def canonical(rows):
        return sorted((env, scene, tuple(sorted(kwargs.items())), round(x, 9), round(y, 9))
                      for env, scene, kwargs, x, y in rows)

    # The same trials, every one once (the script runs the two lightings and the two cabinets task by task,
    # alternating; ours runs one variant at a time).
    assert canonical(theirs) == canonical(ours)


def test_script_reader_sees_a_changed_script(simpler_script):
    """The comparison above can fail: the reader follows the script's grid and variants."""
    changed = simpler_script.replace("--robot-init-y -0.2 0.2 3", "--robot-init-y -0.2 0.2 2")
    assert len(_script_trials(_script_runs(changed))) == 7 * 6 * 6
    fewer = simpler_script.replace('"modern_office_no_roof"\n', "")
    assert len(_script_trials(_script_runs(fewer))) == 6 * 6 * 9


def test_variant_aggregation_count_from_its_definition():
    trials = variant_aggregation_trials()
    # 1 base scene + 2 backgrounds + 2 lightings + 2 cabinets, 6 tasks, a 3 x 3 grid of robot poses
    assert len(trials) == (1 + 2 + 2 + 2) * 6 * (3 * 3) == 378
    assert len({trial.key for trial in trials}) == 378
    combinations = {(trial.task, trial.variant, trial.robot_pose) for trial in trials}
    assert combinations == {(task, variant, pose) for task in ALL_TASKS for variant in SCENE_VARIANTS
                            for pose in VARIANT_POSES}
    assert trials[0].key == "OpenTopDrawer/base/x0.65_y-0.20"
    assert trials[-1].key == "CloseBottomDrawer/station3/x0.85_y+0.20"


def test_variant_grid_is_simplers_linspace_with_zero_yaw():
    xs = sorted({x for x, _, _ in VARIANT_POSES.values()})
    ys = sorted({y for _, y, _ in VARIANT_POSES.values()})
    assert np.allclose(xs, np.linspace(0.65, 0.85, 3)) and np.allclose(ys, np.linspace(-0.2, 0.2, 3))
    assert all(yaw == 0.0 for _, _, yaw in VARIANT_POSES.values())
    trial = Trial(DrawerTask("open", "top"), "base/x0.75_y+0.00")
    assert trial.robot_init_xyyaw == pytest.approx((0.75, 0.0, 0.0))
    assert np.allclose(trial.robot_init_quaternion, (0.0, 0.0, 0.0, 1.0))  # SIMPLER's --robot-init-rot-quat-center


def test_variants_as_simpler_builds_them():
    kwargs = {name: variant.build_kwargs() for name, variant in SCENE_VARIANTS.items()}
    assert kwargs["base"] == {"scene_name": "frl_apartment_stage_simple"}
    assert kwargs["office"] == {"scene_name": "modern_office_no_roof"}
    assert kwargs["darker"] == {"scene_name": "frl_apartment_stage_simple", "light_mode": "darker"}
    assert kwargs["station3"] == {"scene_name": "frl_apartment_stage_simple", "station_name": "mk_station3"}


def test_variant_trial_keys_parse_and_keep_the_setting_apart():
    trial = parse_trial("CloseMiddleDrawer/office/x0.85_y-0.20")
    assert (trial.task, trial.variant, trial.robot_pose) == (DrawerTask("close", "middle"), "office", "x0.85_y-0.20")
    assert trial.setting == VARIANT_AGGREGATION and parse_trial(trial.key) == trial
    visual = protocol_trials()[0]
    assert (visual.variant, visual.robot_pose, visual.setting) == (None, "a0", VISUAL_MATCHING)


@pytest.mark.parametrize("pose, named", [("garden/x0.65_y-0.20", "garden"), ("base/a0", "x0.65_y-0.20"),
                                         ("base/x0.70_y-0.20", "x0.70_y-0.20"), ("d4", "d4")])
def test_unknown_variant_or_grid_pose_is_refused_naming_the_known_ones(pose, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        check_trial_pose(pose)


def test_standin_refuses_variant_aggregation_clearly():
    with pytest.raises(ValueError, match="stand-in has no scene variants.*real SIMPLER"):
        DrawerTrialEnv("standin", setting=VARIANT_AGGREGATION)
    with pytest.raises(ValueError, match="stand-in has no scene variants"):
        DrawerTrialEnv("standin", task="OpenTopDrawer", pose="bedroom/x0.65_y-0.20")


# --- the setting in the evaluation config -------------------------------------------------------------------

RT1_SPECS = (PolicySpec("rt_1_x", "rt1", checkpoint="/checkpoints/rt_1_x"),)


def test_visual_matching_configs_keep_the_hash_they_had_before_the_setting_existed():
    # Hashes computed with the harness before `setting` was added (commit 562b9c2).
    assert EvalConfig(policies=RT1_SPECS, styles=("wood",)).config_hash == "d4124430a4ba44e9"
    small = EvalConfig(policies=RT1_SPECS, styles=("wood",), seeds=1, trials=("OpenTopDrawer/a0",),
                       domains=("unedited",), env_kwargs={"shader_dir": "ibl"})
    assert small.config_hash == "ee62f996d83b02d6"
    assert "setting" not in small.to_dict()
    assert EvalConfig.from_dict(small.to_dict()) == small


def test_variant_aggregation_config_is_another_config_and_round_trips():
    config = full_config(policies=RT1_SPECS, styles=("wood",), setting=VARIANT_AGGREGATION)
    assert config.to_dict()["setting"] == VARIANT_AGGREGATION
    assert len(config.trials) == 378 and config.urdf_versions == ("none",)
    assert config.variants() == tuple(SCENE_VARIANTS)
    assert EvalConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.env_options()["setting"] == VARIANT_AGGREGATION
    visual = full_config(policies=RT1_SPECS, styles=("wood",))
    assert config.config_hash != visual.config_hash and "setting" not in visual.env_options()


def test_variant_selection_narrows_the_trials():
    keys = select_trials(None, VARIANT_AGGREGATION, variants=["darker", "base"])
    assert len(keys) == 2 * 6 * 9 and keys[0] == "OpenTopDrawer/base/x0.65_y-0.20"
    assert {parse_trial(key).variant for key in keys} == {"base", "darker"}
    keys = select_trials(["CloseTopDrawer", "OpenTopDrawer/station2/x0.75_y+0.00"], VARIANT_AGGREGATION,
                         variants=["station2"])
    assert len(keys) == 9 + 1
    config = full_config(policies=RT1_SPECS, styles=("wood",), setting=VARIANT_AGGREGATION,
                         trials=select_trials(None, VARIANT_AGGREGATION, ["base", "brighter"]))
    assert config.variants() == ("base", "brighter") and config.expected_episodes() == 108 * 3 * 3
    with pytest.raises(ValueError, match="unknown scene variant 'garden'.*base, bedroom"):
        select_trials(None, VARIANT_AGGREGATION, ["garden"])
    with pytest.raises(ValueError, match="visual-matching trial"):
        select_trials(["OpenTopDrawer/a0"], VARIANT_AGGREGATION)
    with pytest.raises(ValueError, match="visual matching has none"):
        select_trials(None, VISUAL_MATCHING, ["base"])


@pytest.mark.parametrize("overrides, message", [
    ({"trials": ("OpenTopDrawer/a0",)}, "not variant-aggregation trials"),
    ({"urdf_versions": ("recolor_cabinet_visual_matching_1",)}, "original robot URDF"),
    ({"env_kwargs": {"setting": VARIANT_AGGREGATION}}, "EvalConfig.setting"),
])
def test_variant_aggregation_config_refuses_what_does_not_belong(overrides, message):
    with pytest.raises(ValueError, match=message):
        full_config(policies=RT1_SPECS, styles=("wood",), setting=VARIANT_AGGREGATION, **overrides)
    with pytest.raises(ValueError, match="not visual-matching trials"):
        full_config(policies=RT1_SPECS, trials=("OpenTopDrawer/base/x0.65_y-0.20",))
    with pytest.raises(ValueError, match="unknown setting"):
        full_config(policies=RT1_SPECS, setting="visual_matching")


def test_tiny_preset_refuses_variant_aggregation():
    with pytest.raises(ValueError, match="stand-in of --preset tiny does not have"):
        tiny_config(setting=VARIANT_AGGREGATION, trials=select_trials(None, VARIANT_AGGREGATION),
                    urdf_versions=("none",))


# --- the command line ---------------------------------------------------------------------------------------

def _eval_script():
    spec = importlib.util.spec_from_file_location("eval_policies", REPO / "scripts" / "eval_policies.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv, message", [
    (["--setting", "variant-aggregation", "--preset", "tiny"], "CPU stand-in of --preset tiny has none"),
    (["--setting", "variant-aggregation", "--urdf-versions", "all"], "original robot URDF only"),
    (["--variants", "base"], "visual matching has none"),
])
def test_command_line_refuses_mismatched_options(argv, message, capsys):
    with pytest.raises(SystemExit):
        _eval_script().parse_args(argv)
    assert message in capsys.readouterr().err


def test_command_line_builds_a_variant_aggregation_config(tmp_path):
    script = _eval_script()
    args = script.parse_args(["--setting", "variant-aggregation", "--variants", "station3", "base",
                              "--checkpoints", str(tmp_path / "rt_1_x"), "--styles", "wood", "--trials",
                              "OpenTopDrawer"])
    config, _, _ = script.build_config(args)
    assert config.setting == VARIANT_AGGREGATION and config.variants() == ("base", "station3")
    assert len(config.trials) == 2 * 9 and config.urdf_versions == ("none",)
    assert script.default_run_dir("full", None, args.setting) == "runs/eval-full-variant-aggregation"


@pytest.mark.simpler
def test_command_line_refuses_up_front_naming_missing_variant_assets(tmp_path):
    pytest.importorskip("mani_skill2_real2sim.envs", reason="SIMPLER (ManiSkill2_real2sim) is not installed")
    from envs.simpler import missing_variant_assets

    if not missing_variant_assets(list(SCENE_VARIANTS)):
        pytest.skip("this SIMPLER asset folder has every variant's files")
    script = _eval_script()
    args = script.parse_args(["--setting", "variant-aggregation", "--checkpoints", str(tmp_path / "rt_1_x"),
                              "--styles", "wood", "--domains", "unedited"])
    config, _, _ = script.build_config(args)
    with pytest.raises(FileNotFoundError, match=r"no_roof\.glb.*--variants base brighter darker"):
        script.check_local_inputs(config)


# --- the report ---------------------------------------------------------------------------------------------

def test_report_averages_over_variants_as_simpler_and_says_which_setting(tmp_path):
    from evaluation.report import build_report
    from evaluation.results import EpisodeResult, ResultStore

    trials = select_trials(["OpenTopDrawer", "CloseTopDrawer"], VARIANT_AGGREGATION, ["base", "darker"])
    config = full_config(policies=RT1_SPECS, styles=("wood",), domains=("unedited",), seeds=1,
                         setting=VARIANT_AGGREGATION, trials=trials)
    # base: open 9/9, close 3/9; darker: open 0/9, close 6/9
    successes = {("open", "base"): 9, ("close", "base"): 3, ("open", "darker"): 0, ("close", "darker"): 6}
    store = ResultStore.create(tmp_path, config)
    for trial in config.trial_list():
        index = list(VARIANT_POSES).index(trial.robot_pose)
        success = index < successes[(trial.task.action, trial.variant)]
        store.add(EpisodeResult("rt_1_x", "unedited", "", "none", 0, trial.task.name, trial.pose,
                                trial.task.drawer, trial.task.action, success, 113, None, 0.0, 1, 1.0,
                                config.config_hash))
    report = build_report(tmp_path, n_boot=200)
    (domain,) = report.domains
    (rates,) = domain.rates
    # SIMPLER: each (task, variant)'s mean over its poses, averaged over variants; average = (open + close) / 2
    assert rates.open.rate == pytest.approx((9 / 9 + 0 / 9) / 2)
    assert rates.close.rate == pytest.approx((3 / 9 + 6 / 9) / 2)
    assert rates.average.rate == pytest.approx(0.5) and rates.average.trials == 36
    assert list(domain.rates_by_variant) == ["base", "darker"]
    assert domain.rates_by_variant["base"][0].average.rate == pytest.approx((1 + 3 / 9) / 2)
    assert domain.rates_by_variant["darker"][0].average.rate == pytest.approx((0 + 6 / 9) / 2)
    markdown = report.to_markdown()
    assert "variant aggregation" in markdown and "2 of 7" in markdown and "Average success by scene variant" in markdown
    saved = report.to_json()
    assert saved["run"]["setting"] == VARIANT_AGGREGATION and saved["run"]["variants"] == ["base", "darker"]
    assert list(saved["domains"][0]["rates_by_variant"]) == ["base", "darker"]
