"""What an evaluation run evaluates, as data: policies x trials x seeds x visual domains, and its presets.

`EvalConfig` holds everything that decides an episode's outcome; it is stored in the run folder, and a run
folder only ever holds episodes of one config (its hash is on every row). `ExecutionOptions` holds what
only changes how fast the episodes run (batch size, device, processes), so a killed run can be continued
with other execution options and still repeat nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from envs.protocol import (
    ALL_TASKS,
    DEFAULT_URDF_VERSION,
    MAX_EPISODE_STEPS,
    ROBOT_POSES,
    SCENE_VARIANTS,
    SETTINGS,
    URDF_VERSIONS,
    VARIANT_AGGREGATION,
    VARIANT_AGGREGATION_URDF_VERSION,
    VARIANT_POSES,
    VISUAL_MATCHING,
    DrawerTask,
    Trial,
    check_urdf_version,
    check_variant,
    protocol_trials,
    setting_trials,
    variant_aggregation_trials,
)
from envs.trial_env import parse_trial, preset_backend
from policies.scripted import GRADED_SKILLS
from sim2real_edit.real_world import checkpoint_policy_names, real_world_success
from sim2real_edit.styles import HOME_ENV_VAR, StyleRegistry, default_home

PRESETS = ("full", "tiny")

UNEDITED = "unedited"
EDITED = "edited"  # the paper's edited simulator: the specialist repaints the whole frame
EDITED_COMPOSITED = "edited+composited"  # the edit is kept inside the simulator's exact cabinet mask only
EDITED_CROP = "edited+crop"  # the cabinet's box edited at the model's resolution, composited into the exact mask
COLOUR_TRANSFER = "colour-transfer"  # non-learned: a per-channel gain from the sim's albedo to the exemplars'
# The stand-in's miniature real world and the instruments measured against it (`envs.appearance`):
REAL = "real"  # the real world itself, on the same trials and reset seeds: every sim episode's twin
FLOOR = "floor"  # the real world under fresh sensor noise: what sampling noise alone moves
CEILING = "ceiling"  # the real cabinet's pixels composited into the sim frame: the best any cabinet editor can do
GAIN_ORACLE = "gain-oracle"  # the sim cabinet's colour scaled to the real cabinet's mean: what the gap is made of
#: The paper's domains, the default of a run.
PAPER_DOMAINS = (UNEDITED, EDITED, EDITED_COMPOSITED)
DOMAINS = (UNEDITED, EDITED, EDITED_COMPOSITED, EDITED_CROP, COLOUR_TRANSFER, GAIN_ORACLE, CEILING, FLOOR, REAL)
#: Domains that run once per style (the specialist's, or the exemplars' colour), in run order: the cheap baseline
#: first, then the crop edit the claim rests on, the paper's whole-frame domains last (a run stopped early has
#: the claim's episodes).
STYLED_DOMAINS = (COLOUR_TRANSFER, EDITED_CROP, EDITED_COMPOSITED, EDITED)
#: Domains that need the miniature real world, so the CPU stand-in (preset "tiny").
REAL_WORLD_DOMAINS = (REAL, FLOOR, CEILING, GAIN_ORACLE)
#: Noise stream of the floor's real world (`envs.standin.DrawerStandIn`'s ``noise_stream``); 0 is the real world's.
FLOOR_NOISE_STREAM = 1


def view_name(domain: str, style: str) -> str:
    """The report's name of one style's view of a domain (``edited/wood``); a domain without styles by itself."""
    return f"{domain}/{style}" if domain in STYLED_DOMAINS and style else domain


RT1 = "rt1"
SCRIPTED = "scripted"
CNN = "cnn"  # policies.cnn: a CNN policy trained by behaviour cloning (the CPU experiment's policies)
POLICY_KINDS = (RT1, SCRIPTED, CNN)

_SIMPLER_IMAGE_WIDTH = 640
_SIMPLER_FOCAL_LENGTH = 425.0


@dataclass(frozen=True)
class PolicySpec:
    """A policy to evaluate.

    ``name`` keys its episodes in the database (a checkpoint's folder name, or a scripted policy's name);
    ``real_world_name`` is its row of the real-world table (`EvalConfig.real_world_table`), None where it has
    none. Scripted policies are stand-ins: their ``real_world_name`` is the policy they stand in for.
    """

    name: str
    kind: str  # RT1, SCRIPTED or CNN
    real_world_name: str | None = None
    checkpoint: str | None = None  # RT1, CNN: the checkpoint folder
    skill: float | None = None  # SCRIPTED: skill in [0, 1] (policies.scripted)

    def __post_init__(self) -> None:
        if self.kind not in POLICY_KINDS:
            raise ValueError(f"unknown policy kind {self.kind!r}; choose one of {POLICY_KINDS}")
        if self.kind in (RT1, CNN) and self.checkpoint is None:
            raise ValueError(f"the {self.kind} policy {self.name!r} needs its checkpoint folder")
        if self.kind == SCRIPTED and self.skill is None:
            raise ValueError(f"the scripted policy {self.name!r} needs a skill in [0, 1]")

    @property
    def is_stand_in(self) -> bool:
        return self.kind == SCRIPTED


@dataclass(frozen=True)
class EvalConfig:
    """The episodes of a run and how each one is produced; defaults are the paper's protocol.

    The run evaluates every policy on every trial, for seed indices ``0 .. seeds-1``, with every robot URDF
    version, in every domain: ``unedited`` once, and each edited variant once per style. A seed index fixes an
    episode's reset seed (robot start jitter and the diffusion noise of its edits) together with its trial.
    ``urdf_versions``: the paper ran SIMPLER's first visual-matching URDF only (the default); SIMPLER's own
    visual-matching numbers average all four (`envs.protocol.URDF_VERSIONS`).

    ``setting``: SIMPLER's drawer setting, visual matching (the default; real background overlays) or variant
    aggregation (`envs.protocol.VARIANT_AGGREGATION`: seven simulated scene variants, SIMPLER only, trials of
    `envs.protocol.variant_aggregation_trials` and SIMPLER's original robot URDF; `full_config(setting=...)`
    fills those in). Left out of `to_dict` when it is the default, so visual-matching configs keep their hash.
    """

    preset: str = "full"
    policies: tuple[PolicySpec, ...] = ()
    trials: tuple[str, ...] = tuple(trial.key for trial in protocol_trials())
    seeds: int = 3
    styles: tuple[str, ...] = field(default_factory=lambda: tuple(StyleRegistry.load().names))
    domains: tuple[str, ...] = PAPER_DOMAINS
    urdf_versions: tuple[str, ...] = (DEFAULT_URDF_VERSION,)
    max_episode_steps: int = MAX_EPISODE_STEPS
    edit_steps: int | None = None  # denoising steps per edit; None: the env's default (paper: 20)
    edit_short_side: int | None = None  # frames are edited at this short side; None: the env's default (256)
    standin_camera: tuple[int, int] | None = None  # stand-in only: (width, height), SIMPLER's field of view
    # Stand-in only: the gripper's start jitter (m) drawn from the reset seed; None: the stand-in's default. At 0
    # its unedited episodes depend on the policy alone, as SIMPLER's do (see evaluation.repeats).
    standin_start_jitter: float | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # JSON values for the simulator (e.g. shader_dir)
    sentence_encoder: str | None = None  # RT-1: TF-Hub URL or folder; None: policies.sentence_encoder's
    action_scale: float = 1.0  # RT-1
    real_world_table: str | None = None  # real-world success YAML; None: configs/real_world.yaml
    # Content stamps of built pieces the episodes depend on (e.g. the tiny preset's base, specialist, policies,
    # real-world table): rebuilding one of them makes another config, so a run folder never mixes builds.
    artefacts: dict[str, str] = field(default_factory=dict)
    setting: str = VISUAL_MATCHING

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {PRESETS}")
        if self.setting not in SETTINGS:
            raise ValueError(f"unknown setting {self.setting!r}; choose one of {SETTINGS}")
        if self.setting == VARIANT_AGGREGATION and self.preset == "tiny":
            raise ValueError(f"{VARIANT_AGGREGATION} needs SIMPLER's scene variants, which the CPU stand-in of "
                             "--preset tiny does not have: run it on SIMPLER (--preset full), or run visual "
                             "matching on the stand-in")
        if not self.policies:
            raise ValueError("no policies to evaluate: give RT-1 checkpoint folders or scripted policy names")
        names = [policy.name for policy in self.policies]
        if len(set(names)) != len(names):
            raise ValueError(f"policy names must be unique, got {names}; rename one of the checkpoint folders")
        if self.preset != "tiny" and any(policy.kind == SCRIPTED for policy in self.policies):
            raise ValueError(
                "scripted policies read the stand-in's privileged state and run only with --preset tiny; "
                "evaluate RT-1 checkpoints on SIMPLER"
            )
        unknown = [domain for domain in self.domains if domain not in DOMAINS]
        if unknown or not self.domains:
            raise ValueError(f"unknown domains {unknown or '(none given)'}; choose from {DOMAINS}")
        if any(domain in STYLED_DOMAINS for domain in self.domains) and not self.styles:
            raise ValueError("edited domains need at least one style (see configs/styles.yaml)")
        needs_real = [domain for domain in self.domains if domain in REAL_WORLD_DOMAINS]
        if needs_real and self.preset != "tiny":
            raise ValueError(
                f"the domains {needs_real} need the miniature real world, which only the CPU stand-in has "
                "(--preset tiny); on SIMPLER the real world's rates come from the real-world table"
            )
        if COLOUR_TRANSFER in self.domains and self.preset != "tiny":
            raise ValueError("the colour-transfer domain needs the simulator cabinet's albedo, which only the CPU "
                             "stand-in states (--preset tiny); on SIMPLER use the edited domains")
        if any(domain in (FLOOR, CEILING, GAIN_ORACLE) for domain in self.domains) and REAL not in self.domains:
            raise ValueError(f"the domains floor, ceiling and gain-oracle are measured against the real world: "
                             f"add {REAL!r} to the domains")
        if self.env_kwargs.get("appearance", "sim") != "sim" and self.domains != (UNEDITED,):
            raise ValueError("env_kwargs['appearance'] changes every domain's frames; run the real world as the "
                             f"domain {REAL!r} instead")
        if not self.urdf_versions:
            raise ValueError(f"no robot URDF versions; choose from {URDF_VERSIONS}")
        if tuple(map(check_urdf_version, self.urdf_versions)) != self.urdf_versions or len(
                set(self.urdf_versions)) != len(self.urdf_versions):
            raise ValueError(
                f"urdf_versions must be distinct names from {URDF_VERSIONS}, got {self.urdf_versions}; "
                "use select_urdf_versions to normalise a selection"
            )
        if "urdf_version" in self.env_kwargs:
            raise ValueError("choose the robot URDF with urdf_versions (stored per episode), not env_kwargs")
        if self.setting == VARIANT_AGGREGATION and self.urdf_versions != (VARIANT_AGGREGATION_URDF_VERSION,):
            raise ValueError(f"{VARIANT_AGGREGATION} uses SIMPLER's original robot URDF only: urdf_versions must be "
                             f"({VARIANT_AGGREGATION_URDF_VERSION!r},), got {self.urdf_versions}")
        if "setting" in self.env_kwargs:
            raise ValueError("choose the setting with EvalConfig.setting, not env_kwargs")
        if not self.trials:
            raise ValueError("no trials: give trial keys such as 'OpenTopDrawer/a0' or task names")
        other = [trial.key for trial in self.trial_list() if trial.setting != self.setting]  # names unknown ones
        if other:
            raise ValueError(f"{len(other)} trial(s) are not {self.setting} trials (e.g. {other[0]!r}): choose them "
                             f"with select_trials(..., setting={self.setting!r}), or full_config(setting=...)")
        if self.seeds < 1:
            raise ValueError(f"seeds must be at least 1, got {self.seeds}")
        if not 1 <= self.max_episode_steps <= MAX_EPISODE_STEPS:
            raise ValueError(
                f"max_episode_steps must lie in [1, {MAX_EPISODE_STEPS}] (the simulator's time limit), "
                f"got {self.max_episode_steps}"
            )
        for name in ("standin_camera", "standin_start_jitter"):
            if getattr(self, name) is not None and self.preset != "tiny":
                raise ValueError(f"{name} sets the CPU stand-in (--preset tiny); it has no effect on SIMPLER, drop it")
        if self.standin_start_jitter is not None and not 0 <= self.standin_start_jitter <= 0.1:
            raise ValueError(f"standin_start_jitter is the gripper's start jitter in metres, in [0, 0.1]; got "
                             f"{self.standin_start_jitter!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples as lists)."""
        values = json.loads(json.dumps(asdict(self)))
        # Left out when unset, so that configs written before these fields existed keep their hash.
        for name in ("real_world_table", "standin_start_jitter"):
            if values[name] is None:
                del values[name]
        if not values["artefacts"]:
            del values["artefacts"]
        if values["setting"] == VISUAL_MATCHING:
            del values["setting"]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EvalConfig:
        values = dict(values)
        values["policies"] = tuple(PolicySpec(**policy) for policy in values["policies"])
        for key in ("trials", "styles", "domains", "urdf_versions"):
            values[key] = tuple(values[key])
        if values.get("standin_camera") is not None:
            values["standin_camera"] = tuple(values["standin_camera"])
        return cls(**values)

    @property
    def config_hash(self) -> str:
        """A short hash of the config: equal configs (as JSON) give equal hashes."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def trial_list(self) -> list[Trial]:
        return [parse_trial(key) for key in self.trials]

    def variants(self) -> tuple[str, ...]:
        """The scene variants of the run's trials, in protocol order (none for visual matching)."""
        chosen = {trial.variant for trial in self.trial_list()}
        return tuple(name for name in SCENE_VARIANTS if name in chosen)

    def domain_styles(self) -> list[tuple[str, str]]:
        """The (domain, style) pairs of the run, in run order; a domain without a style has style ``""``."""
        pairs = [(domain, "") for domain in DOMAINS if domain in self.domains and domain not in STYLED_DOMAINS]
        styled = [domain for domain in STYLED_DOMAINS if domain in self.domains]
        return pairs + [(domain, style) for style in self.styles for domain in styled]

    def expected_episodes(self) -> int:
        return len(self.policies) * len(self.trials) * self.seeds * len(self.urdf_versions) * len(self.domain_styles())

    def env_options(self) -> dict[str, Any]:
        """Keyword arguments of `envs.make_edited_vector_env` that every domain of this run shares."""
        options: dict[str, Any] = dict(self.env_kwargs)
        if self.preset == "tiny":
            options["preset"] = "tiny"
        if self.setting != VISUAL_MATCHING:  # the trial a fresh env starts with comes from the setting
            options["setting"] = self.setting
        if self.edit_steps is not None:
            options["num_steps"] = self.edit_steps
        if self.edit_short_side is not None:
            options["short_side"] = self.edit_short_side
        if self.standin_camera is not None or self.standin_start_jitter is not None:
            from envs.standin import DrawerStandInConfig

            standin: dict[str, Any] = {}
            if self.standin_camera is not None:
                width, height = self.standin_camera
                focal_length = _SIMPLER_FOCAL_LENGTH * width / _SIMPLER_IMAGE_WIDTH
                standin.update(image_width=width, image_height=height, focal_length=focal_length)
            if self.standin_start_jitter is not None:
                standin["tcp_start_jitter"] = float(self.standin_start_jitter)
            options["config"] = DrawerStandInConfig(**standin)
        return options

    @property
    def backend(self) -> str:
        """The simulator: the CPU stand-in for the tiny preset, SIMPLER otherwise."""
        return preset_backend(self.preset)


@dataclass(frozen=True)
class ExecutionOptions:
    """How the episodes run; changing these never changes an episode's outcome."""

    num_envs: int = 8
    vectorization_mode: str = "async"  # simulators in subprocesses ("async") or in this process ("sync")
    device: str | None = None  # of the editing specialists; None: CUDA if available
    dtype: str | None = None  # of the editing specialists; None: float16 on CUDA, float32 on CPU
    torch_threads: int | None = None  # torch.set_num_threads for the run; None leaves torch's default
    progress: bool = True
    # Store the episodes that repeat their seed-0 twin exactly as its copies instead of running them
    # (evaluation.repeats); False runs every seed, e.g. to check that claim on a simulator.
    run_repeats_once: bool = True
    #: One MP4 per episode under RUN_DIR/videos (`evaluation.videos`); only what the run leaves behind changes.
    videos: bool = False

    def __post_init__(self) -> None:
        if self.num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {self.num_envs}")
        if self.vectorization_mode not in ("async", "sync"):
            raise ValueError(f"vectorization_mode must be 'async' or 'sync', got {self.vectorization_mode!r}")


def select_trials(selection: list[str] | None, setting: str = VISUAL_MATCHING,
                  variants: list[str] | None = None) -> tuple[str, ...]:
    """Trial keys from a selection of trial keys (``OpenTopDrawer/a0``) and task names (all nine poses);
    None or ``["all"]``: the 54 trials of the protocol. Order and duplicates follow the protocol.

    ``setting`` variant aggregation: the 378 trials of `envs.protocol.variant_aggregation_trials`; a task name
    selects its nine grid poses in every variant, a key is ``OpenTopDrawer/base/x0.65_y-0.20``; ``variants``
    keeps only those scene variants (None or ``["all"]``: all seven)."""
    if variants and setting != VARIANT_AGGREGATION:
        raise ValueError(f"scene variants belong to {VARIANT_AGGREGATION}; visual matching has none")
    protocol = (variant_aggregation_trials(select_variants(variants)) if setting == VARIANT_AGGREGATION
                else setting_trials(setting))
    if not selection or selection == ["all"]:
        return tuple(trial.key for trial in protocol)
    chosen: set[str] = set()
    for item in selection:
        if "/" in item:
            trial = parse_trial(item)
            if setting == VARIANT_AGGREGATION and trial.setting != VARIANT_AGGREGATION:
                raise ValueError(f"{item!r} is a visual-matching trial; a {VARIANT_AGGREGATION} trial is written "
                                 f"'Task/variant/grid pose', e.g. 'OpenTopDrawer/base/{next(iter(VARIANT_POSES))}'")
            chosen.add(trial.key)
        else:
            task = DrawerTask.parse(item)
            chosen.update(trial.key for trial in protocol if trial.task == task)
    keys = tuple(trial.key for trial in protocol if trial.key in chosen)
    if not keys and setting == VARIANT_AGGREGATION:
        raise ValueError(f"the trial selection {selection} has no trial in the scene variants {variants}")
    return keys


def select_variants(selection: list[str] | None) -> tuple[str, ...]:
    """Variant-aggregation scene variants in protocol order; None or ``["all"]``: all seven."""
    if not selection or selection == ["all"]:
        return tuple(SCENE_VARIANTS)
    chosen = {check_variant(name) for name in selection}
    return tuple(name for name in SCENE_VARIANTS if name in chosen)


def select_urdf_versions(selection: list[str] | None) -> tuple[str, ...]:
    """URDF version names in the protocol's order; None: the default (the paper's one), ``["all"]``: SIMPLER's
    four. ``None``/``none`` names SIMPLER's original URDF."""
    if not selection:
        return (DEFAULT_URDF_VERSION,)
    if selection == ["all"]:
        return URDF_VERSIONS
    chosen = {check_urdf_version(name) for name in selection}
    return tuple(name for name in URDF_VERSIONS if name in chosen)


def spread_trials(poses_per_task: int) -> tuple[str, ...]:
    """A subset of the protocol: every task at ``poses_per_task`` start poses, the poses spread over
    the grid and shifted from task to task, so that together the tasks cover the poses evenly."""
    poses = list(ROBOT_POSES)
    step = max(len(poses) // poses_per_task, 1)
    keys = {
        Trial(task, poses[(index * 2 + k * step) % len(poses)]).key
        for index, task in enumerate(ALL_TASKS)
        for k in range(poses_per_task)
    }
    return tuple(trial.key for trial in protocol_trials() if trial.key in keys)


def graded_stand_ins(names: list[str] | None = None) -> tuple[PolicySpec, ...]:
    """The scripted policies of graded skill as stand-ins for the RT-1 checkpoints: the most skilled
    stands in for the checkpoint with the best real-world average, and so on down."""
    table = real_world_success()
    checkpoints = sorted(
        (name for name, entry in table.items() if entry.checkpoint is not None),
        key=lambda name: table[name].average,
        reverse=True,
    )
    ranked = sorted(GRADED_SKILLS.items(), key=lambda item: item[1], reverse=True)
    stands_in_for = {name: real for (name, _), real in zip(ranked, checkpoints)}
    chosen = list(GRADED_SKILLS) if names is None else names
    unknown = [name for name in chosen if name not in GRADED_SKILLS]
    if unknown:
        raise ValueError(f"unknown scripted policies {unknown}; choose from {list(GRADED_SKILLS)}")
    return tuple(
        PolicySpec(name, SCRIPTED, real_world_name=stands_in_for.get(name), skill=GRADED_SKILLS[name])
        for name in chosen
    )


def cnn_policies(checkpoints: list[str | Path], real_world_table: str | Path | None = None) -> tuple[PolicySpec, ...]:
    """CNN policy checkpoint folders (`policies.cnn`) as policies, named by folder and matched to the rows of
    ``real_world_table`` (by its ``checkpoint`` entries) where one is given."""
    real_names = checkpoint_policy_names(real_world_table) if real_world_table is not None else {}
    specs = []
    for checkpoint in checkpoints:
        folder = Path(checkpoint).expanduser().resolve()
        specs.append(PolicySpec(folder.name, CNN, real_world_name=real_names.get(folder.name), checkpoint=str(folder)))
    return tuple(specs)


def rt1_policies(checkpoints: list[str | Path]) -> tuple[PolicySpec, ...]:
    """RT-1 checkpoint folders as policies, named by folder and matched to the real-world table."""
    real_names = checkpoint_policy_names()
    specs = []
    for checkpoint in checkpoints:
        folder = Path(checkpoint).expanduser().resolve()
        specs.append(PolicySpec(folder.name, RT1, real_world_name=real_names.get(folder.name), checkpoint=str(folder)))
    return tuple(specs)


def default_checkpoint_root() -> Path:
    """``$SIM2REAL_EDIT_HOME/checkpoints``, else ``~/.cache/sim2real_edit/checkpoints``."""
    home = os.environ.get(HOME_ENV_VAR)
    return (Path(home).expanduser() if home else default_home()) / "checkpoints"


def full_config(**overrides: Any) -> EvalConfig:
    """The paper's protocol: the four published RT-1 checkpoints (under `default_checkpoint_root`) x 54 trials
    x 3 seeds x 7 styles, plus the unedited simulator, both edited variants. ``setting=VARIANT_AGGREGATION``:
    SIMPLER's variant aggregation instead (its 378 trials and original robot URDF, unless given)."""
    if "policies" not in overrides:
        overrides["policies"] = published_rt1_policies()
    if overrides.get("setting") == VARIANT_AGGREGATION:
        overrides.setdefault("trials", select_trials(None, VARIANT_AGGREGATION))
        overrides.setdefault("urdf_versions", (VARIANT_AGGREGATION_URDF_VERSION,))
    return EvalConfig(**{"preset": "full", **overrides})


def published_rt1_policies(root: str | Path | None = None) -> tuple[PolicySpec, ...]:
    """The four published RT-1 checkpoints, as folders under ``root`` (default `default_checkpoint_root`)."""
    from policies.rt1 import PUBLISHED_CHECKPOINTS

    root = Path(root) if root is not None else default_checkpoint_root()
    return rt1_policies([root / name for name in PUBLISHED_CHECKPOINTS])


#: The tiny preset's sizes, measured to finish in a few minutes on a 2-core CPU (see README).
TINY_DEFAULTS: dict[str, Any] = {
    "trials": spread_trials(2),
    "seeds": 1,
    "styles": ("wood",),
    "max_episode_steps": 48,
    "edit_steps": 1,
    "edit_short_side": 32,
    "standin_camera": (160, 128),
}
# Tiny models gain nothing from intra-op threads, and simulators in subprocesses only add overhead on a CPU.
TINY_EXECUTION = ExecutionOptions(num_envs=12, vectorization_mode="sync", torch_threads=1)


def tiny_config(**overrides: Any) -> EvalConfig:
    """The CPU stand-in env with the tiny preset's specialist and the graded scripted stand-ins (which read the
    stand-in's state, so editing cannot change their results), on a small slice of the protocol: a quick check of
    the machinery. The miniature experiment (`miniature.experiment.Miniature.eval_config`) starts from this."""
    values: dict[str, Any] = {"preset": "tiny", "policies": graded_stand_ins(), **TINY_DEFAULTS}
    values.update(overrides)
    return EvalConfig(**values)
