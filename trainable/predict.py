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

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from omegaconf import MISSING, DictConfig
from tqdm.auto import tqdm

from data_prep.config import doc
from data_prep.examples import span_examples
from data_prep.features import PROGRESS_ABOVE, featurize_pair, featurize_span
from data_prep.records import PairExample, Post
from data_prep.redsm5 import read_posts
from data_prep.symptoms import SYMPTOMS, criteria
from data_prep.text import split_sentences
from data_prep.tokenizer import load_tokenizer, tokenizer_identity
from plumbing.cli import parse_config, run_cli, save_config
from plumbing.errors import ConfigError, UserError
from plumbing.jsonio import write_jsonl
from trainable.batching import Columns, columns_from_table
from trainable.evaluate import Checkpoint, absolute, load_checkpoint, required
from trainable.evaluation import crf_spans, model_outputs, span_answers
from trainable.post_summary import POSTS_FILE, evidence_threshold, format_posts, post_summaries, write_posts_json

DESCRIPTION = """
Run a trained checkpoint on new posts (a .csv with columns post_id,text or a .jsonl with one
{"post_id": ..., "text": ...} per line). span / span_crf: the evidence span (or none) per post and
symptom; pair: the evidence probability per sentence and symptom, and per post the symptoms with
evidence and their best sentences (posts.json, printed as a table). Writes predictions.jsonl to
out_dir (default: <checkpoint>/../predict).
"""
PREDICTIONS_FILE = "predictions.jsonl"
# Posts per featurization chunk are bounded by examples, so the featurizer's own progress bar stays
# off (ours counts posts) and memory stays flat on large inputs.
CHUNK_EXAMPLES = PROGRESS_ABOVE
BAR_ABOVE = 50  # posts


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


# ---------------------------------------------------------------- reading posts


# ---------------------------------------------------------------- per task


def _decode_span(outputs: list, cols: Columns, examples: list, ckpt: Checkpoint, cfg) -> Iterator[dict]:
    contexts = {ex.example_id: ex.context for ex in examples}
    t = ckpt.cfg.training
    spans, diffs = span_answers(outputs, cols, contexts, t.n_best_size, t.max_answer_length)
    for ex in examples:
        best, diff = spans[ex.example_id], diffs[ex.example_id]
        span = {"text": ex.context[best[0]:best[1]], "start": best[0], "end": best[1]} if best else None
        evidence = best is not None and diff <= cfg.null_threshold
        yield {"post_id": ex.group, "symptom": ex.symptom, "evidence": evidence,
               **(span if evidence else {"text": None, "start": None, "end": None}),
               "null_score_diff": diff, "best_span": span}


def _decode_span_crf(outputs: list, cols: Columns, examples: list, ckpt: Checkpoint, cfg) -> Iterator[dict]:
    found = crf_spans(outputs, cols)
    for ex in examples:
        spans = sorted(found.get(ex.example_id, {}).items())
        yield {"post_id": ex.group, "symptom": ex.symptom, "evidence": bool(spans),
               "spans": [{"text": ex.context[s:e], "start": s, "end": e, "score": score} for (s, e), score in spans],
               "score": max((score for _, score in spans), default=None)}


def _decode_pair(outputs: list, cols: Columns, examples: list, ckpt: Checkpoint, cfg) -> Iterator[dict]:
    for ex, prob in zip(examples, outputs, strict=True):
        sentence_id, k, start, end = ex.example_id.rsplit("/", 1)[0], *ex.position
        yield {"post_id": ex.group, "sentence_id": sentence_id, "sentence_index": k, "start": start, "end": end,
               "sentence": ex.sentence, "symptom": ex.symptom, "probability": float(prob),
               "evidence": bool(prob >= cfg.pair_threshold)}


@dataclass(frozen=True)
class _SentencePair(PairExample):
    position: tuple[int, int, int] = (0, 0, 0)  # (k, start, end) of the sentence in its post


def pair_examples_of(post: Post) -> list[_SentencePair]:
    """Every (sentence, symptom) pair of a post, ids ``<post_id>_<k>/<SYMPTOM>`` as in ReDSM5."""
    texts = criteria()
    return [_SentencePair(example_id=f"{post.post_id}_{k}/{symptom}", criterion=texts[symptom],
                          sentence=post.text[s:e], label=0, symptom=symptom, group=post.post_id, position=(k, s, e))
            for k, (s, e) in enumerate(split_sentences(post.text)) for symptom in SYMPTOMS]


DECODERS = {"span": _decode_span, "span_crf": _decode_span_crf, "pair": _decode_pair}


# ---------------------------------------------------------------- the run


def examples_of(post: Post, task: str, question_mode: str) -> list:
    if task == "pair":
        return pair_examples_of(post)
    return span_examples({post.post_id: post.text}, [], question_mode)


def featurize(examples: list, task: str, tokenizer, features) -> Columns:
    if task == "pair":
        table = featurize_pair(examples, tokenizer, features.max_length)
    else:
        table = featurize_span(examples, tokenizer, features.max_length, features.doc_stride,
                               bio=task == "span_crf")
    return columns_from_table(table)


def chunks(posts: list[Post], task: str, question_mode: str) -> Iterator[tuple[int, list]]:
    """(posts in the chunk, their examples), whole posts, about CHUNK_EXAMPLES examples each."""
    batch, n_posts = [], 0
    for post in posts:
        examples = examples_of(post, task, question_mode)
        if batch and len(batch) + len(examples) > CHUNK_EXAMPLES:
            yield n_posts, batch
            batch, n_posts = [], 0
        batch += examples
        n_posts += 1
    if batch:
        yield n_posts, batch


def checkpoint_tokenizer(ckpt: Checkpoint):
    """The tokenizer files saved with the checkpoint, which must be the ones the model was trained with."""
    tokenizer = load_tokenizer(str(ckpt.path))
    if tokenizer_identity(tokenizer)["fingerprint"] != ckpt.meta["tokenizer"]["fingerprint"]:
        raise UserError(f"checkpoint '{ckpt.path}': its tokenizer files differ from the tokenizer the model was "
                        f"trained with ('{ckpt.meta['tokenizer']['name_or_path']}'; fingerprints differ). Restore "
                        "the checkpoint's original tokenizer files (or use an untouched copy of the checkpoint)")
    return tokenizer


def predict_posts(ckpt: Checkpoint, tokenizer, posts: list[Post], cfg) -> Iterator[dict]:
    """Prediction records of ``posts``, in input order (see the module docstring)."""
    task, features = ckpt.meta["task"], ckpt.cfg.features
    pad = ckpt.meta["tokenizer"]["pad_token_id"]
    with tqdm(total=len(posts), unit="post", desc="predict", disable=len(posts) <= BAR_ABOVE) as bar:
        for n_posts, examples in chunks(posts, task, features.question_mode):
            cols = featurize(examples, task, tokenizer, features)
            outputs, _ = model_outputs(ckpt.model, cols, task, batch_size=ckpt.cfg.training.eval_batch_size,
                                       device=ckpt.device, autocast=ckpt.autocast, pad_token_id=pad)
            yield from DECODERS[task](outputs, cols, examples, ckpt, cfg)
            bar.update(n_posts)


def summary(task: str, n_posts: int, records: list[dict]) -> str:
    evidence = Counter(r["symptom"] for r in records if r["evidence"])
    found = ", ".join(f"{s} {evidence[s]}" for s in SYMPTOMS if evidence[s]) or "none"
    if task == "pair":
        sentences = len({(r["post_id"], r["sentence_index"]) for r in records})
        return (f"{n_posts} posts, {sentences} sentences -> {len(records)} (sentence, symptom) probabilities; "
                f"evidence sentences per symptom: {found}")
    return f"{n_posts} posts -> {len(records)} (post, symptom) predictions; posts with evidence per symptom: {found}"


def resolve_pair_threshold(cfg, meta: dict) -> str | None:
    """pair: sets cfg.pair_threshold to the threshold in force (saved with the config); returns its source."""
    if meta["task"] != "pair":
        return None
    cfg.pair_threshold, source = evidence_threshold(meta, cfg.pair_threshold)
    return source


def noted_fields(record: dict) -> dict:
    """What the summaries need of a record: counts, and the sentence of a pair record with evidence."""
    keys = ("post_id", "symptom", "evidence", "sentence_index", "probability")
    if record.get("evidence") and "sentence" in record:
        keys += ("sentence_id", "sentence")
    return {k: record[k] for k in keys if k in record}


def print_post_summaries(out: Path, posts: list[Post], records: list[dict], threshold: float, source: str) -> None:
    """pair: posts.json (symptoms with evidence per post, their top sentences) and the same as a table."""
    summaries = post_summaries([p.post_id for p in posts], records, threshold)
    path = write_posts_json(out / POSTS_FILE, summaries, threshold, source)
    print(format_posts(summaries, threshold))
    print(f"evidence threshold {threshold:.4f}: {source}")
    print(f"wrote {path}")


def check_thresholds(cfg) -> None:
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
