"""Evaluation: metrics, suites, batch generation over Ray Data + vLLM, stored results, reports.

Public calls: :func:`llmops_ray.evaluate.run.evaluate_stack` ``(ref, suite_path) -> dict``,
:func:`llmops_ray.evaluate.suite.load_suite`, :func:`llmops_ray.evaluate.report.write_report`,
and the metric functions in :mod:`llmops_ray.evaluate.metrics`.
"""


def evaluate_stack(*args, **kwargs):
    """See :func:`llmops_ray.evaluate.run.evaluate_stack`."""
    from llmops_ray.evaluate.run import evaluate_stack as _run

    return _run(*args, **kwargs)
