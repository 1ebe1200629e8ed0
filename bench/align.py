"""How well alignment finds reworded annotation copies, on the hand-made paraphrase set.

    HF_HUB_OFFLINE=1 python bench/align.py [--sentence-threshold T] [--fuzzy-threshold T] [--rounds 5]

The set (``tests/data``) holds annotation copies reworded by hand (synonyms, reordered clauses,
dropped or added words, expanded contractions, typos, wrong or missing sentence ids, sentences the
splitter cuts differently) of sentences of the demo corpus (400 posts, seed 13, rebuilt here) and of
posts written for the set (``paraphrase_posts.jsonl``), plus copies whose text is not in their post
at all. Each row names the exact post text it should align to (a sentence or two adjacent ones), or
null when it should stay unaligned. Figures:

  right      paraphrased rows aligned to exactly their gold span (share of the paraphrased rows)
  unaligned  paraphrased rows left unaligned (share of the paraphrased rows)
  wrong      rows aligned to another span, or aligned when they should stay unaligned (share of all
             rows)

plus rows per rule and the alignment time (fastest of ``--rounds``) of the set and of the whole demo
corpus. ``tests/data_prep/test_align.py`` asserts the figures at the default thresholds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from data_prep.align import align_annotations, rule_counts
from data_prep.config import DataConfig
from data_prep.demo import write_demo
from data_prep.records import Alignment, Annotation
from data_prep.redsm5 import load_redsm5, read_posts
from data_prep.text import split_sentences

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
DEMO_POSTS, DEMO_SEED = 400, 13  # the demo the set's demo_* rows were written against


def gold_span(text: str, gold: str) -> tuple[int, int]:
    """The span of the one sentence, or pair of adjacent sentences, of ``text`` that reads ``gold``."""
    spans = split_sentences(text)
    candidates = spans + [(a[0], b[1]) for a, b in zip(spans, spans[1:], strict=False)]
    hits = [span for span in candidates if text[span[0] : span[1]] == gold]
    if len(hits) != 1:
        raise ValueError(f"gold text {gold!r} is {len(hits)} candidate spans of its post, not one "
                         "(did the demo generator or the sentence splitter change?)")
    return hits[0]


def load_set(demo_dir: Path, data: Path = DATA):
    """(posts, annotations, gold spans or None) of the paraphrase set; ``demo_dir`` holds the demo CSVs."""
    posts = {p.post_id: p.text for p in load_redsm5(demo_dir).posts}
    posts.update((p.post_id, p.text) for p in read_posts(data / "paraphrase_posts.jsonl"))
    annotations, gold = [], []
    lines = (data / "paraphrases.jsonl").read_text(encoding="utf-8").splitlines()
    for row, line in enumerate(lines, start=1):
        r = json.loads(line)
        annotations.append(Annotation(r["post_id"], r["sentence_id"], r["sentence_text"], "DEPRESSED_MOOD", 1,
                                      r["edit"], row))
        gold.append(None if r["gold"] is None else gold_span(posts[r["post_id"]], r["gold"]))
    return posts, annotations, gold


def figures(alignments: list[Alignment], gold: list[tuple[int, int] | None]) -> dict[str, float]:
    """Right and unaligned as shares of the rows with a gold span, wrong as a share of all rows."""
    outcome = Counter()
    for a, span in zip(alignments, gold, strict=True):
        aligned = a.rule != "unaligned"
        if span is None:
            outcome["wrong" if aligned else "kept_out"] += 1
        elif not aligned:
            outcome["unaligned"] += 1
        else:
            outcome["right" if (a.start, a.end) == span else "wrong"] += 1
    paraphrased = sum(span is not None for span in gold)
    return {"rows": len(gold), "paraphrased": paraphrased, "absent": len(gold) - paraphrased,
            "right": outcome["right"] / paraphrased, "unaligned": outcome["unaligned"] / paraphrased,
            "wrong": outcome["wrong"] / len(gold), "absent_kept_out": outcome["kept_out"]}


def fastest(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    defaults = DataConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentence-threshold", type=float, default=defaults.sentence_threshold)
    parser.add_argument("--fuzzy-threshold", type=float, default=defaults.fuzzy_threshold)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--show", action="store_true", help="print every row that is not right")
    args = parser.parse_args()
    thresholds = {"sentence_threshold": args.sentence_threshold, "fuzzy_threshold": args.fuzzy_threshold}

    with tempfile.TemporaryDirectory() as tmp:
        demo = write_demo(tmp, DEMO_POSTS, DEMO_SEED)
        posts, annotations, gold = load_set(demo)
        corpus = load_redsm5(demo)
    demo_posts = {p.post_id: p.text for p in corpus.posts}

    alignments = align_annotations(posts, annotations, **thresholds)
    f = figures(alignments, gold)
    print(f"thresholds: sentence_id {args.sentence_threshold}, fuzzy {args.fuzzy_threshold}")
    print(f"paraphrase set: {f['rows']} rows ({f['paraphrased']} paraphrased, {f['absent']} not in their post)")
    print(f"  right {f['right']:.1%} of paraphrased, unaligned {f['unaligned']:.1%} of paraphrased, "
          f"wrong {f['wrong']:.1%} of all rows; {f['absent_kept_out']}/{f['absent']} absent rows kept out")
    print("  rows per rule: " + ", ".join(f"{r}={n}" for r, n in rule_counts(alignments).items()))
    if args.show:
        for a, span in zip(alignments, gold, strict=True):
            if span is None and a.rule == "unaligned" or span == (a.start, a.end):
                continue
            text = posts[a.annotation.post_id]
            got = text[a.start : a.end] if a.start is not None else "-"
            want = text[span[0] : span[1]] if span else "-"
            print(f"  row {a.annotation.row} {a.rule} {a.similarity:.2f} [{a.annotation.explanation}]\n"
                  f"    copy: {a.annotation.sentence_text}\n    got:  {got}\n    want: {want}")

    set_s = fastest(lambda: align_annotations(posts, annotations, **thresholds), args.rounds)
    demo_alignments = align_annotations(demo_posts, corpus.annotations, **thresholds)
    demo_s = fastest(lambda: align_annotations(demo_posts, corpus.annotations, **thresholds), args.rounds)
    print(f"time: set {set_s * 1000:.0f} ms ({len(annotations)} rows); demo corpus {demo_s * 1000:.0f} ms "
          f"({len(corpus.annotations)} rows, {len(demo_posts)} posts: "
          + ", ".join(f"{r}={n}" for r, n in rule_counts(demo_alignments).items()) + ")")


if __name__ == "__main__":
    main()
