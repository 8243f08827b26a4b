"""Denoising steps as Gaussian policies: each step returns its sample, mean and standard deviation.

The noise schedule (timesteps, sigmas, alphas) comes from diffusers' schedulers, built from the base
model's scheduler config; the step arithmetic is written out here so that the RL trainer can evaluate
log p(x_{t-1} | x_t) of a stored trajectory under any network. The arithmetic matches diffusers'
`EulerAncestralDiscreteScheduler.step` and `DDIMScheduler.step` (epsilon prediction).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, EulerAncestralDiscreteScheduler

SAMPLERS = ("euler_ancestral", "ddim")


@dataclass
class StepOutput:
    prev_sample: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor  # scalar tensor: the step's noise scale (0 for a deterministic step)


def gaussian_log_prob(sample: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log N(sample; mean, std^2 I) averaged over all non-batch dimensions, in float32. Shape (B,).

    The average (not the sum) over latent dimensions keeps values in a range where D3PO's clamp on the
    probability ratio is meaningful. A step with std == 0 has no density; callers skip such steps.
    """
    std = std.float()
    diff = (sample.float() - mean.float()).flatten(1)
    log_density = -(diff**2) / (2 * std**2) - torch.log(std) - 0.5 * math.log(2 * math.pi)
    return log_density.mean(dim=1)


class Sampler:
    """A fixed-length denoising schedule: timesteps plus a stochastic step rule."""

    name: str
    timesteps: torch.Tensor
    init_noise_sigma: float

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    def scale_model_input(self, sample: torch.Tensor, index: int) -> torch.Tensor:
        return sample

    def step(self, eps: torch.Tensor, index: int, sample: torch.Tensor, noise: torch.Tensor) -> StepOutput:
        raise NotImplementedError

    def step_mean_std(
        self, eps: torch.Tensor, index: int, sample: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def step_std(self, index: int) -> torch.Tensor:
        raise NotImplementedError

    def is_stochastic(self, index: int) -> bool:
        """False for a step that adds no noise (the last Euler-ancestral step): it has no log-probability."""
        return float(self.step_std(index)) > 0.0


class EulerAncestralSampler(Sampler):
    """Euler-ancestral steps: x_{t-1} ~ N(x_t + eps (sigma_down - sigma), sigma_up^2)."""

    name = "euler_ancestral"

    def __init__(self, scheduler_config: dict, num_steps: int):
        scheduler = EulerAncestralDiscreteScheduler.from_config(scheduler_config)
        if scheduler.config.prediction_type != "epsilon":
            raise ValueError(f"only epsilon prediction is supported, got {scheduler.config.prediction_type!r}")
        scheduler.set_timesteps(num_steps)
        self.timesteps = scheduler.timesteps.clone()
        self.sigmas = scheduler.sigmas.clone().float()
        self.init_noise_sigma = float(scheduler.init_noise_sigma)

    def _sigmas(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sigma_from, sigma_to = self.sigmas[index], self.sigmas[index + 1]
        sigma_up = (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5
        sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
        return sigma_from, sigma_up, sigma_down

    def scale_model_input(self, sample: torch.Tensor, index: int) -> torch.Tensor:
        return sample / ((self.sigmas[index] ** 2 + 1) ** 0.5)

    def step_mean_std(self, eps, index, sample):
        sigma, sigma_up, sigma_down = self._sigmas(index)
        # pred_x0 = x - sigma * eps; derivative = (x - pred_x0) / sigma = eps
        mean = sample.float() + eps.float() * (sigma_down - sigma)
        return mean, sigma_up

    def step_std(self, index: int) -> torch.Tensor:
        return self._sigmas(index)[1]

    def step(self, eps, index, sample, noise):
        mean, std = self.step_mean_std(eps, index, sample)
        return StepOutput(prev_sample=mean + noise.float() * std, mean=mean, std=std)


class DDIMSampler(Sampler):
    """DDIM steps with eta > 0: x_{t-1} ~ N(sqrt(a') x0 + sqrt(1 - a' - std^2) eps, std^2),
    std = eta * sqrt((1 - a') / (1 - a) * (1 - a / a'))."""

    name = "ddim"

    def __init__(self, scheduler_config: dict, num_steps: int, eta: float = 1.0):
        if not (eta > 0 and math.isfinite(eta)):  # written so that NaN fails too
            raise ValueError(f"DDIM needs a finite eta > 0 to be a stochastic policy with log-probabilities, got eta={eta}")
        # Latent diffusion never clips x0 to [-1, 1]; DDIM's default (clip_sample=True) is for pixel models.
        scheduler = DDIMScheduler.from_config(scheduler_config, clip_sample=False, thresholding=False)
        if scheduler.config.prediction_type != "epsilon":
            raise ValueError(f"only epsilon prediction is supported, got {scheduler.config.prediction_type!r}")
        scheduler.set_timesteps(num_steps)
        self.eta = float(eta)
        self.timesteps = scheduler.timesteps.clone()
        self.init_noise_sigma = float(scheduler.init_noise_sigma)
        stride = scheduler.config.num_train_timesteps // num_steps
        alphas = scheduler.alphas_cumprod.float()
        final = torch.as_tensor(scheduler.final_alpha_cumprod, dtype=torch.float32)
        self.alpha_t = torch.stack([alphas[int(t)] for t in self.timesteps])
        self.alpha_prev = torch.stack(
            [alphas[int(t) - stride] if int(t) - stride >= 0 else final for t in self.timesteps]
        )

    def step_std(self, index: int) -> torch.Tensor:
        a_t, a_prev = self.alpha_t[index], self.alpha_prev[index]
        variance = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
        return self.eta * variance.clamp(min=0) ** 0.5

    def step_mean_std(self, eps, index, sample):
        a_t, a_prev = self.alpha_t[index], self.alpha_prev[index]
        std = self.step_std(index)
        eps = eps.float()
        pred_x0 = (sample.float() - (1 - a_t) ** 0.5 * eps) / a_t**0.5
        mean = a_prev**0.5 * pred_x0 + (1 - a_prev - std**2).clamp(min=0) ** 0.5 * eps
        return mean, std

    def step(self, eps, index, sample, noise):
        mean, std = self.step_mean_std(eps, index, sample)
        return StepOutput(prev_sample=mean + noise.float() * std, mean=mean, std=std)


def make_sampler(name: str, scheduler_config: dict, num_steps: int, eta: float = 1.0) -> Sampler:
    if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral) or num_steps < 1:
        raise ValueError(f"num_steps (denoising steps) must be an integer >= 1, got {num_steps!r}")
    if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not math.isfinite(eta):
        raise ValueError(f"eta must be a finite number (DDIM: > 0, 1.0 by default), got {eta!r}")
    num_steps = int(num_steps)
    if name == "euler_ancestral":
        return EulerAncestralSampler(scheduler_config, num_steps)
    if name == "ddim":
        return DDIMSampler(scheduler_config, num_steps, eta)
    raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SAMPLERS)}")
