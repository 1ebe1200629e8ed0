"""cluster.yaml passes Ray's own cluster-config schema and keeps the properties the sweep relies on."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def validate(cfg: dict) -> None:
    validate_config(prepare_config(copy.deepcopy(cfg)))


def test_cluster_yaml_passes_rays_schema(raw):
    validate(raw)


@pytest.mark.parametrize("mutate", [
    lambda c: c.update(head_node_type="head.gpu"),
    lambda c: c["available_node_types"]["worker.gpu"].update(min_wrkers=1),
    lambda c: c["available_node_types"]["worker.gpu"].update(max_workers="four"),
    lambda c: c.update(setup_commands="pip install -e ."),
])
def test_the_schema_check_catches_broken_variants(raw, mutate):
    broken = copy.deepcopy(raw)
    mutate(broken)
    with pytest.raises(Exception):  # noqa: B017 - ValueError or jsonschema's ValidationError
        validate(broken)


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
    from sweep.resources import RAY_ENV_DEFAULTS

    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = " ".join(raw[key])
        for name, value in RAY_ENV_DEFAULTS.items():
            assert f"{name}={value}" in start, (key, name)
