"""Ray Tune search over fine-tuning hyperparameters (ASHA by default, Optuna optional).

Public calls: :func:`llmops_ray.tune.search.run_search` ``(TuneSearchConfig) -> dict`` and
:func:`llmops_ray.tune.search.load_search_config` ``(name_or_path, overrides) -> TuneSearchConfig``.
"""

from llmops_ray.tune.config import TuneSearchConfig


def run_search(config: TuneSearchConfig) -> dict:
    """See :func:`llmops_ray.tune.search.run_search`."""
    from llmops_ray.tune.search import run_search as _run

    return _run(config)


__all__ = ["TuneSearchConfig", "run_search"]
