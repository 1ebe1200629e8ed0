"""Whether features, a model's tokenizer and a checkpoint belong together: checked before training
resumes or a checkpoint scores features, with the command that fixes a mismatch."""

from __future__ import annotations

from omegaconf import DictConfig

from data_prep.featureset import FeatureSet
from plumbing.errors import UserError
from trainable.checkpoint import read_meta


def check_resume_task(cfg: DictConfig, resume: str) -> dict:
    """The checkpoint exists, is complete and is of this task; returns its meta."""
    meta = read_meta(resume)
    if meta["task"] != cfg.task:
        raise UserError(f"resume={resume} is a '{meta['task']}' checkpoint but task={cfg.task}; "
                        f"resume with task={meta['task']} or start a fresh run without resume")
    return meta


def check_compatible(cfg: DictConfig, fs: FeatureSet, tokenizer_ident: dict, resume: str | None) -> None:
    """Features, model and resume checkpoint must agree on the task and the tokenizer."""
    feats = fs.meta["tokenizer"]
    if fs.task != cfg.task:
        raise UserError(f"the features are for task '{fs.task}' but task={cfg.task}; "
                        "prepare features for this task")
    if tokenizer_ident["fingerprint"] != feats["fingerprint"]:
        raise UserError(
            f"the features were built with the tokenizer of '{feats['name_or_path']}' but the model "
            f"'{tokenizer_ident['name_or_path']}' has a different tokenizer (fingerprints differ); "
            "rebuild the features with the model's tokenizer (python -m data_prep model.name=...)")
    if resume is None:
        return
    meta = check_resume_task(cfg, resume)
    if meta["tokenizer"]["fingerprint"] != feats["fingerprint"]:
        raise UserError(
            f"resume={resume} was trained on features from another tokenizer "
            f"('{meta['tokenizer']['name_or_path']}') than the ones built now ('{feats['name_or_path']}'; "
            "fingerprints differ): resume with the same model.name and data settings as that run "
            "(see its train_config.yaml)")
