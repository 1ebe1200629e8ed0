"""The Ray side of a training run: a ``TorchTrainer`` whose workers run ``train_loop``.

The sweep builds one of these per trial; the features travel as an object-store reference
wrapped in a dict ({"ref": ref}) so Ray hands the reference, not the data, to each worker.
"""

from __future__ import annotations

from typing import Any

import ray
import ray.train
import torch
from ray.train.torch import TorchConfig, TorchTrainer

from plumbing import storage
from plumbing.errors import UserError

USER_ERROR_FILE = "user_error.txt"  # in the run's out_dir: why a worker refused to train
FEATURES_KEY = "features_ref"  # the one key a worker's config carries beside the TrainConfig's own


def worker_loop(config: dict) -> None:
    """``train_loop`` for a Ray Train worker, where a user error (bad config or data, a device the
    node lacks) ends the run instead of failing it: Ray Train retries every failed worker group up
    to ``max_failures`` times, and such an error would repeat identically each time. The message
    goes to ``<out_dir>/user_error.txt``; the sweep's trial driver raises it (``raise_user_error``).
    The loop is imported here, in the worker that runs it: the trial that only builds the trainer
    (``build_trainer``) is spared its imports (seconds per trial, before its workers start).
    A file, not a report: a report would reach Tune as an epoch's result, and Ray Train has no
    error that it does not retry.
    """
    from trainable.loop import train_loop

    config = dict(config)
    shared = config.pop(FEATURES_KEY, None)  # {"ref": ObjectRef}: build_trainer's wrapping
    try:
        train_loop(config, features=ray.get(shared["ref"]) if shared else None)
    except UserError as e:
        storage.write_text(storage.join(config.get("out_dir") or ".", USER_ERROR_FILE), str(e))


def raise_user_error(out_dir: str) -> None:
    """After ``fit()``: the user error a worker recorded, as a UserError (nothing when none)."""
    path = storage.join(out_dir, USER_ERROR_FILE)
    if storage.exists(path):
        raise UserError(storage.read_text(path))


def ddp_backend(num_workers: int, resources_per_worker: dict, *, nccl_available: bool) -> str:
    """nccl only when every rank of the trial owns a whole GPU, else gloo.

    NCCL refuses two ranks on one device (``ncclInvalidUsage``), and with fractional GPUs Ray may
    place two ranks of a trial on the same GPU; gloo runs there (DDP over gloo works on CUDA
    tensors) and on CPU-only machines, where NCCL is not built in. A single rank never
    communicates, so it gets gloo too and never touches NCCL.
    """
    whole_gpus = resources_per_worker.get("GPU", 0) >= 1
    return "nccl" if num_workers > 1 and whole_gpus and nccl_available else "gloo"


def build_trainer(
    config: dict,
    features_ref: Any,
    *,
    num_workers: int,
    use_gpu: bool,
    resources_per_worker: dict | None = None,
    run_config: ray.train.RunConfig | None = None,
) -> TorchTrainer:
    """A TorchTrainer running ``train_loop(config)`` on ``num_workers`` workers.

    ``config``: the resolved TrainConfig as a plain dict (``OmegaConf.to_container``); rank 0 writes
    TensorBoard files into its ``out_dir``. ``features_ref``: an ObjectRef of
    the FeatureSet (``ray.put(prepare_features(cfg))``), or None to let each worker prepare the
    features itself from the cache. The DDP backend comes from the layout (``ddp_backend``).
    ``run_config`` carries storage, checkpoint retention and callbacks; for a trial inside a
    sweep it should put the run under the trial's storage path (README: Sweeps and clusters).
    """
    loop_config = dict(config)
    if features_ref is not None:
        loop_config[FEATURES_KEY] = {"ref": features_ref}
    return TorchTrainer(
        worker_loop,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                               resources_per_worker=resources_per_worker),
        torch_config=TorchConfig(backend=ddp_backend(num_workers, resources_per_worker or {},
                                                     nccl_available=torch.distributed.is_nccl_available())),
        run_config=run_config,
    )
