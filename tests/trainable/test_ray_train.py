"""The same loop under a real Ray TorchTrainer: 2 CPU workers, gloo DDP, features from the object store."""

from __future__ import annotations

import json
import math
import os

import pytest

ray = pytest.importorskip("ray")

from ray.train import CheckpointConfig, RunConfig  # noqa: E402
from ray_helpers import fit_bounded, local_ray  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from trainable.checkpoint import read_meta  # noqa: E402
from trainable.ray_train import build_trainer, ddp_backend  # noqa: E402


@pytest.fixture(scope="module")
def ray_cluster():
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    # address="local": a fresh instance even when another Ray runs on this machine. One logical
    # GPU, for the placement of ranks that share a device.
    with local_ray(num_cpus=2, num_gpus=1, include_dashboard=True, log_to_driver=False):
        yield


@pytest.mark.slow
def test_loop_runs_under_torchtrainer_with_two_cpu_workers(ray_cluster, train_config, demo_features, tmp_path):
    fs = demo_features("pair")
    ref = ray.put(fs)
    config = train_config("pair", tmp_path / "run", epochs=2, patience=0, log_every=1)
    run_config = RunConfig(name="train", storage_path=str(tmp_path / "storage"),
                           checkpoint_config=CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="metric",
                                                              checkpoint_score_order="max"))
    trainer = build_trainer(config, ref, num_workers=2, use_gpu=False, resources_per_worker={"CPU": 1},
                            run_config=run_config)
    result = fit_bounded(trainer)
    assert result.error is None
    # V2's result.metrics are those of the latest checkpoint (an improving epoch).
    assert {"epoch", "metric", "val_f1", "val_loss", "train_loss", "samples_per_s"} <= set(result.metrics)
    checkpoint = result.get_best_checkpoint("metric", "max")
    with checkpoint.as_directory() as path:
        meta = read_meta(path)
    assert meta["task"] == "pair" and meta["tokenizer"] == fs.meta["tokenizer"]
    assert meta["epoch"] == result.metrics["epoch"]
    # rank 0 keeps the run's own epoch history where the run lives (a sweep trial's directory)
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert result.metrics["metric"] in [h["metric"] for h in history]

    tb = EventAccumulator(str(tmp_path / "run" / "tb"))  # written by rank 0 only, into the run's out_dir
    tb.Reload()
    assert [e.step for e in tb.Scalars("val/f1")] == [1, 2]
    # Each rank ran half the batches: ceil(rows / (2 workers * batch_size)) optimizer steps per epoch.
    per_epoch = math.ceil(fs.features["train"].num_rows / (2 * config["training"]["batch_size"]))
    assert [e.step for e in tb.Scalars("train/loss")] == list(range(1, 2 * per_epoch + 1))


@pytest.mark.parametrize(("workers", "per_worker", "nccl", "expected"), [
    (2, {"CPU": 1, "GPU": 1}, True, "nccl"),  # every rank owns a GPU
    (4, {"CPU": 1, "GPU": 2}, True, "nccl"),
    (2, {"CPU": 1, "GPU": 0.5}, True, "gloo"),  # two ranks may land on one GPU: NCCL refuses that
    (2, {"CPU": 1, "GPU": 0.25}, True, "gloo"),
    (1, {"CPU": 1, "GPU": 1}, True, "gloo"),  # one rank never communicates
    (2, {"CPU": 1}, True, "gloo"),  # CPU workers
    (2, {"CPU": 1, "GPU": 1}, False, "gloo"),  # torch built without NCCL
])
def test_ddp_backend_follows_the_layout(workers, per_worker, nccl, expected):
    assert ddp_backend(workers, per_worker, nccl_available=nccl) == expected


@pytest.mark.slow
def test_two_ranks_sharing_one_gpu_get_gloo(ray_cluster, tmp_path):
    """Two workers of half a (logical) GPU each land on the same device; their process group is gloo."""
    from ray.train.torch import TorchConfig, TorchTrainer

    out = tmp_path / "ranks"
    out.mkdir()

    def probe():  # defined here so Ray ships it by value (the test module is not importable by workers)
        import json

        import ray.train
        import torch.distributed as dist

        rank = ray.train.get_context().get_world_rank()
        seen = {"backend": dist.get_backend(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}
        (out / f"{rank}.json").write_text(json.dumps(seen))

    trainer = TorchTrainer(
        probe,
        scaling_config=ray.train.ScalingConfig(num_workers=2, use_gpu=True,
                                               resources_per_worker={"CPU": 1, "GPU": 0.5}),
        torch_config=TorchConfig(backend=ddp_backend(2, {"CPU": 1, "GPU": 0.5}, nccl_available=True)),
        run_config=RunConfig(name="probe", storage_path=str(tmp_path / "storage")))
    result = fit_bounded(trainer)
    assert result.error is None
    seen = [json.loads((out / f"{rank}.json").read_text()) for rank in (0, 1)]
    assert seen == [{"backend": "gloo", "gpu_ids": ["0"]}] * 2  # both ranks on the one GPU, over gloo


@pytest.mark.slow
def test_a_user_error_in_the_workers_is_not_retried(ray_cluster, train_config, tmp_path):
    """A worker that refuses its config ends the run at once (no failed attempt for Ray to retry),
    and the message reaches the caller as a UserError."""
    from ray.train import FailureConfig

    from plumbing.errors import UserError
    from trainable.ray_train import raise_user_error

    config = train_config("pair", tmp_path / "run", epochs=1, device="cuda")  # this machine has no CUDA
    trainer = build_trainer(config, None, num_workers=2, use_gpu=False, resources_per_worker={"CPU": 1},
                            run_config=RunConfig(name="train", storage_path=str(tmp_path / "storage"),
                                                 failure_config=FailureConfig(max_failures=2)))
    result = fit_bounded(trainer)
    assert result.error is None  # nothing failed, so nothing was retried
    with pytest.raises(UserError, match="cuda asked but no CUDA device is visible"):
        raise_user_error(tmp_path / "run")
