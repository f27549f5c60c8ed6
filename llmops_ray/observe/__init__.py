"""Observability: metrics on Ray's Prometheus endpoint, cost accounting, request and
feedback logs in LanceDB, SLO reports (and the audit log, ``audit.py``).

Nothing here is imported by the CLI at start-up beyond this package's light modules; Ray and
LanceDB are imported inside the functions that need them.

The gateway uses one :class:`llmops_ray.observe.observer.Observer` per replica; see its
docstring for the calls made per request.
"""
