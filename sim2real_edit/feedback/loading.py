"""Loading judges from a hub id or a local folder, or building them with random weights from a config.

`PretrainedJudge` holds the classmethods every network judge offers (`from_pretrained`, `from_architecture`,
`tiny`); a judge says only how to get its networks. transformers and dreamsim are imported when a judge is
loaded or built, not when its module is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch

from ..offline import hub_offline, names_a_folder, work_offline_if_unreachable

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel
    from typing_extensions import Self

ModelT = TypeVar("ModelT")
# The leading arguments of a judge's constructor: its networks, and what goes with them (a tokenizer).
Networks = tuple[Any, ...]


class JudgeWeightsNotFoundError(OSError):
    """A judge's weights could not be found: wrong id, incomplete folder, or an offline machine."""


def offline_help(model_id: str, what: str, how_to_pass: str) -> str:
    offline = hub_offline()
    local = Path(model_id).expanduser()
    where = (
        f"the folder {local} does not hold a complete model"
        if local.exists()
        else f"{model_id!r} is neither a local folder nor cached, and this machine may be offline"
        + (" (HF_HUB_OFFLINE is set)" if offline else "")
    )
    return (
        f"could not load the {what} from {model_id!r}: {where}. Download it where there is a network "
        f"(`hf download {model_id} --local-dir DIR`) and pass the folder: {how_to_pass}"
    )


def load_pretrained(
    model_class: type[ModelT], model_id: str, what: str, how_to_pass: str, **kwargs: Any
) -> ModelT:
    """`model_class.from_pretrained(model_id)`; a missing download becomes an error that says what to do."""
    source = str(Path(model_id).expanduser()) if Path(model_id).expanduser().exists() else model_id
    if not names_a_folder(model_id):
        work_offline_if_unreachable()  # no minute of retries on a machine without a network
    try:
        return model_class.from_pretrained(source, **kwargs)
    except OSError as error:
        raise JudgeWeightsNotFoundError(
            offline_help(model_id, what, how_to_pass) + f"\n(cause: {error})"
        ) from error


def build_random(model_class: Callable[..., ModelT], *args: Any, seed: int, **kwargs: Any) -> ModelT:
    """`model_class(*args, **kwargs)` with weights drawn from `seed`; the global random state is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class(*args, **kwargs)


def place(model: torch.nn.Module, device: torch.device | str, dtype: torch.dtype) -> torch.nn.Module:
    """Moves a judge model to `device`/`dtype` for inference only."""
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def transformers_class(name: str) -> type:
    """The transformers class called `name`, imported on first use (transformers takes seconds to import)."""
    import transformers

    return getattr(transformers, name)


class PretrainedJudge:
    """The classmethods every network judge offers, written once.

    A judge names its defaults (`default_model_id`, `default_size`) and says how to get its networks: from a
    hub id or local folder (`load_networks`), or with seeded random weights in an architecture
    (`random_networks`). The networks are moved to the device and dtype for inference and passed first to
    the judge's constructor; `options` are the constructor's keyword arguments (e.g. `max_batch`).
    """

    default_model_id: ClassVar[str]
    default_size: ClassVar[str] = "full"

    @classmethod
    def load_networks(cls, model_id: str | Path, device: torch.device | str) -> Networks:
        """The networks from a hub id or local folder (`device`: for loaders that build them in place)."""
        raise NotImplementedError(f"{cls.__name__} does not load networks from a single model id")

    @classmethod
    def random_networks(cls, size: str, seed: int) -> tuple[Networks, dict[str, Any]]:
        """The networks with random weights in architecture `size`, and constructor options it implies."""
        raise NotImplementedError(f"{cls.__name__} does not build networks with random weights")

    @classmethod
    def from_networks(
        cls, networks: Networks, device: torch.device | str, dtype: torch.dtype, **options: Any
    ) -> Self:
        """The judge around `networks`, each module moved to `device` and `dtype` for inference."""
        placed = (place(net, device, dtype) if isinstance(net, torch.nn.Module) else net for net in networks)
        return cls(*placed, **options)

    @classmethod
    def from_pretrained(
        cls,
        model_id: str | Path | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        **options: Any,
    ) -> Self:
        """Loads the judge by hub id or local folder; None: the judge's `default_model_id`."""
        source = cls.default_model_id if model_id is None else model_id
        return cls.from_networks(cls.load_networks(source, device), device, dtype, **options)

    @classmethod
    def from_architecture(
        cls,
        size: str | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        **options: Any,
    ) -> Self:
        """Random weights in the default models' architecture or a tiny one (offline; benchmarks and tests);
        None: the judge's `default_size`."""
        networks, architecture_options = cls.random_networks(cls.default_size if size is None else size, seed)
        return cls.from_networks(networks, device, dtype, **{**architecture_options, **options})

    @classmethod
    def tiny(cls, seed: int = 0, **options: Any) -> Self:
        return cls.from_architecture("tiny", seed=seed, **options)


class TransformersJudge(PretrainedJudge):
    """A judge around one transformers model, `self.model`, described by class attributes."""

    model_class_name: ClassVar[str]  # the transformers class, e.g. "Dinov2Model"
    judge_name: ClassVar[str]  # what errors call it: "could not load the {judge_name} from ..."
    # `size` -> the config of the model's architecture in that size (one of `architectures`' functions)
    architecture_config: ClassVar[Callable[[str], PretrainedConfig]]
    model: PreTrainedModel

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @classmethod
    def architecture_options(cls, size: str, config: PretrainedConfig) -> dict[str, Any]:
        """Constructor options that follow from the architecture (e.g. its input size)."""
        return {}

    @classmethod
    def load_networks(cls, model_id: str | Path, device: torch.device | str) -> Networks:
        how_to_pass = f"{cls.__name__}.from_pretrained('DIR')"
        model = load_pretrained(
            transformers_class(cls.model_class_name), model_id, cls.judge_name, how_to_pass
        )
        return (model,)

    @classmethod
    def random_networks(cls, size: str, seed: int) -> tuple[Networks, dict[str, Any]]:
        config = cls.architecture_config(size)
        model = build_random(transformers_class(cls.model_class_name), config, seed=seed)
        return (model,), cls.architecture_options(size, config)
