"""Tokenize examples into the unpadded, compact Arrow tables described in ``featureset.py``.

Span tasks follow Hugging Face's run_qa recipe: question + context, the context cut into
windows of ``max_length`` tokens that share ``doc_stride`` tokens, character offsets kept only on
context tokens. The windows are cut here (``_windows``) from one untruncated encoding of the pair,
not by the tokenizer's ``return_overflowing_tokens``: tokenizers 0.23.2 returns only the first
overflowing window, cut short (a 315-token post gave 2 windows instead of 7), so a post's later
windows depended on the installed version. ``_windows`` gives the windows tokenizers 0.23.3 gives,
on every version. The empty question (question_mode=empty) is still tokenized as a pair with an
empty first segment (``[CLS] [SEP] context [SEP]`` for BERT): the context stays sequence 1, so
one code path finds context tokens, offsets and answers for every question mode and every
tokenizer template, at the cost of one extra [SEP].

``start_positions``/``end_positions`` point at the first gold answer (in the example's order)
that lies wholly inside the window, else at [CLS] (0, 0).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from data_prep.examples import kind_of, sentence_key
from data_prep.records import PairExample, QAExample
from data_prep.symptoms import SYMPTOM_ID
from data_prep.tokenizer import uses_token_type_ids
from plumbing.errors import ConfigError

BATCH = 256
PROGRESS_ABOVE = 300  # examples; smaller inputs finish before a bar would help
TAG_O, TAG_B, TAG_I, TAG_IGNORE = 0, 1, 2, -100


def _ids_type(tokenizer) -> pa.DataType:
    return pa.uint16() if len(tokenizer) <= 65535 else pa.int32()


def _list_column(rows: list[np.ndarray], value_type: pa.DataType) -> pa.Array:
    """One Arrow list array from per-row numpy arrays (one copy, no per-element Python objects)."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=value_type))


def _batches(items: Sequence, desc: str) -> Iterator[Sequence]:
    # None: tqdm draws the bar on a terminal only
    with tqdm(total=len(items), desc=desc, unit="ex", disable=True if len(items) <= PROGRESS_ABOVE else None) as bar:
        for i in range(0, len(items), BATCH):
            batch = items[i:i + BATCH]
            yield batch
            bar.update(len(batch))


def _check_room(tokenizer, questions: Sequence[str], max_length: int, stride: int, lengths: dict,
                shorter: str) -> None:
    """Fail with the config key to change when a question leaves too little room for the context.

    Checked up front, for the longest question of the batch, because ``_windows`` needs more
    context tokens per window than ``stride``, and would otherwise only find out on contexts long
    enough to need several windows.
    """
    new = [q for q in dict.fromkeys(questions) if q not in lengths]
    if new:
        encoded = tokenizer(new, add_special_tokens=False)["input_ids"]
        lengths.update({q: len(ids) for q, ids in zip(new, encoded, strict=True)})
    question = max(dict.fromkeys(questions), key=lambda q: lengths[q])
    needed = lengths[question] + tokenizer.num_special_tokens_to_add(pair=True)
    room = max_length - needed
    if room <= 0:
        raise ConfigError("features.max_length", (
            f"the question {question[:60]!r} needs {needed} tokens with the special tokens, so "
            f"max_length={max_length} leaves no room for the context; raise features.max_length "
            f"or {shorter}"))
    if stride >= room:
        raise ConfigError("features.doc_stride", (
            f"must be below the {room} context tokens per window left by max_length={max_length} "
            f"after the question {question[:60]!r} ({needed} tokens); got {stride}"))


def _context_mask(encoding) -> np.ndarray:
    return np.array([s == 1 for s in encoding.sequence_ids], dtype=bool)


def _windows(encoding, max_length: int, stride: int) -> Iterator[tuple[np.ndarray, ...]]:
    """(ids, type ids, offsets, context mask) of each window of an untruncated question + context
    encoding: the special tokens and question around the context kept, the context cut into
    ``room`` tokens per window, each window starting ``room - stride`` tokens after the last one,
    the last one ending at the context's end (Rust's ``only_second`` overflow, made explicit).

    Whatever the tokenizer's pair template puts before and after the context (``[CLS] q [SEP]``,
    RoBERTa's ``</s></s>``, ...) is copied from the encoding, so no template is rebuilt here.
    """
    ids = np.asarray(encoding.ids)
    types = np.asarray(encoding.type_ids, dtype=np.int8)
    offsets = np.asarray(encoding.offsets, dtype=np.int32).reshape(-1, 2)
    ctx = _context_mask(encoding)
    idx = np.flatnonzero(ctx)
    n = len(idx)
    if len(ids) <= max_length or n == 0:
        yield ids, types, offsets, ctx
        return
    first, last = int(idx[0]), int(idx[-1]) + 1
    if last - first != n:
        raise ValueError("the tokenizer's pair template splits the context; span windows need it in one piece")
    room = max_length - (len(ids) - n)  # > stride: _check_room made sure
    head, tail = np.arange(first), np.arange(last, len(ids))
    for start in range(0, n, room - stride):
        stop = min(start + room, n)
        take = np.concatenate([head, np.arange(first + start, first + stop), tail])
        yield ids[take], types[take], offsets[take], ctx[take]
        if stop == n:
            break


def _answer_tokens(starts: np.ndarray, ends: np.ndarray, ctx: np.ndarray, answer) -> tuple[int, int] | None:
    """First and last token of ``answer`` when it lies entirely inside this window's context."""
    idx = np.flatnonzero(ctx)
    if len(idx) == 0:
        return None
    a_start, a_end = answer.start, answer.start + len(answer.text)
    if a_start < starts[idx[0]] or a_end > ends[idx[-1]]:
        return None
    inside = idx[(ends[idx] > a_start) & (starts[idx] < a_end)]
    if len(inside) == 0:  # an answer of whitespace only: no token to point at
        return None
    return int(inside[0]), int(inside[-1])


def _bio_tags(starts: np.ndarray, ends: np.ndarray, ctx: np.ndarray, answers) -> np.ndarray:
    """B/I over every answer's tokens in this window; a span cut by the window start begins with I.

    Overlapping answers (SQuAD's alternative answers) merge into one run.
    """
    tags = np.where(ctx, TAG_O, TAG_IGNORE).astype(np.int8)
    idx = np.flatnonzero(ctx)
    if len(idx) == 0:
        return tags
    window_start = starts[idx[0]]
    for answer in sorted(answers, key=lambda a: a.start):
        a_start, a_end = answer.start, answer.start + len(answer.text)
        inside = idx[(ends[idx] > a_start) & (starts[idx] < a_end)]
        if len(inside) == 0:
            continue
        starts_run = tags[inside[0]] == TAG_O and a_start >= window_start
        tags[inside[tags[inside] == TAG_O]] = TAG_I
        if starts_run:
            tags[inside[0]] = TAG_B
    return tags


def _targets(n: int, positions: list[int]) -> np.ndarray:
    """1 on every gold start (or end) token of the window, on [CLS] when there is none."""
    out = np.zeros(n, dtype=np.int8)
    out[positions or [0]] = 1
    return out


def _span_window(window: tuple[np.ndarray, ...], example: QAExample, bio: bool) -> dict:
    ids, types, offsets, ctx = window
    starts = np.where(ctx, offsets[:, 0], -1).astype(np.int32)
    ends = np.where(ctx, offsets[:, 1], -1).astype(np.int32)
    # The first gold answer lying wholly in this window (run_qa only looks at answers[0]): a window
    # holding a post's second evidence sentence but not its first must not be labelled no-answer.
    inside = [t for a in example.answers if (t := _answer_tokens(starts, ends, ctx, a))]
    first = inside[0] if inside else None
    row = {
        "example_id": example.example_id,
        "input_ids": ids,
        "token_type_ids": types,
        "offset_start": starts,
        "offset_end": ends,
        "start_positions": first[0] if first else 0,
        "end_positions": first[1] if first else 0,
        "start_targets": _targets(len(offsets), [t[0] for t in inside]),
        "end_targets": _targets(len(offsets), [t[1] for t in inside]),
    }
    if bio:
        row["tags"] = _bio_tags(starts, ends, ctx, example.answers)
    return row


def _table(rows: list[dict], tokenizer, scalar_types: dict[str, pa.DataType], list_types: dict) -> pa.Table:
    columns = {"example_id": pa.array([r["example_id"] for r in rows], type=pa.string())}
    list_types = {"input_ids": _ids_type(tokenizer), **list_types}
    if not uses_token_type_ids(tokenizer):
        list_types.pop("token_type_ids", None)
    for name, value_type in list_types.items():
        columns[name] = _list_column([r[name] for r in rows], value_type)
    for name, value_type in scalar_types.items():
        columns[name] = pa.array([r[name] for r in rows], type=value_type)
    return pa.table(columns)


def featurize_span(examples: Sequence[QAExample], tokenizer, max_length: int, doc_stride: int,
                   bio: bool = False) -> pa.Table:
    """One row per window; ``bio`` adds the span_crf ``tags`` column."""
    rows: list[dict] = []
    lengths: dict[str, int] = {}
    for batch in _batches(examples, "span features"):
        questions = [ex.question for ex in batch]
        _check_room(tokenizer, questions, max_length, doc_stride, lengths,
                    "use a shorter question (features.question_mode=symptom or empty)")
        # untruncated (verbose=False: a post longer than the model is expected); _windows cuts it
        enc = tokenizer(questions, [ex.context for ex in batch], truncation=False, verbose=False)
        for encoding, example in zip(enc.encodings, batch, strict=True):
            rows.extend(_span_window(w, example, bio) for w in _windows(encoding, max_length, doc_stride))
    list_types = {"token_type_ids": pa.int8(), "offset_start": pa.int32(), "offset_end": pa.int32(),
                  "start_targets": pa.int8(), "end_targets": pa.int8()}
    if bio:
        list_types["tags"] = pa.int8()
    return _table(rows, tokenizer, {"start_positions": pa.int32(), "end_positions": pa.int32()}, list_types)


def featurize_pair(examples: Sequence[PairExample], tokenizer, max_length: int) -> pa.Table:
    """``[CLS] criterion [SEP] sentence [SEP]`` per example; long sentences are truncated."""
    rows: list[dict] = []
    lengths: dict[str, int] = {}
    for batch in _batches(examples, "pair features"):
        criteria = [ex.criterion for ex in batch]
        _check_room(tokenizer, criteria, max_length, 0, lengths, "shorten the criterion text")
        enc = tokenizer(criteria, [ex.sentence for ex in batch], truncation="only_second",
                        max_length=max_length)
        for ex, encoding in zip(batch, enc.encodings, strict=True):
            rows.append({"example_id": ex.example_id, "input_ids": np.asarray(encoding.ids),
                         "token_type_ids": np.asarray(encoding.type_ids, dtype=np.int8),
                         "label": ex.label, "symptom_id": SYMPTOM_ID[ex.symptom]})
    return _table(rows, tokenizer, {"label": pa.int8(), "symptom_id": pa.int8()},
                  {"token_type_ids": pa.int8()})


def span_examples_table(examples: Sequence[QAExample]) -> pa.Table:
    """The examples behind span features: contexts and gold answers for post-processing."""
    return pa.table({
        "example_id": pa.array([ex.example_id for ex in examples], type=pa.string()),
        "group": pa.array([ex.group for ex in examples], type=pa.string()),
        "symptom": pa.array([ex.symptom for ex in examples], type=pa.string()),
        "question": pa.array([ex.question for ex in examples], type=pa.string()),
        "context": pa.array([ex.context for ex in examples], type=pa.string()),
        "answer_texts": pa.array([[a.text for a in ex.answers] for ex in examples],
                                 type=pa.list_(pa.string())),
        "answer_starts": pa.array([[a.start for a in ex.answers] for ex in examples],
                                  type=pa.list_(pa.int32())),
    })


def pair_examples_table(examples: Sequence[PairExample]) -> pa.Table:
    """The examples behind pair features, with their kind (annotated | cross) and a sentence key
    (equal for the examples of one sentence of one post: the rank metrics compare its criteria)."""
    keys: dict[tuple[str, str], int] = {}
    sentence_keys = [keys.setdefault(sentence_key(ex.group, ex.sentence), len(keys)) for ex in examples]
    return pa.table({
        "example_id": pa.array([ex.example_id for ex in examples], type=pa.string()),
        "group": pa.array([ex.group for ex in examples], type=pa.string()),
        "symptom": pa.array([ex.symptom for ex in examples], type=pa.string()),
        "sentence": pa.array([ex.sentence for ex in examples], type=pa.string()),
        "label": pa.array([ex.label for ex in examples], type=pa.int8()),
        "kind": pa.array([kind_of(ex) for ex in examples], type=pa.string()),
        "sentence_key": pa.array(sentence_keys, type=pa.int32()),
    })
