"""The miniature's build and evaluation config (each piece's home: the map in `miniature/__init__.py`).

`build_miniature()` builds (or finds) the CNN policy family and its real world's table, the tiny base, the
specialist and its random-preference control for every training seed, and their held-out scorecard, in
`<data root>/tiny`, skipping whatever is already built with the same settings; `Miniature.eval_config()` is the
tiny preset's evaluation of them and `write_miniature_summary()` the run's `miniature.json` and side-by-side
figure. Another material's policies and scorecard are cached beside white marble's (``policies-<material>``),
its specialists in its style's folders.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from envs.appearance import REAL_CABINET_STYLE, real_material_style
from envs.protocol import protocol_trials
from envs.tiny_base import TINY_CAMERA, ensure_tiny_base, stand_in_frames_with_parts
from evaluation.config import (
    CEILING,
    COLOUR_TRANSFER,
    EDITED,
    EDITED_COMPOSITED,
    EDITED_CROP,
    FLOOR,
    GAIN_ORACLE,
    REAL,
    UNEDITED,
    EvalConfig,
    ExecutionOptions,
    cnn_policies,
    spread_trials,
    tiny_config,
)
from evaluation.results import write_text_atomically
from sim2real_edit.components import TINY_TRAINED_BASE, tiny_trained_base_folder
from sim2real_edit.styles import StyleRegistry, preset_specialist_dir, tiny_home
from sim2real_edit.tiny_base import TinyBaseConfig, TinyBaseReport, read_tiny_base_report

from .policy_family import (
    TinyPolicies,
    TinyPolicySettings,
    build_tiny_policies,
    real_material_env_kwargs,
)
from .scorecard import (
    EditScorecard,
    ScorecardSplit,
    identity_edit,
    score_edits,
    specialist_edit,
)

logger = logging.getLogger(__name__)

#: Each policy's episodes of a domain (54 trials x 1 seed) run as one batch: one batched edit per step.
MINIATURE_EXECUTION = ExecutionOptions(num_envs=54, vectorization_mode="sync", torch_threads=2)
SIDE_BY_SIDE = "side_by_side.png"
CONTROL_SUFFIX = "-random-preferences"
STAMP_NAME = "miniature_stamp.json"
SCORECARD_VERSION = 3  # raised when `EditScorecard` changes, so that a cached scorecard is computed again
#: Every domain of the experiment: the plain simulator, the paper's whole-frame edit, the edit composited into
#: the cabinet mask, the crop edit, the skeptic's colour transfer, and the instruments measured against the real
#: world (the gain oracle, the ceiling, the floor) beside the real world itself.
MINIATURE_DOMAINS = (UNEDITED, EDITED, EDITED_COMPOSITED, EDITED_CROP, COLOUR_TRANSFER, GAIN_ORACLE, CEILING, FLOOR,
                     REAL)
#: The margin of the cabinet's crop box (of its size, every side): the crop domain's, and the specialist's
#: training and scorecard frames are such crops.
CROP_MARGIN = 0.1
#: The domains whose frames the specialist edits: without them the miniature needs no base and no specialist.
SPECIALIST_DOMAINS = (EDITED, EDITED_COMPOSITED, EDITED_CROP)


@dataclass(frozen=True)
class MiniatureSettings:
    """Everything the miniature builds and how it is evaluated; the defaults are the tiny preset's."""

    base: TinyBaseConfig = field(default_factory=TinyBaseConfig)
    base_frames: int = 800
    policies: TinyPolicySettings = field(default_factory=TinyPolicySettings)
    specialist: dict[str, Any] = field(default_factory=dict)  # overrides of `d3po.tiny_config`
    specialist_frames: int = 256  # simulator frames (cabinet crops, exact masks) the specialist trains on
    training_seeds: tuple[int, ...] = (0, 1, 2)  # specialist and control are each trained once per seed
    control: bool = True  # also train the random-preference control
    scorecard_frames: int = 24  # held-out simulator frames per split part (validation, test) ...
    scorecard_rounds: int = 4  # ... each edited with this many rounds of held-out noise seeds
    # The real world's trials (all 54) and reset seeds: every domain runs the same, so each sim episode has its
    # real twin. The episodes of the first training seed's specialist are evaluated.
    trials: tuple[str, ...] = field(default_factory=lambda: tuple(trial.key for trial in protocol_trials()))
    seeds: int = 1
    domains: tuple[str, ...] = MINIATURE_DOMAINS
    max_episode_steps: int = 48
    torch_threads: int = 2
    #: The real world's cabinet, a style of configs/styles.yaml: the policies are trained and chosen in that real
    #: world, the specialist and control trained for that style's exemplars, and every real-world domain shows it.
    material: str = REAL_CABINET_STYLE

    def __post_init__(self) -> None:
        object.__setattr__(self, "material", real_material_style(self.material))
        object.__setattr__(self, "policies", replace(self.policies, material=self.material))

    @property
    def style(self) -> str:
        return self.material

    def _material_suffix(self) -> str:
        """Names of another material's cached pieces end in ``-<material>``; white marble's keep the names of
        before, so switching material never deletes or rebuilds the white-marble build."""
        return "" if self.material == REAL_CABINET_STYLE else f"-{self.material}"

    def policies_folder(self) -> Path:
        return tiny_home() / f"policies{self._material_suffix()}"

    def scorecard_cache(self) -> Path:
        return tiny_home() / "miniature" / f"scorecard{self._material_suffix()}.json"

    @property
    def needs_specialist(self) -> bool:
        return any(domain in SPECIALIST_DOMAINS for domain in self.domains)

    @classmethod
    def small(cls) -> MiniatureSettings:
        """Minutes-sized pieces for tests. The base is good enough to learn on (about 30 dB VAE and 23 dB edit
        PSNR against 33 and 26.5 dB of the full one); the rest runs every step of the pipeline, not to quality."""
        return cls(
            base=TinyBaseConfig(vae_steps=150, unet_steps=600, unet_learning_rate=2e-3),
            base_frames=160,
            policies=TinyPolicySettings.small(),
            specialist={"samples_per_step": 8, "sample_batch_size": 8, "train_batch_size": 8, "optimizer_steps": 2},
            specialist_frames=16,
            training_seeds=(0,),
            control=False,
            scorecard_frames=4,
            scorecard_rounds=2,
            trials=spread_trials(1),
            seeds=1,
            max_episode_steps=12,
            torch_threads=2,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON values; white marble is left out (as in `TinyPolicySettings.to_dict`)."""
        values = json.loads(json.dumps(asdict(self)))
        values["policies"] = self.policies.to_dict()
        if values["material"] == REAL_CABINET_STYLE:
            del values["material"]
        return values


@dataclass
class Miniature:
    """The built pieces, where they are, and what they measured."""

    settings: MiniatureSettings
    base: Path | None  # None (and no specialists) where no domain edits with the specialist
    base_report: TinyBaseReport | None
    policies: TinyPolicies
    specialists: list[Path]  # one per training seed; the first is the one the evaluation's envs load
    controls: list[Path]  # the random-preference controls, one per training seed (none if not built)
    scorecards: list[EditScorecard]
    seconds: dict[str, float]

    @property
    def specialist(self) -> Path | None:
        return self.specialists[0] if self.specialists else None

    def eval_config(self, **overrides: Any) -> EvalConfig:
        """The tiny preset's evaluation: the CNN policy family in every domain of the experiment, on the real
        world's trials and reset seeds (paired episodes)."""
        values: dict[str, Any] = {
            "policies": cnn_policies(self.policies.checkpoints, real_world_table=self.policies.table),
            "real_world_table": str(self.policies.table),
            "styles": (self.settings.style,),
            "domains": self.settings.domains,
            "trials": self.settings.trials,
            "seeds": self.settings.seeds,
            "max_episode_steps": self.settings.max_episode_steps,
            "standin_camera": TINY_CAMERA,
            "artefacts": self.artefacts(),
        }
        material = real_material_env_kwargs(self.settings.material)
        if material:  # white marble's configs stay those of before the material was a choice
            values["env_kwargs"] = material
        if self.specialist is not None:
            trained = self.specialist_config()
            values.update(edit_steps=trained["num_denoising_steps"], edit_short_side=trained["short_side"])
        values.update(overrides)
        return tiny_config(**values)

    def specialist_config(self) -> dict[str, Any]:
        return json.loads((self.specialist / "train_config.json").read_text())

    def artefacts(self) -> dict[str, str]:
        """Content stamps of what the episodes depend on: a rebuilt piece makes another evaluation config."""
        stamps = {
            "policy_selection": _file_digest(self.policies.folder / "selection.json"),
            "policies": _file_digest(self.policies.folder / "settings.json"),
            "real_world_table": _file_digest(self.policies.table),
        }
        if self.specialist is not None:
            stamps.update(tiny_base=self.base_report.config_hash, specialist=_read_stamp(self.specialist)["weights"])
        return stamps

    def to_json(self) -> dict[str, Any]:
        real = self.policies.real_world()
        return {
            "what": ("The paper's experiment in miniature, on a CPU, offline: a tiny InstructPix2Pix base trained to "
                     "reproduce its input, CNN policies trained by behaviour cloning in a miniature real world "
                     f"(the stand-in with a {self.settings.material.replace('_', '-')} cabinet, warm light and "
                     "camera noise), and a specialist "
                     "trained by D3PO from analytic judges on simulator frames only. It tests the method's "
                     "mechanics end to end; it is not SIMPLER, RT-1 or a real robot."),
            "settings": self.settings.to_dict(),
            "base": asdict(self.base_report) if self.base_report else None,
            "real_world": {name: {"open": rate.open, "close": rate.close, "average": rate.average,
                                  "checkpoint": rate.checkpoint} for name, rate in real.items()},
            "specialist": {"folder": str(self.specialist), "config": self.specialist_config(),
                           "training_seeds": list(self.settings.training_seeds),
                           "folders": [str(folder) for folder in self.specialists],
                           "controls": [str(folder) for folder in self.controls]} if self.specialist else None,
            "policy_selection": json.loads((self.policies.folder / "selection.json").read_text()),
            "scorecard": [card.to_dict() for card in self.scorecards],
            "seconds": self.seconds,
        }


def build_miniature(settings: MiniatureSettings | None = None, progress: bool = True) -> Miniature:
    """Builds (or finds) the tiny base, the policies and their real-world table, the specialist, its control
    and their scorecard, in `<data root>/tiny`. Each piece is rebuilt only when missing or built otherwise."""
    import torch

    settings = settings or MiniatureSettings()
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.torch_threads)
    seconds: dict[str, float] = {}
    try:
        started = time.perf_counter()
        policies_folder = settings.policies_folder()
        if (policies_folder / "settings.json").is_file() and json.loads(
                (policies_folder / "settings.json").read_text()) != settings.policies.to_dict():
            logger.warning("the tiny policies in %s were built with other settings; building them again",
                           policies_folder)
            shutil.rmtree(policies_folder)
        policies = build_tiny_policies(policies_folder, settings.policies, progress, workers=settings.torch_threads)
        torch.set_num_threads(settings.torch_threads)
        seconds["policies"] = time.perf_counter() - started

        if not settings.needs_specialist:
            logger.info("no domain of %s edits with the specialist: the tiny base and specialist are not built",
                        settings.domains)
            return Miniature(settings, None, None, policies, [], [], [], seconds)
        started = time.perf_counter()
        base = ensure_tiny_base(tiny_trained_base_folder(), settings.base, settings.base_frames, progress)
        seconds["base"] = time.perf_counter() - started
        base_report = read_tiny_base_report(base)
        exemplars = StyleRegistry.load().get(settings.style).exemplars()
        frames = _specialist_frames(settings)
        started = time.perf_counter()
        specialists = [_ensure_specialist(settings, base_report, frames, exemplars, progress, seed=seed)
                       for seed in settings.training_seeds]
        controls = [_ensure_specialist(settings, base_report, frames, exemplars, progress, preference="random",
                                       seed=seed) for seed in settings.training_seeds] if settings.control else []
        seconds["specialist"] = time.perf_counter() - started

        started = time.perf_counter()
        scorecards = _scorecards(settings, base_report, specialists, controls, exemplars)
        seconds["scorecard"] = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    return Miniature(settings, base, base_report, policies, specialists, controls, scorecards, seconds)


def _specialist_frames(settings: MiniatureSettings):
    from sim2real_edit.frames import TrainingFrames

    parts = stand_in_frames_with_parts(settings.specialist_frames, seed=settings.base.seed + 20_000,
                                       crop_margin=CROP_MARGIN)
    count = len(parts.frames)
    return TrainingFrames(parts.frames, parts.cabinet_masks, np.ones(count, bool), [f"{i:04d}" for i in range(count)])


def _ensure_specialist(settings, base_report: TinyBaseReport, frames, exemplars, progress: bool,
                       preference: str = "judges", seed: int = 0) -> Path:
    """The trained specialist (or control) folder of one training seed, trained first unless it holds one of
    these settings. Seed 0 lives in the style's tiny specialist folder (the one the edited envs load)."""
    from sim2real_edit.d3po import tiny_config, train

    folder = preset_specialist_dir(settings.style, "tiny")
    suffix = (CONTROL_SUFFIX if preference != "judges" else "") + (f"-seed{seed}" if seed else "")
    folder = folder.with_name(folder.name + suffix)
    config = tiny_config(style=settings.style, output_dir=str(folder), preference=preference, seed=seed,
                         **settings.specialist)
    wanted = {"train_config": config.hash(), "base": base_report.config_hash, "steps": config.optimizer_steps}
    stamp = _read_stamp(folder)
    if stamp is not None and all(stamp.get(key) == value for key, value in wanted.items()):
        return folder
    # a run killed after a checkpointed step: continue it
    resume = stamp is None and any((folder / "checkpoints").glob("step-*/state.json"))
    what = "control (random preferences)" if preference == "random" else "specialist"
    logger.info("training the tiny %s %s (training seed %d) in %s", settings.style, what, seed, folder)
    try:
        result = train(config, frames=frames, exemplars=exemplars, resume=resume, overwrite=not resume,
                       progress=progress)
    except ValueError as error:
        if not resume:
            raise
        logger.warning("could not resume the run in %s (%s); training it again", folder, error)
        result = train(config, frames=frames, exemplars=exemplars, overwrite=True, progress=progress)
    weights = _file_digest(result.output_dir / "specialist_weights.safetensors")
    write_text_atomically(folder / STAMP_NAME, json.dumps({**wanted, "weights": weights}, indent=2) + "\n")
    return folder


def _scorecards(settings: MiniatureSettings, base_report: TinyBaseReport, specialists: list[Path],
                controls: list[Path], exemplars: list[np.ndarray]) -> list[EditScorecard]:
    """Identity, untrained, and every training seed's control and trained specialist, on both parts of the
    held-out split (cabinet crops, as the crop domain edits them): choices are made on the validation part
    only, the test part is reported (cached)."""
    from sim2real_edit.feedback import Feedback, FeedbackConfig
    from sim2real_edit.specialist import EditSpecialist

    cache = settings.scorecard_cache()
    key = {"version": SCORECARD_VERSION, "specialists": [_read_stamp(folder) for folder in specialists],
           "controls": [_read_stamp(folder) for folder in controls],
           "frames": settings.scorecard_frames, "rounds": settings.scorecard_rounds}
    if cache.is_file():
        stored = json.loads(cache.read_text())
        if stored.get("key") == key:
            return [EditScorecard.from_dict(card) for card in stored["scorecards"]]
    config = json.loads((specialists[0] / "train_config.json").read_text())
    steps = config["num_denoising_steps"]
    feedback = Feedback.from_config(FeedbackConfig(**config["feedback"]), device="cpu")
    first = EditSpecialist.from_pretrained(specialist=specialists[0])
    instruction = first.config.instruction
    methods = [("identity", identity_edit),
               ("untrained", specialist_edit(EditSpecialist.from_pretrained(base=TINY_TRAINED_BASE), instruction,
                                             steps))]
    for seed, folder in zip(settings.training_seeds, controls):
        methods.append((f"random preferences (seed {seed})",
                        specialist_edit(EditSpecialist.from_pretrained(specialist=folder), instruction, steps)))
    for seed, folder in zip(settings.training_seeds, specialists):
        model = first if folder == specialists[0] else EditSpecialist.from_pretrained(specialist=folder)
        methods.append((f"trained (seed {seed})", specialist_edit(model, instruction, steps)))
    split = ScorecardSplit.for_miniature(settings.base.seed, settings.scorecard_frames)
    cards = []
    for part in (split.validation, split.test):
        parts = stand_in_frames_with_parts(part.frame_count, seed=part.frame_seed, crop_margin=CROP_MARGIN)
        cards += [score_edits(name, edit, parts.frames, parts.cabinet_masks, exemplars, feedback,
                              settings.scorecard_rounds, part=part, material_masks=parts.material_masks)
                  for name, edit in methods]
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(cache, json.dumps({"key": key, "scorecards": [c.to_dict() for c in cards]}, indent=2))
    return cards


def _read_stamp(folder: Path | None) -> dict | None:
    path = folder / STAMP_NAME if folder is not None else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else None


def _file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def write_side_by_side(miniature: Miniature, path: Path, poses: tuple[str, ...] = ("a0", "b1", "c2"),
                       task: str = "OpenTopDrawer") -> Path:
    """Start frames of `task` at `poses`: the simulator, its edit (whole frame), the edit composited into the
    cabinet's exact mask, and the miniature real world - rows of the same scenes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from envs.edited import EditSettings, composite, load_editor
    from envs.standin import DrawerStandIn
    from envs.tiny_base import tiny_camera_config

    trained = miniature.specialist_config()  # the evaluation's edits: the specialist's steps and size
    settings = EditSettings(num_steps=trained["num_denoising_steps"], short_side=trained["short_side"],
                            composite=False)  # whole-frame edits; the composited row is made from them below
    editor = load_editor(miniature.settings.style, preset="tiny", specialist=miniature.specialist, settings=settings)
    rows = {"simulator": [], "edited": [], "edited+composited": [], "real world": []}
    for index, pose in enumerate(poses):
        sim = DrawerStandIn(task, pose, config=tiny_camera_config())
        real = DrawerStandIn(task, pose, config=tiny_camera_config(), appearance="real",
                             real_material=miniature.settings.material)
        frame = sim.reset(seed=index)[0]["image"]["overhead_camera"]["rgb"]
        mask = sim.cabinet_mask()
        whole = editor.edit(frame[None], [index])[0]
        rows["simulator"].append(frame)
        rows["edited"].append(whole)
        rows["edited+composited"].append(composite(frame[None], whole[None], mask[None], editor.settings.feather)[0])
        rows["real world"].append(real.reset(seed=index)[0]["image"]["overhead_camera"]["rgb"])
    figure, axes = plt.subplots(len(rows), len(poses), figsize=(2.6 * len(poses), 2.2 * len(rows)))
    for row, (label, images) in enumerate(rows.items()):
        for column, image in enumerate(images):
            axis = axes[row, column]
            axis.imshow(image)
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(label)
            if row == 0:
                axis.set_title(f"{task} / {poses[column]}", fontsize=9)
    figure.suptitle("miniature (CPU stand-in, not SIMPLER): the same start frames", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


#: The real world's episodes of a random third of the trials (a third of each task's, drawn with a fixed seed: 18
#: of 54) are given to the report as the few paired real trials of a prediction-powered estimate
#: (`evaluation.real_episodes`), so it can say how many real trials each simulator saves. The paired trials must
#: be a random sample of the sim's trials for the estimate to be unbiased: a fixed pattern (every third pose)
#: would pick one start pose of each row.
REAL_TRIAL_SHARE = 1 / 3
REAL_TRIAL_SEED = 0


def real_trial_sample(trials: list, seed: int = REAL_TRIAL_SEED) -> list:
    """A third of each task's trials, drawn at random with ``seed`` (the run's: `REAL_TRIAL_SEED`), in protocol
    order."""
    rng = np.random.default_rng(seed)
    chosen = []
    for task in dict.fromkeys(trial.task.name for trial in trials):
        of_task = [trial for trial in trials if trial.task.name == task]
        count = max(1, round(len(of_task) * REAL_TRIAL_SHARE))
        chosen += [of_task[i] for i in sorted(rng.choice(len(of_task), size=count, replace=False))]
    return [trial for trial in trials if trial in chosen]


def write_real_episode_sample(run_dir: Path) -> Path | None:
    """`RUN_DIR/real_episodes.csv` from the run's real-world episodes of `real_trial_sample`'s trials; None
    (nothing written) if the run has no real-world domain or misses any of those episodes."""
    import csv
    import io

    from evaluation.config import REAL
    from evaluation.real_episodes import CSV_COLUMNS, REAL_EPISODES_CSV
    from evaluation.results import ResultStore

    store = ResultStore.open(run_dir)
    config = store.config
    if REAL not in config.domains:
        return None
    chosen = {trial.key for trial in real_trial_sample(config.trial_list())}
    real = [e for e in store.episodes() if e.domain == REAL and f"{e.task}/{e.pose}" in chosen]
    if len(real) != len(chosen) * len(config.policies) * config.seeds * len(config.urdf_versions):
        return None
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows((e.policy, e.task, e.pose, int(e.success)) for e in real)
    path = Path(run_dir) / REAL_EPISODES_CSV
    write_text_atomically(path, text.getvalue())
    return path


def write_miniature_summary(miniature: Miniature, run_dir: Path) -> Path:
    """`RUN_DIR/miniature.json` (read by the report), the side-by-side figure in `RUN_DIR/plots` and the real
    world's sample of paired real episodes (`write_real_episode_sample`)."""
    from evaluation.report import MINIATURE_JSON, PLOTS_DIR

    write_real_episode_sample(run_dir)

    summary = miniature.to_json()
    if miniature.specialist is not None:
        figure = write_side_by_side(miniature, run_dir / PLOTS_DIR / SIDE_BY_SIDE)
        summary["figure"] = str(figure.relative_to(run_dir))
    write_text_atomically(run_dir / MINIATURE_JSON, json.dumps(summary, indent=2) + "\n")
    return run_dir / MINIATURE_JSON


