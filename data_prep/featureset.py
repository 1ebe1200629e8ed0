"""The contract between data_prep and trainable: task-ready features as Arrow tables.

Feature tables (one row per window for span tasks, per pair example for ``pair``):
  common     example_id: string; input_ids: list<uint16|int32> (uint16 when the vocabulary fits);
             token_type_ids: list<int8> (only when the tokenizer produces them).
             The attention mask is implied by the row length: rows are unpadded.
  span       offset_start, offset_end: list<int32>, character offsets into the example's context,
             -1 for question and special tokens; start_positions, end_positions: int32 token
             indices of the first gold answer in this window, both 0 ([CLS]) when none is inside;
             start_targets, end_targets: list<int8>, 1 on the first/last token of every gold
             answer inside the window (on [CLS] when none is), for the marginal-likelihood loss.
  span_crf   the span columns plus tags: list<int8>, 0=O 1=B 2=I over context tokens, -100 elsewhere.
  pair       label: int8 (annotation status, 0 for a cross negative); symptom_id: int8 (index in SYMPTOMS).
Example tables (one row per example, for post-processing and evaluation):
  span tasks example_id, group, symptom, question, context: string;
             answer_texts: list<string>; answer_starts: list<int32> (empty lists = no answer).
  pair       example_id, group, symptom, sentence: string; label: int8; kind: string, annotated (a row
             of the annotations) | cross (an evidence sentence under another symptom's criterion);
             sentence_key: int32, equal for the examples of one sentence of one post (the text
             compared after normalisation), unique within the table's split.
``meta`` holds the cache key, task, tokenizer identity (name_or_path, fingerprint, vocab_size,
cls/pad token ids), the feature settings, the split manifest (group ids per split) and the data
report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from plumbing.atomic import atomic_dir, is_complete

SPLITS = ("train", "val", "test")


@dataclass
class FeatureSet:
    task: str
    features: dict[str, pa.Table]
    examples: dict[str, pa.Table]
    meta: dict[str, Any] = field(default_factory=dict)


def save_featureset(fs: FeatureSet, path: str | Path) -> Path:
    with atomic_dir(path) as tmp:
        for split, table in fs.features.items():
            pq.write_table(table, tmp / f"features-{split}.parquet")
        for split, table in fs.examples.items():
            pq.write_table(table, tmp / f"examples-{split}.parquet")
        (tmp / "meta.json").write_text(json.dumps({"task": fs.task, **fs.meta}, indent=1))
    return Path(path)


def load_featureset(path: str | Path) -> FeatureSet:
    path = Path(path)
    if not is_complete(path):
        raise FileNotFoundError(f"{path} is not a complete feature cache entry")
    meta = json.loads((path / "meta.json").read_text())
    features = {s: pq.read_table(path / f"features-{s}.parquet") for s in SPLITS
                if (path / f"features-{s}.parquet").exists()}
    examples = {s: pq.read_table(path / f"examples-{s}.parquet") for s in SPLITS
                if (path / f"examples-{s}.parquet").exists()}
    return FeatureSet(task=meta.pop("task"), features=features, examples=examples, meta=meta)
