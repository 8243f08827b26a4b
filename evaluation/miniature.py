"""The paper's experiment in miniature, offline, on a CPU: does a better specialist give a better MMRV?

Every piece is built here from nothing that needs a download, and cached under `<data root>/tiny`:

1. **the tiny base** (`sim2real_edit.tiny_base`): InstructPix2Pix at toy width, trained on simulator frames to
   reproduce its input (so an untrained specialist edits nothing);
2. **the miniature real world** (`envs.appearance`): the stand-in with a white-marble cabinet, warm light and
   camera noise; it was designed before any policy saw it and never tuned to them;
3. **policies that see** (`policies.cnn`): small CNNs trained by behaviour cloning from the scripted expert on
   real-world frames, four checkpoints of one run; their success in the real world is that world's table;
4. **the specialist** (`sim2real_edit.d3po`, `tiny_config`): D3PO from analytic judges on simulator frames with
   exact masks and the style's ~5 exemplars; it never sees a real-world frame. A control trained the same way
   on random preferences, the untrained specialist and the identity are scored beside it on held-out frames
   and noise seeds (`sim2real_edit.scorecard`);
5. **the evaluation** (`scripts/eval_policies.py --preset tiny`): the CNN policies in the plain simulator and
   in both edited simulators, over several seeds, against the real world's table.

`build_miniature()` does 1-4, skipping whatever is already built with the same settings.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from envs.appearance import REAL_CABINET_STYLE
from envs.tiny_base import TINY_CAMERA, ensure_tiny_base, stand_in_frames
from sim2real_edit.components import TINY_TRAINED_BASE, tiny_trained_base_folder
from sim2real_edit.scorecard import EditScorecard, identity_edit, score_edits, specialist_edit
from sim2real_edit.styles import StyleRegistry, preset_specialist_dir, tiny_home
from sim2real_edit.tiny_base import TinyBaseConfig, TinyBaseReport, read_tiny_base_report

from .config import EvalConfig, ExecutionOptions, cnn_policies, spread_trials, tiny_config
from .miniature_real_world import TinyPolicies, TinyPolicySettings, build_tiny_policies
from .results import write_text_atomically

logger = logging.getLogger(__name__)

MINIATURE_JSON = "miniature.json"
#: Each policy's episodes of a domain (6 trials x 3 seeds) run as one batch: one batched edit per step.
MINIATURE_EXECUTION = ExecutionOptions(num_envs=18, vectorization_mode="sync", torch_threads=2)
SIDE_BY_SIDE = "side_by_side.png"
CONTROL_SUFFIX = "-random-preferences"
STAMP_NAME = "miniature_stamp.json"
SCORECARD_VERSION = 2  # raised when `EditScorecard` changes, so that a cached scorecard is computed again


@dataclass(frozen=True)
class MiniatureSettings:
    """Everything the miniature builds and how it is evaluated; the defaults are the tiny preset's."""

    base: TinyBaseConfig = field(default_factory=TinyBaseConfig)
    base_frames: int = 800
    policies: TinyPolicySettings = field(default_factory=TinyPolicySettings)
    specialist: dict[str, Any] = field(default_factory=dict)  # overrides of `d3po.tiny_config`
    specialist_frames: int = 256  # simulator frames (with exact masks) the specialist trains on
    control: bool = True  # also train the random-preference control
    scorecard_frames: int = 24  # held-out simulator frames ...
    scorecard_rounds: int = 4  # ... each edited with this many rounds of held-out noise seeds
    # 6 trials (each task at one pose, spread over the grid) x 3 seeds: the edited domains take most of the time.
    trials: tuple[str, ...] = field(default_factory=lambda: spread_trials(1))
    seeds: int = 3
    max_episode_steps: int = 48
    torch_threads: int = 2

    @property
    def style(self) -> str:
        return REAL_CABINET_STYLE

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
            control=False,
            scorecard_frames=4,
            scorecard_rounds=2,
            trials=spread_trials(1),
            seeds=2,
            max_episode_steps=12,
            torch_threads=2,
        )

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


@dataclass
class Miniature:
    """The built pieces, where they are, and what they measured."""

    settings: MiniatureSettings
    base: Path
    base_report: TinyBaseReport
    policies: TinyPolicies
    specialist: Path
    control: Path | None
    scorecards: list[EditScorecard]
    seconds: dict[str, float]

    def eval_config(self, **overrides: Any) -> EvalConfig:
        """The tiny preset's evaluation: the CNN checkpoints in the plain and both edited simulators."""
        trained = self.specialist_config()
        values: dict[str, Any] = {
            "policies": cnn_policies(self.policies.checkpoints, real_world_table=self.policies.table),
            "real_world_table": str(self.policies.table),
            "styles": (self.settings.style,),
            "trials": self.settings.trials,
            "seeds": self.settings.seeds,
            "max_episode_steps": self.settings.max_episode_steps,
            "edit_steps": trained["num_denoising_steps"],
            "edit_short_side": trained["short_side"],
            "standin_camera": TINY_CAMERA,
            "artefacts": self.artefacts(),
        }
        values.update(overrides)
        return tiny_config(**values)

    def specialist_config(self) -> dict[str, Any]:
        return json.loads((self.specialist / "train_config.json").read_text())

    def artefacts(self) -> dict[str, str]:
        """Content stamps of what the episodes depend on: a rebuilt piece makes another evaluation config."""
        return {
            "tiny_base": self.base_report.config_hash,
            "specialist": _read_stamp(self.specialist)["weights"],
            "policies": _file_digest(self.policies.folder / "settings.json"),
            "real_world_table": _file_digest(self.policies.table),
        }

    def to_json(self) -> dict[str, Any]:
        real = self.policies.real_world()
        return {
            "what": ("The paper's experiment in miniature, on a CPU, offline: a tiny InstructPix2Pix base trained to "
                     "reproduce its input, CNN policies trained by behaviour cloning in a miniature real world "
                     "(the stand-in with a white-marble cabinet, warm light and camera noise), and a specialist "
                     "trained by D3PO from analytic judges on simulator frames only. It tests the method's "
                     "mechanics end to end; it is not SIMPLER, RT-1 or a real robot."),
            "settings": self.settings.to_dict(),
            "base": asdict(self.base_report),
            "real_world": {name: {"open": rate.open, "close": rate.close, "average": rate.average,
                                  "checkpoint": rate.checkpoint} for name, rate in real.items()},
            "specialist": {"folder": str(self.specialist), "config": self.specialist_config(),
                           "control": str(self.control) if self.control else None},
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
        base = ensure_tiny_base(tiny_trained_base_folder(), settings.base, settings.base_frames, progress)
        seconds["base"] = time.perf_counter() - started

        started = time.perf_counter()
        policies_folder = tiny_home() / "policies"
        if (policies_folder / "settings.json").is_file() and json.loads(
                (policies_folder / "settings.json").read_text()) != settings.policies.to_dict():
            logger.warning("the tiny policies in %s were built with other settings; building them again",
                           policies_folder)
            shutil.rmtree(policies_folder)
        policies = build_tiny_policies(policies_folder, settings.policies, progress, workers=settings.torch_threads)
        torch.set_num_threads(settings.torch_threads)
        seconds["policies"] = time.perf_counter() - started

        base_report = read_tiny_base_report(base)
        exemplars = StyleRegistry.load().get(settings.style).exemplars()
        frames = _specialist_frames(settings)
        started = time.perf_counter()
        specialist = _ensure_specialist(settings, base_report, frames, exemplars, progress)
        control = None
        if settings.control:
            control = _ensure_specialist(settings, base_report, frames, exemplars, progress, preference="random")
        seconds["specialist"] = time.perf_counter() - started

        started = time.perf_counter()
        scorecards = _scorecards(settings, base_report, specialist, control, exemplars)
        seconds["scorecard"] = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    return Miniature(settings, base, base_report, policies, specialist, control, scorecards, seconds)


def _specialist_frames(settings: MiniatureSettings):
    from sim2real_edit.frames import TrainingFrames

    frames, masks = stand_in_frames(settings.specialist_frames, seed=settings.base.seed + 20_000)
    return TrainingFrames(frames, masks, np.ones(len(frames), bool), [f"{i:04d}" for i in range(len(frames))])


def _ensure_specialist(settings, base_report: TinyBaseReport, frames, exemplars, progress: bool,
                       preference: str = "judges") -> Path:
    """The trained specialist (or control) folder, trained first unless it holds one of these settings."""
    from sim2real_edit.d3po import tiny_config, train

    folder = preset_specialist_dir(settings.style, "tiny")
    if preference != "judges":
        folder = folder.with_name(folder.name + CONTROL_SUFFIX)
    config = tiny_config(style=settings.style, output_dir=str(folder), preference=preference, **settings.specialist)
    wanted = {"train_config": config.hash(), "base": base_report.config_hash, "steps": config.optimizer_steps}
    stamp = _read_stamp(folder)
    if stamp is not None and all(stamp.get(key) == value for key, value in wanted.items()):
        return folder
    # a run killed after a checkpointed step: continue it
    resume = stamp is None and any((folder / "checkpoints").glob("step-*/state.json"))
    what = "control (random preferences)" if preference == "random" else "specialist"
    logger.info("training the tiny %s %s in %s", settings.style, what, folder)
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


def _scorecards(settings: MiniatureSettings, base_report: TinyBaseReport, specialist: Path, control: Path | None,
                exemplars: list[np.ndarray]) -> list[EditScorecard]:
    """Identity, untrained, control and trained specialist on held-out frames and noise seeds (cached)."""
    from sim2real_edit.feedback import Feedback, FeedbackConfig
    from sim2real_edit.specialist import EditSpecialist

    cache = tiny_home() / "miniature" / "scorecard.json"
    key = {"version": SCORECARD_VERSION, "specialist": _read_stamp(specialist), "control": _read_stamp(control) if control else None,
           "frames": settings.scorecard_frames, "rounds": settings.scorecard_rounds}
    if cache.is_file():
        stored = json.loads(cache.read_text())
        if stored.get("key") == key:
            return [_scorecard_from_dict(card) for card in stored["scorecards"]]
    config = json.loads((specialist / "train_config.json").read_text())
    steps = config["num_denoising_steps"]
    frames, masks = stand_in_frames(settings.scorecard_frames, seed=settings.base.seed + 30_000)
    feedback = Feedback.from_config(FeedbackConfig(**config["feedback"]), device="cpu")
    trained = EditSpecialist.from_pretrained(specialist=specialist)
    methods = [("identity", identity_edit),
               ("untrained", specialist_edit(EditSpecialist.from_pretrained(base=TINY_TRAINED_BASE),
                                             trained.config.instruction, steps))]
    if control is not None:
        methods.append(("random preferences", specialist_edit(EditSpecialist.from_pretrained(specialist=control),
                                                               trained.config.instruction, steps)))
    methods.append(("trained", specialist_edit(trained, trained.config.instruction, steps)))
    cards = [score_edits(name, edit, frames, masks, exemplars, feedback, settings.scorecard_rounds)
             for name, edit in methods]
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(cache, json.dumps({"key": key, "scorecards": [c.to_dict() for c in cards]}, indent=2))
    return cards


def _scorecard_from_dict(values: dict) -> EditScorecard:
    return EditScorecard(**{**values, "cabinet_colour": tuple(values["cabinet_colour"]),
                            "round_totals": tuple(values["round_totals"])})


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
        real = DrawerStandIn(task, pose, config=tiny_camera_config(), appearance="real")
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


def write_miniature_summary(miniature: Miniature, run_dir: Path) -> Path:
    """`RUN_DIR/miniature.json` (read by the report) and the side-by-side figure in `RUN_DIR/plots`."""
    from .report import PLOTS_DIR

    figure = write_side_by_side(miniature, run_dir / PLOTS_DIR / SIDE_BY_SIDE)
    summary = {**miniature.to_json(), "figure": str(figure.relative_to(run_dir))}
    write_text_atomically(run_dir / MINIATURE_JSON, json.dumps(summary, indent=2) + "\n")
    return run_dir / MINIATURE_JSON


