"""cluster.yaml must be a valid Ray cluster-launcher config (Ray's own JSON schema)."""

import json
from pathlib import Path

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[2]


def _schema():
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def test_cluster_yaml_matches_ray_schema():
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    jsonschema.validate(config, _schema())
    groups = config["available_node_types"]
    assert config["head_node_type"] in groups
    assert any("gpu" in name for name in groups), "a GPU worker group is expected"
    assert any("cpu" in name for name in groups), "a CPU worker group is expected"


def test_schema_rejects_a_broken_config():
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    config["available_node_types"]["head"]["min_workers"] = "many"
    try:
        jsonschema.validate(config, _schema())
    except jsonschema.ValidationError:
        return
    raise AssertionError("an invalid cluster config passed validation")
