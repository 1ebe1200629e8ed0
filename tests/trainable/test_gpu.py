"""The CUDA paths of the loop, on a real GPU (``pytest -m gpu`` on the GPU machine; skipped without CUDA).

What only a GPU can show: bf16 autocast with TF32 and fused AdamW, fp16 with a live GradScaler, a
compiled run whose graph count stays bounded, a steady-state step that never waits on the host
(``torch.cuda.set_sync_debug_mode("error")`` turns any synchronisation into an exception), and the
DDP backend for ranks that share one GPU (gloo) or own one each (NCCL).
"""

from __future__ import annotations

import json
from itertools import islice

import pytest
import torch
from ray_helpers import fit_bounded, local_ray
from torch._dynamo.utils import counters

from trainable.batching import prefetch
from trainable.loop import resolve_config, setup, train_loop, train_step
from trainable.session import LocalSession

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]



def _run(task, train_config, demo_features, tmp_path, **training):
    """A whole run on the GPU; returns its per-epoch history."""
    fs = demo_features(task)
    config = train_config(task, tmp_path, device="cuda", patience=0, **training)
    train_loop(config, session=LocalSession(tmp_path), features=fs)
    return json.loads(LocalSession(tmp_path).metrics_path.read_text())


def _setup(task, train_config, demo_features, tmp_path, **training):
    config = train_config(task, tmp_path, device="cuda", **training)
    return setup(resolve_config(config), LocalSession(tmp_path), demo_features(task))


def test_bf16_step_uses_tf32_and_fused_adamw(train_config, demo_features, tmp_path):
    run = _setup("span", train_config, demo_features, tmp_path, amp="bf16")
    assert run.device.type == "cuda"
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert run.optimizer.defaults["fused"] is True
    assert not run.scaler.is_enabled()  # bf16 needs no loss scaling
    history = _run("span", train_config, demo_features, tmp_path / "run", amp="bf16", epochs=1)
    assert torch.isfinite(torch.tensor(history[0]["train_loss"]))


def test_fp16_step_runs_with_a_grad_scaler(train_config, demo_features, tmp_path):
    run = _setup("pair", train_config, demo_features, tmp_path, amp="fp16")
    assert run.scaler.is_enabled()
    batch = next(iter(prefetch(run.sampler, run.collate, run.device)))
    loss = train_step(run, [batch])
    assert torch.isfinite(loss) and run.scaler.get_scale() > 0
    history = _run("pair", train_config, demo_features, tmp_path / "run", amp="fp16", epochs=1)
    assert torch.isfinite(torch.tensor(history[0]["train_loss"]))


@pytest.mark.parametrize(("task", "graphs"), [("span", 2), ("span_crf", 4), ("pair", 2)])
def test_compiled_gpu_run_builds_a_bounded_number_of_graphs(task, graphs, train_config, demo_features, tmp_path):
    torch._dynamo.reset()
    counters.clear()
    history = _run(task, train_config, demo_features, tmp_path, compile=True, epochs=2)
    assert len(history) == 2
    assert counters["stats"]["unique_graphs"] == graphs


@pytest.mark.parametrize("task", ["span", "pair"])
def test_steady_state_step_never_waits_on_the_host(task, train_config, demo_features, tmp_path):
    """Compiled (eager BERT-SDPA asks ``mask.all()`` on the host in transformers' mask code, once per
    forward; under compile that check is skipped). bf16: fp16's GradScaler reads inf flags by design."""
    torch._dynamo.reset()
    run = _setup(task, train_config, demo_features, tmp_path, compile=True, amp="bf16", log_every=1000)
    run.model.train()
    batches = prefetch(run.sampler, run.collate, run.device)
    for batch in islice(batches, 3):  # compile and warm the allocators first
        train_step(run, [batch])
    torch.cuda.synchronize()
    losses = []
    torch.cuda.set_sync_debug_mode("error")
    try:
        for batch in islice(batches, 5):
            losses.append(train_step(run, [batch]))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(torch.stack(losses)).all()


@pytest.fixture(scope="module")
def gpu_ray():
    ray = pytest.importorskip("ray")
    with local_ray(num_cpus=4, num_gpus=torch.cuda.device_count(), include_dashboard=True, log_to_driver=False):
        yield ray


@pytest.mark.parametrize(("gpus_per_worker", "backend"), [(0.5, "gloo"), (1, "nccl")])
def test_two_worker_trial_on_gpus(gpus_per_worker, backend, gpu_ray, train_config, demo_features, tmp_path):
    """Two ranks sharing one GPU train over gloo; two ranks on two GPUs over NCCL."""
    if gpus_per_worker * 2 > torch.cuda.device_count():
        pytest.skip(f"needs {int(gpus_per_worker * 2)} GPUs")
    from ray.train import RunConfig

    from trainable.ray_train import build_trainer, ddp_backend

    per_worker = {"CPU": 1, "GPU": gpus_per_worker}
    assert ddp_backend(2, per_worker, nccl_available=torch.distributed.is_nccl_available()) == backend
    config = train_config("pair", tmp_path / "unused", epochs=1, patience=0)
    trainer = build_trainer(config, gpu_ray.put(demo_features("pair")), num_workers=2, use_gpu=True,
                            resources_per_worker=per_worker,
                            run_config=RunConfig(name="train", storage_path=str(tmp_path / "storage")))
    result = fit_bounded(trainer)
    assert result.error is None
    assert result.metrics["epoch"] == 1

