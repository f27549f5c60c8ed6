"""The Serve application graph our builder makes, without starting it."""

from __future__ import annotations

from llmops_ray.config import build_config, read_yaml
from llmops_ray.serve.config import SERVE_CONFIGS_DIR, ServeAppConfig


def test_app_builder_graph(ray_session, tiny_model_dir):
    """The Serve graph: one Gateway ingress bound to one LLM deployment per model (Serve LLM's
    builder reads the runtime context, so Ray runs: this session's, never another found by "auto")."""
    from llmops_ray.serve.app import build_app, gateway_settings

    data = read_yaml(SERVE_CONFIGS_DIR / "multi_model.yaml")
    for m in data["models"]:
        m["source"] = str(tiny_model_dir)
    config = build_config(ServeAppConfig, data)
    app = build_app(config)
    assert app._bound_deployment.name == "Gateway"
    llms = app._bound_deployment.init_kwargs["llm_deployments"]
    assert set(llms) == {"tiny-base", "tiny-chat"}
    assert llms["tiny-base"]._bound_deployment.name == "LLM:tiny-base"
    assert llms["tiny-base"]._bound_deployment.init_kwargs["local_lora_dir"].endswith("/models")
    settings = gateway_settings(config)
    assert settings["max_model_len"] == {"tiny-base": 1024, "tiny-chat": 1024}
    assert set(settings["local_lora_dirs"]) == {"tiny-base"}


def test_rag_canary_config_builds_with_the_retriever(ray_session, tiny_model_dir):
    """The shipped serve config: keys -> rails -> stacks -> observe, Retriever in the app graph."""
    from llmops_ray.config import build_config, read_yaml
    from llmops_ray.serve.app import build_app
    from llmops_ray.serve.config import SERVE_CONFIGS_DIR, ServeAppConfig

    data = read_yaml(SERVE_CONFIGS_DIR / "rag_canary.yaml")
    data["models"][0]["source"] = str(tiny_model_dir)
    config = build_config(ServeAppConfig, data)
    assert [h.path.rsplit(":", 1)[1] for h in config.gateway.hooks] == ["ApiKeyHook", "RailsHook", "StackHook", "ObserveHook"]
    settings = build_app(config)._bound_deployment.init_kwargs["settings"]
    retriever = settings["hook_deployments"]["Retriever"]._bound_deployment
    assert retriever.name == "Retriever" and retriever.ray_actor_options["num_cpus"] == 0.1
