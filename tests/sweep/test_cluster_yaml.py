"""cluster.yaml passes the JSON Schema Ray ships for cluster configs and keeps the properties the sweep relies on.

The schema is the file in the Ray wheel (``ray/autoscaler/ray-schema.json``, what ``ray up`` checks a
config against), read as data and applied with ``jsonschema``: no Ray internals. It checks keys, types
and shapes; references between keys (the head type is one of the node types) are checked below.
"""

from __future__ import annotations

import copy
import json
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
import yaml

CLUSTER_YAML = Path(__file__).resolve().parents[2] / "cluster.yaml"


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(files("ray.autoscaler").joinpath("ray-schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_cluster_yaml_passes_rays_schema(raw, validator):
    validator.validate(raw)


@pytest.mark.parametrize(("mutate", "path", "keyword", "names"), [
    (lambda c: c["available_node_types"]["worker.gpu"].update(min_wrkers=1),
     ["available_node_types", "worker.gpu"], "additionalProperties", "'min_wrkers' was unexpected"),
    (lambda c: c["available_node_types"]["worker.gpu"].update(max_workers="four"),
     ["available_node_types", "worker.gpu", "max_workers"], "type", "'four' is not of type 'integer'"),
    (lambda c: c.update(setup_commands="pip install -e ."),
     ["setup_commands"], "type", "is not of type 'array'"),
    (lambda c: c.update(idle_timeout_minutes=-1),
     ["idle_timeout_minutes"], "minimum", "-1 is less than the minimum of 0"),
    (lambda c: c.pop("provider"), [], "required", "'provider' is a required property"),
], ids=["misspelt-key", "wrong-type", "string-not-list", "negative", "missing-provider"])
def test_the_schema_names_what_is_wrong_in_a_broken_copy(raw, validator, mutate, path, keyword, names):
    broken = copy.deepcopy(raw)
    mutate(broken)
    with pytest.raises(jsonschema.ValidationError) as err:
        validator.validate(broken)
    error = jsonschema.exceptions.best_match(validator.iter_errors(broken))
    assert (list(error.absolute_path), error.validator) == (path, keyword)
    assert names in error.message and names in str(err.value)


def test_the_head_type_is_one_of_the_node_types(raw):
    """What Ray's own config preparation checks beyond the schema."""
    assert raw["head_node_type"] in raw["available_node_types"]
    assert sum(t.get("min_workers", 0) for t in raw["available_node_types"].values()) <= raw["max_workers"]


def test_cpu_head_and_autoscaled_gpu_workers(raw):
    types = raw["available_node_types"]
    head = types[raw["head_node_type"]]
    assert "g" not in head["node_config"]["InstanceType"].split(".")[0]  # a CPU instance family
    workers = [t for name, t in types.items() if name != raw["head_node_type"]]
    assert len(workers) == 1
    gpu = workers[0]
    assert gpu["node_config"]["InstanceType"].startswith(("g", "p"))
    assert 0 <= gpu["min_workers"] <= gpu["max_workers"] <= raw["max_workers"]


def test_setup_installs_torch_first_then_the_project_from_the_synced_code(raw):
    commands = raw["setup_commands"]
    torch_at = next(i for i, c in enumerate(commands) if "torch" in c)
    project_at = next(i for i, c in enumerate(commands) if "pip install -e ." in c)
    assert torch_at < project_at
    code_dir = next(remote for remote, local in raw["file_mounts"].items() if local == ".")
    assert f"cd {code_dir}" in commands[project_at]
    assert any(".venv" in x for x in raw["rsync_exclude"]) and any(".cache" in x for x in raw["rsync_exclude"])


def test_dashboard_is_bound_to_localhost_only(raw):
    start = " ".join(raw["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start
    assert "0.0.0.0" not in start


def test_every_node_starts_ray_with_the_sweeps_train_settings(raw):
    from raycluster.connect import RAY_ENV_DEFAULTS

    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = " ".join(raw[key])
        for name, value in RAY_ENV_DEFAULTS.items():
            assert f"{name}={value}" in start, (key, name)
