"""The cluster path the docs describe is consistent: every serve config the docs or the
KubeRay manifests deploy fits a GPU node type of ``cluster.yaml`` and of the KubeRay worker
groups (accelerator type, GPUs per replica), and the price table prices exactly what is
shipped (every served model id, stack and accelerator type; no entry that prices nothing)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from llmops_ray.observe.cost import load_prices
from llmops_ray.serve.config import SERVE_CONFIGS_DIR, ServeAppConfig, load_serve_config

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "deploy").rglob("*.yaml"))]
_SERVE_REF = re.compile(r"serve_configs/([A-Za-z0-9_.-]+)\.yaml")
STACK_HOOK = "llmops_ray.serve.stacks:StackHook"


def deployed_serve_configs() -> list[str]:
    """Names of the serve configs the docs and manifests deploy."""
    names = {m.group(1) for path in DOCS for m in _SERVE_REF.finditer(path.read_text(encoding="utf-8"))}
    return sorted(names)


def shipped_serve_configs() -> dict[str, ServeAppConfig]:
    return {p.stem: load_serve_config(p) for p in sorted(SERVE_CONFIGS_DIR.glob("*.yaml"))}


def gpus_per_replica(model) -> int:
    kwargs = model.engine_kwargs
    return int(kwargs.get("tensor_parallel_size", 1)) * int(kwargs.get("pipeline_parallel_size", 1))


def cluster_gpu_nodes() -> dict[str, tuple[str | None, int]]:
    """cluster.yaml's node types with GPUs: name -> (accelerator type, GPUs per node)."""
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    nodes = {}
    for name, node in config["available_node_types"].items():
        resources = node.get("resources") or {}
        if resources.get("GPU"):
            types = [k.split(":", 1)[1] for k in resources if k.startswith("accelerator_type:")]
            nodes[name] = (types[0] if types else None, int(resources["GPU"]))
    return nodes


def kuberay_gpu_groups() -> dict[str, tuple[str | None, int]]:
    """KubeRay worker groups with GPUs: name -> (accelerator type from the node selector, GPUs per pod)."""
    groups = {}
    for path in sorted((REPO / "deploy" / "kuberay").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") not in ("RayService", "RayCluster", "RayJob"):
                continue
            spec = doc["spec"]
            cluster = spec.get("rayClusterConfig") or spec.get("rayClusterSpec") or spec
            for group in cluster.get("workerGroupSpecs", []):
                pod = group["template"]["spec"]
                gpus = sum(int((c.get("resources", {}).get("limits") or {}).get("nvidia.com/gpu", 0))
                           for c in pod["containers"])
                if gpus:
                    product = (pod.get("nodeSelector") or {}).get("nvidia.com/gpu.product", "")
                    groups[f"{path.name}:{group['groupName']}"] = (product.removeprefix("NVIDIA-") or None, gpus)
    return groups


def fits(model, node: tuple[str | None, int]) -> bool:
    accelerator, gpus = node
    return (model.accelerator_type is None or model.accelerator_type == accelerator) and gpus_per_replica(model) <= gpus


def test_the_docs_deploy_shipped_serve_configs():
    names = deployed_serve_configs()
    assert "gpu_vllm" in names, "the operations guide deploys gpu_vllm.yaml"
    missing = [n for n in names if not (SERVE_CONFIGS_DIR / f"{n}.yaml").is_file()]
    assert not missing, f"the docs name serve configs that do not exist: {missing}"


def deployed_gpu_configs() -> list[str]:
    return [n for n in deployed_serve_configs() if (SERVE_CONFIGS_DIR / f"{n}.yaml").is_file()
            and any(m.accelerator == "gpu" for m in load_serve_config(n).models)]


def test_the_docs_deploy_a_gpu_config():
    assert deployed_gpu_configs() == ["gpu_vllm"]


@pytest.mark.parametrize("name", deployed_gpu_configs())
def test_gpu_models_fit_the_cluster_and_kuberay_nodes(name):
    config = load_serve_config(name)
    gpu_models = [m for m in config.models if m.accelerator == "gpu"]
    nodes, groups = cluster_gpu_nodes(), kuberay_gpu_groups()
    assert nodes and groups, "cluster.yaml and the KubeRay manifests have GPU workers"
    for model in gpu_models:
        assert any(fits(model, n) for n in nodes.values()), (
            f"{name}: {model.model_id} needs {gpus_per_replica(model)} x {model.accelerator_type} per replica; "
            f"cluster.yaml's GPU nodes are {nodes}")
        assert any(fits(model, g) for g in groups.values()), (
            f"{name}: {model.model_id} needs {gpus_per_replica(model)} x {model.accelerator_type} per replica; "
            f"the KubeRay GPU groups are {groups}")


def test_fit_rule_rejects_what_cannot_schedule():
    model = load_serve_config("gpu_vllm").models[0]
    tp2 = model.model_copy(update={"engine_kwargs": {**model.engine_kwargs, "tensor_parallel_size": 2}})
    assert fits(model, ("L40S", 1))
    assert not fits(tp2, ("L40S", 1))
    assert not fits(model.model_copy(update={"accelerator_type": "L4"}), ("L40S", 1))


def shipped_names() -> tuple[set[str], set[str]]:
    """(served model ids and stack names, accelerator types) of every shipped config."""
    models, accelerators = set(), {"cpu"}
    for config in shipped_serve_configs().values():
        for model in config.models:
            models.add(model.model_id)
            if model.accelerator == "gpu" and model.accelerator_type:
                accelerators.add(model.accelerator_type)
        if config.gateway.embeddings:
            models.add(config.gateway.embedding_model_id)
        for hook in config.gateway.hooks:
            if hook.path == STACK_HOOK:
                models.update((hook.kwargs.get("stacks") or {}).keys())
    accelerators.update(a for a, _ in cluster_gpu_nodes().values() if a)
    return models, accelerators


def test_prices_cover_every_shipped_model_and_accelerator():
    prices = load_prices()
    models, accelerators = shipped_names()
    assert not models - set(prices.models), f"no token price for {sorted(models - set(prices.models))}"
    assert not accelerators - set(prices.hardware), f"no hardware price for {sorted(accelerators - set(prices.hardware))}"


def test_no_price_entry_prices_nothing():
    prices = load_prices()
    models, accelerators = shipped_names()
    assert not set(prices.models) - models, f"token prices that match no served model or stack: {sorted(set(prices.models) - models)}"
    unused = set(prices.hardware) - accelerators - {"default"}
    assert not unused, f"hardware prices that match no shipped accelerator type: {sorted(unused)}"
