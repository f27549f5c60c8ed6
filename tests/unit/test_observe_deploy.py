"""deploy/: KubeRay manifests (schema level), Prometheus rules (promtool-style structure) and the
Grafana dashboard (loads; references only metric names we export)."""

import ast
import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from llmops_ray.observe.metrics import METRICS, TTFT_BOUNDARIES_S, prometheus_names

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

# --------------------------------------------------------------------------- KubeRay schemas
# Written from the KubeRay v1 CRD fields (ray.io/v1 RayCluster / RayService / RayJob); only
# the parts our manifests use, with the CRD's types (rayStartParams is map[string]string).

_CONTAINER = {
    "type": "object",
    "required": ["name", "image"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "image": {"type": "string", "minLength": 1},
        "env": {
            "type": "array",
            "items": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "value": {"type": "string"}}},
        },
        "ports": {
            "type": "array",
            "items": {"type": "object", "required": ["containerPort"], "properties": {
                "containerPort": {"type": "integer", "minimum": 1, "maximum": 65535},
                "name": {"type": "string", "maxLength": 15}}},
        },
        "resources": {"type": "object", "properties": {
            "requests": {"type": "object", "additionalProperties": {"type": ["string", "integer"]}},
            "limits": {"type": "object", "additionalProperties": {"type": ["string", "integer"]}}},
            "additionalProperties": False},
        "volumeMounts": {"type": "array", "items": {"type": "object", "required": ["name", "mountPath"]}},
    },
}
_POD_TEMPLATE = {
    "type": "object",
    "required": ["spec"],
    "properties": {"spec": {"type": "object", "required": ["containers"], "properties": {
        "containers": {"type": "array", "minItems": 1, "items": _CONTAINER},
        "volumes": {"type": "array", "items": {"type": "object", "required": ["name"]}},
    }}},
}
_START_PARAMS = {"type": "object", "additionalProperties": {"type": "string"}}
RAY_CLUSTER_SPEC = {
    "type": "object",
    "required": ["rayVersion", "headGroupSpec"],
    "properties": {
        "rayVersion": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
        "enableInTreeAutoscaling": {"type": "boolean"},
        "headGroupSpec": {"type": "object", "required": ["template"], "properties": {
            "rayStartParams": _START_PARAMS, "template": _POD_TEMPLATE,
            "serviceType": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]}}},
        "workerGroupSpecs": {"type": "array", "items": {
            "type": "object",
            "required": ["groupName", "template", "minReplicas", "maxReplicas"],
            "properties": {
                "groupName": {"type": "string", "minLength": 1},
                "replicas": {"type": "integer", "minimum": 0},
                "minReplicas": {"type": "integer", "minimum": 0},
                "maxReplicas": {"type": "integer", "minimum": 0},
                "rayStartParams": _START_PARAMS,
                "template": _POD_TEMPLATE}}},
    },
}
_META = {"type": "object", "required": ["name"], "properties": {
    "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}}}
RAY_SERVICE = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayService"},
        "metadata": _META,
        "spec": {"type": "object", "required": ["serveConfigV2", "rayClusterConfig"], "properties": {
            "serveConfigV2": {"type": "string"}, "rayClusterConfig": RAY_CLUSTER_SPEC}},
    },
}
RAY_JOB = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayJob"},
        "metadata": _META,
        "spec": {"type": "object", "required": ["entrypoint", "rayClusterSpec"], "properties": {
            "entrypoint": {"type": "string", "minLength": 1},
            "runtimeEnvYAML": {"type": "string"},
            "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]},
            "shutdownAfterJobFinishes": {"type": "boolean"},
            "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
            "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
            "backoffLimit": {"type": "integer", "minimum": 0},
            "rayClusterSpec": RAY_CLUSTER_SPEC}},
    },
}


def _load(path):
    text = (DEPLOY / path).read_text()
    assert text.startswith("#"), f"{path} must begin with a comment saying what it is and how to apply it"
    return yaml.safe_load(text)


def _worker_groups_sane(cluster):
    for group in cluster.get("workerGroupSpecs", []):
        assert group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"]
    ray_version = __import__("ray").__version__
    assert cluster["rayVersion"] == ray_version, "manifests must run the Ray version we pin"


def _mounts_workspace(cluster):
    """Every Ray container sets LLMOPS_HOME to a path on the shared workspace volume."""
    groups = [cluster["headGroupSpec"]] + cluster.get("workerGroupSpecs", [])
    for group in groups:
        spec = group["template"]["spec"]
        claims = {v["name"] for v in spec.get("volumes", []) if "persistentVolumeClaim" in v}
        for c in spec["containers"]:
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
            assert env.get("LLMOPS_HOME"), c["name"]
            assert any(mounts.get(n) and env["LLMOPS_HOME"].startswith(mounts[n]) for n in claims), c["name"]


def test_rayservice_manifest():
    manifest = _load("kuberay/rayservice.yaml")
    jsonschema.validate(manifest, RAY_SERVICE)
    cluster = manifest["spec"]["rayClusterConfig"]
    _worker_groups_sane(cluster)
    _mounts_workspace(cluster)
    # serveConfigV2 must be a valid Serve config (Ray's own schema) whose app builder exists.
    from ray.serve.schema import ServeDeploySchema

    serve_config = ServeDeploySchema.model_validate(yaml.safe_load(manifest["spec"]["serveConfigV2"]))
    [app] = serve_config.applications
    module, attr = app.import_path.split(":")
    source = REPO / (module.replace(".", "/") + ".py")
    functions = {n.name for n in ast.walk(ast.parse(source.read_text())) if isinstance(n, ast.FunctionDef)}
    assert attr in functions, f"{app.import_path} does not exist"
    assert (REPO / app.args["config"]).is_file()
    gpu = [g for g in cluster["workerGroupSpecs"] if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]]
    assert gpu, "the serving cluster needs a GPU worker group"


def test_rayjob_manifest():
    manifest = _load("kuberay/rayjob-pipeline.yaml")
    jsonschema.validate(manifest, RAY_JOB)
    _worker_groups_sane(manifest["spec"]["rayClusterSpec"])
    _mounts_workspace(manifest["spec"]["rayClusterSpec"])
    runtime_env = yaml.safe_load(manifest["spec"]["runtimeEnvYAML"])
    assert set(runtime_env) <= {"working_dir", "env_vars", "pip", "py_modules"}
    assert all(isinstance(v, str) for v in runtime_env["env_vars"].values())
    assert manifest["spec"]["entrypoint"].split()[:2] == ["python", "jobs/pipeline.py"]


def test_schemas_reject_broken_manifests():
    manifest = _load("kuberay/rayservice.yaml")
    for breakage in (
        lambda m: m["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"].update({"num-gpus": 0}),
        lambda m: m["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].pop("groupName"),
        lambda m: m["spec"].pop("serveConfigV2"),
        lambda m: m.update(kind="RayCluster"),
    ):
        broken = copy.deepcopy(manifest)
        breakage(broken)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, RAY_SERVICE)


# --------------------------------------------------------------------------- Prometheus rules

_DURATION = re.compile(r"^((\d+)(ms|s|m|h|d|w|y))+$")
_RECORD_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_ALERT_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_FUNCTIONS = {"sum", "rate", "histogram_quantile", "by", "and", "or", "unless", "humanizeDuration"}


def _balanced(expr):
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    in_str = False
    for ch in expr:
        if ch == '"':
            in_str = not in_str
        elif in_str:
            continue
        elif ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack and not in_str


def _series_names(expr):
    """Metric / recording-rule names an expression reads (identifiers before ``{``, ``[`` or
    standing alone, excluding functions, keywords and label names inside ``by (...)``)."""
    expr = re.sub(r'"[^"]*"', '""', expr)
    expr = re.sub(r"\b(by|without)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\{[^}]*\}", "{}", expr)
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {n for n in names if n not in _FUNCTIONS}


def test_prometheus_rules_structure_and_metric_names():
    rules_doc = _load("prometheus/llmops-alerts.yaml")
    assert set(rules_doc) == {"groups"}
    exported = prometheus_names()
    group_names, records, alerts = set(), set(), []
    for group in rules_doc["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["name"] not in group_names
        group_names.add(group["name"])
        if "interval" in group:
            assert _DURATION.match(group["interval"])
        for rule in group["rules"]:
            assert ("alert" in rule) != ("record" in rule), rule
            assert isinstance(rule["expr"], str) and _balanced(rule["expr"]), rule
            if "record" in rule:
                assert set(rule) <= {"record", "expr", "labels"} and _RECORD_NAME.match(rule["record"])
                records.add(rule["record"])
            else:
                assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
                assert _ALERT_NAME.match(rule["alert"]) and _DURATION.match(rule["for"])
                assert rule["labels"]["severity"] in {"page", "ticket"}
                assert {"summary", "description"} <= set(rule["annotations"])
                alerts.append(rule)
    for group in rules_doc["groups"]:
        for rule in group["rules"]:
            unknown = _series_names(rule["expr"]) - exported - records
            assert not unknown, f"{rule.get('alert') or rule.get('record')} reads unknown series {unknown}"
    # SLO burn-rate alerts for the error rate and the p95 TTFT, fast (page) and slow (ticket)
    names = {a["alert"] for a in alerts}
    assert {"LLMOpsErrorBudgetFastBurn", "LLMOpsErrorBudgetSlowBurn",
            "LLMOpsTTFTBudgetFastBurn", "LLMOpsTTFTBudgetSlowBurn"} <= names
    # the TTFT bucket bound the burn rules count must be one of our histogram boundaries
    text = (DEPLOY / "prometheus/llmops-alerts.yaml").read_text()
    for le in set(re.findall(r'le="([^"]+)"', text)):
        assert float(le) in TTFT_BOUNDARIES_S


def test_series_name_extraction_catches_unknown_metrics():
    assert _series_names('sum by (stack) (rate(ray_llmops_requests_total{status=~"5.."}[5m]))') == {
        "ray_llmops_requests_total"}
    assert "ray_llmops_nope" in _series_names("ray_llmops_nope > 1")


# --------------------------------------------------------------------------- Grafana


def test_grafana_dashboard_references_only_our_metrics():
    dash = json.loads((DEPLOY / "grafana/llmops-dashboard.json").read_text())
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and len(ids) >= 8
    exported = prometheus_names()
    used = set()
    for panel in dash["panels"]:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]) and panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = re.sub(r"\$__rate_interval", "5m", target["expr"])
            assert _balanced(expr), expr
            used |= set(re.findall(r"\bray_[a-z0-9_]+", expr))
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            used |= set(re.findall(r"\bray_[a-z0-9_]+", var["query"]["query"]))
    assert used and used <= exported, used - exported
    # every metric we declare is on the dashboard
    assert {f"ray_{name}" for name in METRICS} <= {re.sub(r"_(total|bucket|sum|count)$", "", u) for u in used}
