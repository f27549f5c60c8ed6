"""Serving: Ray Serve LLM + vLLM behind our OpenAI-compatible gateway.

Modules: ``config`` (typed serve YAML), ``llm`` (model spec -> ``LLMConfig``), ``server``
(our ``LLMServer``: local LoRA adapters, immediate first chunk), ``gateway`` (the OpenAI
ingress with hook points), ``hooks`` (the hook interface for keys/rails/RAG/canary/metrics),
``app`` (build / start / deploy), ``commands`` (``llmops serve``). Heavy imports (ray, vllm)
happen inside functions or in ``server``/``gateway``, which only Serve replicas import.
"""
