"""New posts through a trained checkpoint: featurized exactly as in training (the checkpoint's
tokenizer, max_length, doc_stride and question_mode), in chunks of whole posts so memory stays flat,
scored with the batched model pass (``trainable.model_pass``) and decoded into one record per prediction
(the record fields are listed in ``trainable.predict``'s docstring)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from omegaconf import DictConfig
from tqdm.auto import tqdm

from data_prep.examples import span_examples
from data_prep.features import PROGRESS_ABOVE, featurize_pair, featurize_span
from data_prep.records import PairExample, Post
from data_prep.symptoms import SYMPTOMS, criteria
from data_prep.text import split_sentences
from trainable.batching import Columns, columns_from_table
from trainable.inference import Checkpoint
from trainable.model_pass import model_outputs
from trainable.post_summary import evidence_threshold
from trainable.scoring import crf_spans, span_answers

# Posts per featurization chunk are bounded by examples, so the featurizer's own progress bar stays
# off (ours counts posts) and memory stays flat on large inputs.
CHUNK_EXAMPLES = PROGRESS_ABOVE
BAR_ABOVE = 50  # posts


def _decode_span(outputs: list, cols: Columns, examples: list, ckpt: Checkpoint, cfg: DictConfig) -> Iterator[dict]:
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


def _decode_span_crf(outputs: list, cols: Columns, examples: list, ckpt: Checkpoint, cfg: DictConfig) -> Iterator[dict]:
    found = crf_spans(outputs, cols)
    for ex in examples:
        spans = sorted(found.get(ex.example_id, {}).items())
        yield {"post_id": ex.group, "symptom": ex.symptom, "evidence": bool(spans),
               "spans": [{"text": ex.context[s:e], "start": s, "end": e, "score": score} for (s, e), score in spans],
               "score": max((score for _, score in spans), default=None)}


def _decode_pair(outputs: list, cols: Columns, examples: list, ckpt: Checkpoint, cfg: DictConfig) -> Iterator[dict]:
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


def predict_posts(ckpt: Checkpoint, tokenizer, posts: list[Post], cfg: DictConfig) -> Iterator[dict]:
    """Prediction records of ``posts``, in input order (see the module docstring)."""
    task, features = ckpt.meta["task"], ckpt.cfg.features
    pad = ckpt.meta["tokenizer"]["pad_token_id"]
    with tqdm(total=len(posts), unit="post", desc="predict", disable=True if len(posts) <= BAR_ABOVE else None) as bar:
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


# validation scalars at or below which a checkpoint has learned next to nothing: a pair model that ranks
# evidence no better than a coin (ROC-AUC 0.5) or picks a sentence's own symptom of ten no better than a
# guess (own_top1 0.1); a span model that finds no evidence span (HasAns F1 0)
NEAR_CHANCE = {"pair": {"roc_auc": 0.6, "own_top1": 0.2}, "span": {"HasAns_f1": 5.0},
               "span_crf": {"HasAns_f1": 5.0}}


def checkpoint_header(meta: dict) -> tuple[str, str | None]:
    """What the checkpoint scored on validation (its epoch, the ranking metric and the near-chance
    scalars), and a warning when those are near chance: predictions look alike whatever the model."""
    val = meta.get("val") or {}
    bounds = NEAR_CHANCE[meta["task"]]
    shown = {meta.get("metric_name", "metric"): meta.get("metric"), **{k: val.get(k) for k in bounds}}
    figures = ", ".join(f"{k} {v:.4g}" for k, v in shown.items() if v is not None)
    header = f"checkpoint: {meta['task']}, epoch {meta.get('epoch', '?')}, validation {figures or 'not recorded'}"
    low = [f"{k} {val[k]:.4g} <= {bound}" for k, bound in bounds.items()
           if val.get(k) is not None and val[k] <= bound]
    warning = (f"warning: this checkpoint is near chance on validation ({', '.join(low)}); its predictions "
               "say little about the posts" if low else None)
    return header, warning


def resolve_pair_threshold(cfg: DictConfig, meta: dict) -> str | None:
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

