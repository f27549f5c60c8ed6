"""Serving: Ray Serve LLM + vLLM behind our OpenAI-compatible gateway.

Modules: ``config`` (typed serve YAML), ``llm`` (model spec -> ``LLMConfig``), ``server``
(our ``LLMServer``: local LoRA adapters, immediate first chunk), ``gateway`` (the OpenAI
ingress with hook points), ``hooks`` (the hook interface for keys/rails/RAG/canary/metrics),
``app`` (build / start / deploy), ``commands`` (``llmops serve``), ``keys``/``ratelimit``
(API keys, quotas), ``stacks`` (model stacks as models: canary routing, RAG, automatic
rollback; the ``StackHook``), ``canary`` (weighted sticky variants, SLO window, rollback),
``rag`` (the Retriever deployment, citations, prompt building). Heavy imports (ray, vllm)
happen inside functions or in ``server``/``gateway``, which only Serve replicas import.
"""
