"""Evidence-text augmentation for training examples: simple word- and character-level noise.

Only the evidence is touched (the pair sentence, the gold answer sentences inside a span
context), never the criterion or question, and only the train split: the training loop asks for
each epoch's augmented features, validation and test always use the cached originals.

Randomness comes from ``random.Random(f"{seed}:{epoch}:{example_id}")``, so an example's
augmentation depends on neither the order of the examples nor how they are sharded, and a
resumed run replays the same epochs. Each epoch's table is cached under
``<cache_dir>/augmented/<key>``, the key covering the features' own key, the augmentation
signature, the seed and the epoch; only the augmented examples are re-tokenized.
"""

from __future__ import annotations

import random
import string
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data_prep.cache import cache_key
from data_prep.config import doc
from data_prep.features import BATCH, featurize_pair, featurize_span
from data_prep.featureset import FeatureSet
from data_prep.records import Answer, PairExample, QAExample
from data_prep.symptoms import criteria
from plumbing.atomic import atomic_dir, is_complete
from plumbing.errors import ConfigError

# Bump when an operation's behaviour changes: cached augmented tables stop matching.
AUGMENT_VERSION = 1
OPS = ("delete", "swap", "duplicate", "typo")  # bit i of augment.mask enables OPS[i]
MAX_MASK = (1 << len(OPS)) - 1
Words = list[str]


@dataclass
class AugmentConfig:
    mask: int = doc("enabled operations as a bitmask: 1 delete, 2 swap, 4 duplicate, 8 typo "
                    "(e.g. 5 = delete + duplicate); 0 = no augmentation", 0)
    delete: float = doc("fraction of the evidence's words deleted (mask 1)", 0.1)
    swap: float = doc("swaps of two random words, as a fraction of the words (mask 2)", 0.1)
    duplicate: float = doc("fraction of the words repeated in place (mask 4)", 0.1)
    typo: float = doc("fraction of the words given one character typo (mask 8)", 0.05)
    prob: float = doc("fraction of the training examples augmented in each epoch", 0.5)


# ---------------------------------------------------------------- operations on a word list


def _count(n: int, strength: float, rng: random.Random) -> int:
    """``strength * n`` rounded at random (expected value exact), so short sentences change too."""
    return min(n, int(strength * n + rng.random()))


def delete_words(words: Words, strength: float, rng: random.Random) -> Words:
    gone = set(rng.sample(range(len(words)), _count(len(words), strength, rng)))
    kept = [w for i, w in enumerate(words) if i not in gone]
    return kept or list(words)  # an evidence sentence never becomes empty


def swap_words(words: Words, strength: float, rng: random.Random) -> Words:
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(_count(len(out), strength, rng)):
        i, j = rng.sample(range(len(out)), 2)
        out[i], out[j] = out[j], out[i]
    return out


def duplicate_words(words: Words, strength: float, rng: random.Random) -> Words:
    twice = set(rng.sample(range(len(words)), _count(len(words), strength, rng)))
    return [x for i, w in enumerate(words) for x in ((w, w) if i in twice else (w,))]


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(len(word) - 1)
    kind = rng.randrange(4)
    letter = rng.choice(string.ascii_lowercase)
    if kind == 0:  # swap two neighbours
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:  # drop one
        return word[:i] + word[i + 1:]
    if kind == 2:  # replace one
        return word[:i] + letter + word[i + 1:]
    return word[:i] + letter + word[i:]  # insert one


def typo_words(words: Words, strength: float, rng: random.Random) -> Words:
    """One character edit in each chosen word; words of one character are never chosen."""
    candidates = [i for i, w in enumerate(words) if len(w) > 1]
    chosen = set(rng.sample(candidates, _count(len(candidates), strength, rng)))
    return [_typo(w, rng) if i in chosen else w for i, w in enumerate(words)]


OP_FUNCS: dict[str, Callable[[Words, float, random.Random], Words]] = {
    "delete": delete_words, "swap": swap_words, "duplicate": duplicate_words, "typo": typo_words}


# ---------------------------------------------------------------- config


def enabled(section: Any) -> list[str]:
    return [op for bit, op in enumerate(OPS) if int(section.mask) >> bit & 1]


def validate_augment(section: Any) -> None:
    if not 0 <= section.mask <= MAX_MASK:
        raise ConfigError("augment.mask", f"must be in 0..{MAX_MASK} (bits: 1 delete, 2 swap, 4 duplicate, "
                                          f"8 typo); got {section.mask}")
    for key in (*OPS, "prob"):
        value = getattr(section, key)
        if not 0 <= value <= 1:
            raise ConfigError(f"augment.{key}", f"must be in [0, 1]; got {value}")


def signature(section: Any) -> str:
    """Canonical text of what changes augmented features: "off", or mask, enabled strengths, prob."""
    ops = enabled(section)
    if not ops:
        return "off"
    parts = [f"mask={int(section.mask)}", *(f"{op}={float(getattr(section, op)):g}" for op in ops)]
    return ",".join([*parts, f"prob={float(section.prob):g}"])


# ---------------------------------------------------------------- texts and examples


def augment_text(text: str, section: Any, rng: random.Random) -> str:
    """The enabled operations in OPS order over the words; outer whitespace kept, inner collapsed."""
    words = text.split()
    if not words:
        return text
    for op in enabled(section):
        words = OP_FUNCS[op](words, float(getattr(section, op)), rng)
    stripped = text.lstrip()
    return text[:len(text) - len(stripped)] + " ".join(words) + stripped[len(stripped.rstrip()):]


def _rng(seed: int, epoch: int, example_id: str) -> random.Random:
    return random.Random(f"{seed}:{epoch}:{example_id}")


def _chosen(section: Any, rng: random.Random) -> bool:
    return bool(enabled(section)) and rng.random() < section.prob


def augment_pair_examples(examples: Sequence[PairExample], section: Any, seed: int,
                          epoch: int) -> list[PairExample]:
    """The sentence of about ``prob`` of the examples augmented; the criterion never."""
    out = []
    for ex in examples:
        rng = _rng(seed, epoch, ex.example_id)
        out.append(replace(ex, sentence=augment_text(ex.sentence, section, rng)) if _chosen(section, rng) else ex)
    return out


def _spliceable(ex: QAExample) -> bool:
    """Answers present, each where it claims to be, none overlapping another (SQuAD alternatives do)."""
    answers = sorted(ex.answers, key=lambda a: a.start)
    if not answers or any(ex.context[a.start:a.start + len(a.text)] != a.text for a in answers):
        return False
    return all(b.start >= a.start + len(a.text) for a, b in pairwise(answers))


def augment_qa_example(ex: QAExample, section: Any, rng: random.Random) -> QAExample:
    """Each gold answer augmented inside the context, later answers shifted; the question never."""
    if not _spliceable(ex):
        return ex
    pieces, answers, cursor, shift = [], {}, 0, 0
    for a in sorted(ex.answers, key=lambda a: a.start):
        text = augment_text(a.text, section, rng)
        pieces += [ex.context[cursor:a.start], text]
        answers[a] = Answer(text=text, start=a.start + shift)
        cursor, shift = a.start + len(a.text), shift + len(text) - len(a.text)
    pieces.append(ex.context[cursor:])
    return replace(ex, context="".join(pieces), answers=tuple(answers[a] for a in ex.answers))


def augment_span_examples(examples: Sequence[QAExample], section: Any, seed: int,
                          epoch: int) -> list[QAExample]:
    """About ``prob`` of the answerable examples augmented (see ``augment_qa_example``)."""
    out = []
    for ex in examples:
        rng = _rng(seed, epoch, ex.example_id)
        out.append(augment_qa_example(ex, section, rng) if _chosen(section, rng) else ex)
    return out


# ---------------------------------------------------------------- examples tables <-> records


def span_records(table: pa.Table) -> list[QAExample]:
    """QAExamples back from a span examples table (schema in featureset.py)."""
    return [QAExample(example_id=r["example_id"], question=r["question"], context=r["context"],
                      answers=tuple(Answer(t, s) for t, s in zip(r["answer_texts"], r["answer_starts"],
                                                                   strict=True)),
                      group=r["group"], symptom=r["symptom"])
            for r in table.to_pylist()]


def pair_records(table: pa.Table) -> list[PairExample]:
    """PairExamples back from a pair examples table; the criterion is the symptom's, as when built."""
    texts = criteria()
    return [PairExample(example_id=r["example_id"], criterion=texts[r["symptom"]], sentence=r["sentence"],
                        label=int(r["label"]), symptom=r["symptom"], group=r["group"])
            for r in table.to_pylist()]


# ---------------------------------------------------------------- augmented features, cached


def augmented_key(fs: FeatureSet, section: Any, seed: int, epoch: int) -> str:
    """The features' own key plus everything that changes one epoch's augmentation."""
    settings = {"augment": signature(section), "seed": int(seed), "epoch": int(epoch),
                "version": AUGMENT_VERSION}
    return cache_key(fs.meta["key"], fs.task, fs.meta["tokenizer"]["fingerprint"], settings)


def augmented_path(cache_dir: str | Path, key: str) -> Path:
    return Path(cache_dir) / "augmented" / key


def featurize_augmented(fs: FeatureSet, section: Any, seed: int, epoch: int, tokenizer) -> pa.Table:
    """This epoch's train features (no caching): the augmented examples re-tokenized, the rest kept."""
    f = fs.meta["settings"]["features"]
    if fs.task == "pair":
        before = pair_records(fs.examples["train"])
        after = augment_pair_examples(before, section, seed, epoch)
        featurize = partial(featurize_pair, tokenizer=tokenizer, max_length=f["max_length"])
    else:
        before = span_records(fs.examples["train"])
        after = augment_span_examples(before, section, seed, epoch)
        featurize = partial(featurize_span, tokenizer=tokenizer, max_length=f["max_length"],
                            doc_stride=f["doc_stride"], bio=fs.task == "span_crf")
    changed = [a for a, b in zip(after, before, strict=True) if a is not b]
    return _replace_rows(fs.features["train"], changed, featurize)


def _replace_rows(features: pa.Table, changed: Sequence, featurize: Callable[[Sequence], pa.Table]) -> pa.Table:
    """The rows of the ``changed`` examples rebuilt, every other example's rows kept (not re-tokenized).

    Built in chunks of ``features.BATCH`` examples, which also keeps featurize's progress bar off:
    one bar per epoch in every worker's log would be noise.
    """
    if not changed:
        return features
    ids = pa.array([ex.example_id for ex in changed], type=pa.string())
    kept = features.filter(pc.invert(pc.is_in(features.column("example_id"), value_set=ids)))
    rebuilt = [featurize(changed[i:i + BATCH]).cast(features.schema) for i in range(0, len(changed), BATCH)]
    return pa.concat_tables([kept, *rebuilt]).combine_chunks()


def augmented_train_features(fs: FeatureSet, section: Any, seed: int, epoch: int, tokenizer,
                             cache_dir: str | Path) -> pa.Table:
    """This epoch's augmented train features, read from the cache or built and cached.

    ``tokenizer`` must be the one the features were built with (the loop checks its fingerprint).
    """
    path = augmented_path(cache_dir, augmented_key(fs, section, seed, epoch))
    if is_complete(path):
        return pq.read_table(path / "features-train.parquet")
    table = featurize_augmented(fs, section, seed, epoch, tokenizer)
    try:
        with atomic_dir(path) as tmp:
            pq.write_table(table, tmp / "features-train.parquet")
            (tmp / "signature.txt").write_text(f"{signature(section)} seed={seed} epoch={epoch}\n")
    except OSError as e:  # a read-only or full cache costs a rebuild next time, not the run
        warnings.warn(f"augmented features not cached at {path}: {e}", stacklevel=2)
    return table
