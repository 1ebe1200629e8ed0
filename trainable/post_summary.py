"""Per-post summaries of pair predictions: which symptoms have evidence, and in which sentences.

``trainable.predict`` writes one record per (sentence, symptom); a person wants, per post, the
symptoms with evidence and the sentences that carry it. A symptom has evidence in a post when one
of its sentences' probability reaches the evidence threshold (the checkpoint's, chosen on
validation); it lists its best ``TOP_SENTENCES`` such sentences. Plain functions over the
prediction records, so they can be tested on hand-made ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from data_prep.symptoms import SYMPTOMS
from trainable.checkpoint import META_FILE

POSTS_FILE = "posts.json"
TOP_SENTENCES = 3
DEFAULT_THRESHOLD = 0.5
SHOWN_POSTS = 20  # posts printed on the console; posts.json has them all
SENTENCE_CHARS = 90


def evidence_threshold(meta: dict, given: float | None) -> tuple[float, str]:
    """(threshold, where it came from): the one given, else the checkpoint's (chosen on validation),
    else 0.5 for a checkpoint written before checkpoints kept one."""
    if given is not None:
        return float(given), "given (pair_threshold)"
    chosen = meta.get("evidence_threshold")
    if chosen is not None:
        return float(chosen), "chosen on validation (checkpoint meta.json)"
    return DEFAULT_THRESHOLD, (f"default: the checkpoint's {META_FILE} has no evidence_threshold (written "
                               "before checkpoints kept one); pass pair_threshold=... to choose one")


def post_summaries(post_ids: Sequence[str], records: Iterable[dict], threshold: float,
                   top: int = TOP_SENTENCES) -> list[dict[str, Any]]:
    """One summary per post of ``post_ids`` (in that order) from its pair prediction records (records
    of other posts are left out).

    A summary: post_id, sentences (how many were scored), symptoms: one entry per symptom with a
    record at or above ``threshold``, highest probability first, each with evidence_sentences (how
    many reach the threshold), probability (the best) and top: its ``top`` best sentences
    (sentence_id, sentence_index, sentence, probability), best first.
    """
    sentences: dict[str, set[int]] = {p: set() for p in post_ids}
    hits: dict[str, dict[str, list[dict]]] = {p: {} for p in post_ids}
    for r in records:
        if r["post_id"] not in sentences:  # a post not asked for
            continue
        sentences[r["post_id"]].add(r["sentence_index"])
        if r["probability"] >= threshold:
            hits[r["post_id"]].setdefault(r["symptom"], []).append(r)
    out = []
    for post_id in post_ids:
        symptoms = []
        for symptom, found in hits[post_id].items():
            found.sort(key=lambda r: (-r["probability"], r["sentence_index"]))
            symptoms.append({"symptom": symptom, "evidence_sentences": len(found),
                             "probability": found[0]["probability"],
                             "top": [{k: r[k] for k in ("sentence_id", "sentence_index", "sentence", "probability")}
                                     for r in found[:top]]})
        symptoms.sort(key=lambda s: (-s["probability"], SYMPTOMS.index(s["symptom"])))
        out.append({"post_id": post_id, "sentences": len(sentences[post_id]), "symptoms": symptoms})
    return out


def write_posts_json(path: Path, summaries: list[dict], threshold: float, source: str) -> Path:
    payload = {"evidence_threshold": threshold, "threshold_source": source, "top_sentences": TOP_SENTENCES,
               "posts": summaries}
    path.write_text(json.dumps(payload, indent=1, ensure_ascii=False), encoding="utf-8")
    return path


def format_posts(summaries: list[dict], threshold: float, limit: int = SHOWN_POSTS) -> str:
    """The summaries as a table for the console (the first ``limit`` posts)."""
    lines = [f"evidence per post (probability >= {threshold:.3f}; up to {TOP_SENTENCES} sentences per symptom):"]
    width = max(len(s) for s in SYMPTOMS)
    for post in summaries[:limit]:
        found = post["symptoms"]
        lines.append(f"  {post['post_id']} ({post['sentences']} sentences): "
                     + (f"{len(found)} symptom(s) with evidence" if found else "no evidence"))
        for entry in found:
            more = entry["evidence_sentences"] - len(entry["top"])
            for i, r in enumerate(entry["top"]):
                name = entry["symptom"] if i == 0 else ""
                lines.append(f"    {name:<{width}}  {r['probability']:.2f}  #{r['sentence_index']:<3} "
                             f"{_short(r['sentence'])}")
            if more > 0:
                lines.append(f"    {'':<{width}}  ... {more} more sentence(s)")
    if len(summaries) > limit:
        lines.append(f"  ... {len(summaries) - limit} more post(s) in {POSTS_FILE}")
    return "\n".join(lines)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return json.dumps(text if len(text) <= SENTENCE_CHARS else text[:SENTENCE_CHARS - 3] + "...",
                      ensure_ascii=False)
