"""``python -m trainable.predict checkpoint=DIR input=posts.csv|jsonl``: run a trained model on new posts.

Posts are featurized exactly as in training (the checkpoint's tokenizer files, max_length,
doc_stride and question_mode from its saved config) in chunks of whole posts, and scored with
the evaluation's batched model pass. One JSON line per prediction in ``predictions.jsonl``:

  span      per (post, symptom): evidence (bool), text/start/end of the evidence span or null,
            null_score_diff (null score - best span score; the model answers when it is
            <= null_threshold, 0 by default), and best_span (the best candidate either way)
  span_crf  per (post, symptom): evidence (bool), spans [{text, start, end, score}] decoded by
            Viterbi (score: mean B/I-over-O margin of its tokens), score (the best span's)
  pair      per (sentence, symptom): sentence_id <post_id>_<k>, start/end, sentence, probability
            that the sentence is evidence for the symptom, evidence (probability >= pair_threshold,
            by default the threshold chosen on validation that the checkpoint keeps); and
            ``posts.json``, per post the symptoms with evidence and their best sentences
            (``trainable.post_summary``), also printed as a table
Character offsets index the post text as read from the input file.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import MISSING, DictConfig

from data_prep.config import doc
from data_prep.records import Post
from data_prep.redsm5 import read_posts
from plumbing.cli import absolute, parse_config, required, run_cli, save_config
from plumbing.errors import ConfigError
from plumbing.jsonio import write_jsonl
from trainable.inference import PREDICTIONS_FILE, checkpoint_tokenizer, load_checkpoint
from trainable.post_predictions import checkpoint_header, noted_fields, predict_posts, resolve_pair_threshold, summary
from trainable.post_summary import POSTS_FILE, format_posts, post_summaries, write_posts_json

DESCRIPTION = """
Run a trained checkpoint on new posts (a .csv with columns post_id,text or a .jsonl with one
{"post_id": ..., "text": ...} per line). span / span_crf: the evidence span (or none) per post and
symptom; pair: the evidence probability per sentence and symptom, and per post the symptoms with
evidence and their best sentences (posts.json, printed as a table). Writes predictions.jsonl to
out_dir (default: <checkpoint>/../predict).
"""


@dataclass
class PredictConfig:
    checkpoint: str = doc("checkpoint directory (e.g. runs/single/checkpoint)", MISSING)
    input: str = doc("posts file: .csv (header post_id,text) or .jsonl (one {post_id, text} per line)", MISSING)
    out_dir: str | None = doc("where predictions.jsonl goes; default <checkpoint>/../predict", None)
    batch_size: int | None = doc("windows per model batch; default: the checkpoint's training.eval_batch_size",
                                 None)
    null_threshold: float = doc("span: answer when null_score_diff <= this (0 = the model's own decision; "
                                "python -m trainable.evaluate split=val reports a tuned best_f1_thresh)", 0.0)
    pair_threshold: float | None = doc("pair: evidence when the probability >= this; default: the threshold chosen "
                                       "on validation, kept in the checkpoint (0.5 for older checkpoints)", None)
    device: str = doc("auto | cpu | cuda", "auto")


def print_post_summaries(out: Path, posts: list[Post], records: list[dict], threshold: float, source: str) -> None:
    """pair: posts.json (symptoms with evidence per post, their top sentences) and the same as a table."""
    summaries = post_summaries([p.post_id for p in posts], records, threshold)
    path = write_posts_json(out / POSTS_FILE, summaries, threshold, source)
    print(format_posts(summaries, threshold))
    print(f"evidence threshold {threshold:.4f}: {source}")
    print(f"wrote {path}")


def check_thresholds(cfg: DictConfig) -> None:
    if cfg.pair_threshold is not None and not 0 <= cfg.pair_threshold <= 1:
        raise ConfigError("pair_threshold", f"must be in [0, 1]; got {cfg.pair_threshold}")
    if cfg.batch_size is not None and cfg.batch_size < 1:
        raise ConfigError("batch_size", f"must be at least 1; got {cfg.batch_size}")


def run(cfg: DictConfig) -> Path:
    """Predict on ``cfg.input``; returns the path of predictions.jsonl."""
    checkpoint = cfg.checkpoint = absolute(required(cfg, "checkpoint", "checkpoint=runs/single/checkpoint"))
    source = cfg.input = absolute(required(cfg, "input", "input=posts.csv"))
    check_thresholds(cfg)
    overrides = {"training": {"eval_batch_size": cfg.batch_size}} if cfg.batch_size else {}
    ckpt = load_checkpoint(checkpoint, device=cfg.device, overrides=overrides)
    posts = read_posts(source)
    tokenizer = checkpoint_tokenizer(ckpt)
    threshold_source = resolve_pair_threshold(cfg, ckpt.meta)
    out = Path(absolute(cfg.out_dir)) if cfg.out_dir else ckpt.path.parent / "predict"
    cfg.out_dir = str(out)
    save_config(cfg, out)
    path = out / PREDICTIONS_FILE
    records = []

    def noted(stream):  # streams to disk while keeping what the summary counts
        for record in stream:
            records.append(noted_fields(record))
            yield record

    header, warning = checkpoint_header(ckpt.meta)
    print(header, flush=True)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    write_jsonl(path, noted(predict_posts(ckpt, tokenizer, posts, cfg)))
    print(summary(ckpt.meta["task"], len(posts), records))
    if ckpt.meta["task"] == "pair":
        print_post_summaries(out, posts, records, cfg.pair_threshold, threshold_source)
    print(f"wrote {path}")
    return path


def main(argv: list[str]) -> None:
    run(parse_config(PredictConfig, argv, "trainable.predict", DESCRIPTION, positional="checkpoint"))


if __name__ == "__main__":
    run_cli(main)
