"""Fine-tuning on Ray Train + DeepSpeed (SFT with LoRA or full; shared with bootstrap pretraining).

Public entry points (heavy imports happen on call):

- ``finetune(config: FinetuneConfig, *, run_config=None, callbacks=None, cpus_per_worker=None, shared=None) -> dict``
- ``FinetuneConfig`` (``llmops_ray.train.config``), loadable with ``llmops_ray.config.load_config``.
"""

from __future__ import annotations

from typing import Any

from llmops_ray.train.config import FinetuneConfig


def finetune(config: FinetuneConfig, **kwargs: Any) -> dict[str, Any]:
    """See :func:`llmops_ray.train.sft.finetune`."""
    from llmops_ray.train.sft import finetune as _finetune

    return _finetune(config, **kwargs)


__all__ = ["FinetuneConfig", "finetune"]
