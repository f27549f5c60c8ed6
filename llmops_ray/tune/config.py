"""Typed config of a hyperparameter search over fine-tuning (``llmops tune --config``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from llmops_ray.config import StrictModel


class SearchDim(StrictModel):
    """One dimension of the search space."""

    type: Literal["loguniform", "uniform", "choice", "randint"]
    """Distribution: log-uniform / uniform floats in [low, high], a choice of values, ints in [low, high)."""
    low: float | None = None
    """Lower bound (loguniform, uniform, randint)."""
    high: float | None = None
    """Upper bound (loguniform, uniform; exclusive for randint)."""
    values: list[Any] | None = None
    """Candidates (choice)."""

    @model_validator(mode="after")
    def _bounds(self):
        if self.type == "choice":
            if not self.values:
                raise ValueError("a choice dimension needs 'values'")
        elif self.low is None or self.high is None or self.low >= self.high:
            raise ValueError(f"a {self.type} dimension needs low < high")
        elif self.type == "loguniform" and self.low <= 0:
            raise ValueError("loguniform needs low > 0")
        return self

    def to_tune(self):
        from ray import tune

        if self.type == "loguniform":
            return tune.loguniform(self.low, self.high)
        if self.type == "uniform":
            return tune.uniform(self.low, self.high)
        if self.type == "randint":
            return tune.randint(int(self.low), int(self.high))
        return tune.choice(list(self.values))


class RegisterSettings(StrictModel):
    """How the best trial becomes a stack version."""

    stack: str | None = None
    """Stack name to register the best trial under; none = do not register."""
    prompt: str | None = None
    """Prompt ``name@version``; none = the shipped QA template registered as ``qa``."""
    kb: str | None = None
    """Knowledge base ``name@version`` of the stack, if any."""
    manifest: str | None = None
    """A manifest YAML whose description, generation and policy are reused (its model fields are replaced)."""
    alias: str | None = None
    """Alias to point at the new version (e.g. ``staging``); ``production`` goes through ``promote``."""


class TuneSearchConfig(StrictModel):
    """A Ray Tune search whose trials are fine-tuning runs (Ray Train inside Tune)."""

    name: str = "tune"
    """Search name: Tune experiment directory ``<workspace>/runs/tune/<name>`` and MLflow experiment ``tune/<name>``."""
    finetune: str = "sft_lora_tiny_cpu"
    """Fine-tuning config (shipped name or YAML path) every trial starts from."""
    overrides: list[str] = Field(default_factory=list)
    """``key=value`` overrides of the fine-tuning config applied to every trial."""
    data: str | None = None
    """SFT dataset path; replaces the fine-tuning config's ``data.path`` when given."""
    base_model: str | None = None
    """Base model; replaces the fine-tuning config's ``base_model`` when given."""
    space: dict[str, SearchDim]
    """Dotted FinetuneConfig keys (``optim.lr``, ``lora.rank``) -> distribution."""
    num_samples: int = Field(4, ge=1)
    """Number of trials."""
    scheduler: Literal["asha", "fifo"] = "asha"
    """ASHA stops weak trials early; FIFO trains every trial fully."""
    search: Literal["random", "optuna"] = "random"
    """Random sampling, or Optuna's TPE sampler."""
    metric: str = "val_loss"
    """Metric reported by the trainer at each checkpoint."""
    mode: Literal["min", "max"] = "min"
    """Whether the metric is minimised or maximised."""
    max_t: int = Field(8, ge=1)
    """Reports (training iterations = checkpoints, final one included) a full trial makes; ASHA's top rung."""
    grace_period: int = Field(1, ge=1)
    """ASHA: reports every trial gets before it may be stopped."""
    reduction_factor: float = Field(4.0, gt=1)
    """ASHA: 1/reduction_factor of the trials go on at each rung (rungs at grace_period x
    reduction_factor^k). 4 is Ray's default; replayed over recorded learning curves of the tiny
    LoRA search (benchmarks/asha_replay.py) it reaches the best config in fewer trial-iterations
    than the ASHA paper's usual 3 at every budget tried."""
    rung_metric: Literal["best", "last"] = "best"
    """ASHA: what a trial is judged by when it reaches a rung: its best ``metric`` so far
    ("best") or the value it reported at the rung ("last", Ray's own rule). One noisy
    evaluation (a loss spike of a high learning rate, a few steps before it falls below
    everyone else's) stops a trial under "last", not under "best"."""
    max_concurrent_trials: int = Field(2, ge=1)
    """Trials running at once (on 2 CPUs: 2, one worker each)."""
    num_workers: int = Field(1, ge=1)
    """Ray Train workers per trial."""
    trial_cpus: float = Field(0.01, gt=0)
    """CPU share of a trial's own (driver) actor; the workers hold the real share."""
    cpus_per_worker: float = Field(0.99, gt=0)
    """CPU share of each training worker (0.99 + 0.01 per trial avoids the 2-CPU deadlock)."""
    resume: bool = True
    """Resume an interrupted search of the same name with ``Tuner.restore``."""
    seed: int = 0
    """Seed of the search algorithm."""
    registration: RegisterSettings = Field(default_factory=RegisterSettings)
    """Register the best trial as a new stack version."""
