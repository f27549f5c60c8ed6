"""llmops-ray: the whole life of an LLM application on one Ray cluster.

Library modules (``data``, ``kb``, ``models``, ``train``, ``evaluate``, ``registry``,
``serve``, ``safety``, ``observe``) hold the logic; ``jobs/`` scripts and the ``llmops``
CLI are thin entry points over them. Heavy dependencies (Ray, torch, vLLM) are imported
inside functions so that ``import llmops_ray`` and ``llmops --help`` stay fast.
"""

__version__ = "0.1.0"
