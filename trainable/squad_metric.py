"""SQuAD v2.0 exact match and F1, with the HasAns / NoAns split and the best no-answer threshold.

The numbers are meant to be the ones papers report, so every rule follows the official
``evaluate-v2.0.py`` (tests compare it with that script's scores on the cases in tests/data):
answers are compared after normalisation (lower case, no punctuation, no articles, single
spaces); a question's score is the max over its gold answers; a question with no gold answer
(or only answers that normalise to nothing) is answered correctly only by "".
Scores are percentages (0..100).
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Mapping, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower case, drop punctuation and English articles, collapse whitespace."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", s).split())


def exact_match(pred: str, gold: str) -> int:
    return int(normalize_answer(pred) == normalize_answer(gold))


def f1(pred: str, gold: str) -> float:
    """Token-overlap F1; when either side is empty (no answer) it is 1 only if both are."""
    pred_tokens = normalize_answer(pred).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    same = sum((collections.Counter(pred_tokens) & collections.Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_v2_scores(
    predictions: Mapping[str, str],
    gold_answers: Mapping[str, Sequence[str]],
    na_probs: Mapping[str, float] | None = None,
    na_threshold: float = 1.0,
) -> dict:
    """Official SQuAD v2 scores of ``predictions`` (question id -> text) against the gold answers.

    ``gold_answers[qid] == []`` marks a no-answer question. With ``na_probs`` (any score where
    larger means "more likely unanswerable", e.g. postprocess's null score difference) a
    question whose value is above ``na_threshold`` counts as answered with "", and the best
    threshold over the data is searched (``best_exact`` / ``best_f1`` and their thresholds).
    Keys: exact, f1, total, HasAns_* and NoAns_* (only when such questions exist), best_*.
    """
    _check_ids(predictions, gold_answers, na_probs)
    has_answer = {qid: bool(answers) for qid, answers in gold_answers.items()}
    exact_raw, f1_raw = {}, {}
    for qid, answers in gold_answers.items():
        golds = [a for a in answers if normalize_answer(a)] or [""]
        exact_raw[qid] = max(exact_match(predictions[qid], g) for g in golds)
        f1_raw[qid] = max(f1(predictions[qid], g) for g in golds)

    exact_final, f1_final = dict(exact_raw), dict(f1_raw)
    if na_probs is not None:
        for qid in gold_answers:
            if na_probs[qid] > na_threshold:
                exact_final[qid] = f1_final[qid] = float(not has_answer[qid])

    out = _averages(exact_final, f1_final, list(gold_answers), "")
    out.update(_averages(exact_final, f1_final, [q for q, h in has_answer.items() if h], "HasAns_"))
    out.update(_averages(exact_final, f1_final, [q for q, h in has_answer.items() if not h], "NoAns_"))
    if na_probs is not None:
        out["best_exact"], out["best_exact_thresh"] = _best_threshold(predictions, exact_raw, na_probs,
                                                                       has_answer)
        out["best_f1"], out["best_f1_thresh"] = _best_threshold(predictions, f1_raw, na_probs, has_answer)
    return out


def _check_ids(predictions: Mapping, gold: Mapping, na_probs: Mapping | None) -> None:
    """A missing or unknown id is a bug upstream; scoring around it would misreport the metric."""
    if not gold:
        raise ValueError("squad_v2_scores: no gold questions to score")
    for name, table in (("predictions", predictions), ("na_probs", na_probs)):
        if table is None:
            continue
        missing = [q for q in gold if q not in table]
        unknown = [q for q in table if q not in gold]
        if missing or unknown:
            raise ValueError(f"squad_v2_scores: {name} must cover exactly the gold question ids; missing "
                             f"{missing[:5]} ({len(missing)}), unknown {unknown[:5]} ({len(unknown)})")


def _averages(exact: Mapping[str, float], f1s: Mapping[str, float], qids: list[str], prefix: str) -> dict:
    if not qids:
        return {}
    n = len(qids)
    return {f"{prefix}exact": 100.0 * sum(exact[q] for q in qids) / n,
            f"{prefix}f1": 100.0 * sum(f1s[q] for q in qids) / n,
            f"{prefix}total": n}


def _best_threshold(predictions: Mapping[str, str], scores: Mapping[str, float],
                    na_probs: Mapping[str, float], has_answer: Mapping[str, bool]) -> tuple[float, float]:
    """Sweep the threshold upwards through the sorted na_probs, as the official script does.

    Start from "every question answered with ''" (all no-answer questions right) and let each
    question, in increasing na_prob order, switch to its prediction. Ties are walked one by one
    in ``na_probs`` order, exactly like the official script, so the numbers match it.
    """
    current = best = sum(1 for h in has_answer.values() if not h)
    best_thresh = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if has_answer[qid]:
            current += scores[qid]
        elif predictions[qid]:
            current -= 1
        if current > best:
            best, best_thresh = current, na_probs[qid]
    return 100.0 * best / len(scores), best_thresh
