import numpy as np
import pytest

from trainable.postprocess import apply_null_threshold, best_char_spans, span_texts
from trainable.squad_metric import squad_v2_scores

CONTEXT = "I cannot sleep at night and I feel tired all day"
WORDS = [(0, 1), (2, 8), (9, 14), (15, 17), (18, 23), (24, 27), (28, 29), (30, 34), (35, 40),
         (41, 44), (45, 48)]  # I cannot sleep at night and I feel tired all day


def _window(words, n_question=2):
    """Offsets of [CLS] q q [SEP] <context words> [SEP]: -1 outside the context."""
    starts = [-1] * (n_question + 2) + [s for s, _ in words] + [-1]
    ends = [-1] * (n_question + 2) + [e for _, e in words] + [-1]
    return np.array(starts, dtype=np.int32), np.array(ends, dtype=np.int32)


def _logits(length, width, start=None, end=None, null=0.0):
    """Low logits everywhere, a null score split over [CLS], and a peak at start / end."""
    s, e = np.full(width, -5.0, dtype=np.float32), np.full(width, -5.0, dtype=np.float32)
    s[0] = e[0] = null / 2
    if start is not None:
        s[start], e[end] = 4.0, 4.0
    s[length:] = e[length:] = 50.0  # padding garbage that must never be picked
    return s, e


def _run(windows, logit_rows, ids, **kw):
    width = max(len(w[0]) for w in windows) + 3  # padded beyond every window
    starts = np.stack([r[0] for r in logit_rows])[:, :width]
    ends = np.stack([r[1] for r in logit_rows])[:, :width]
    contexts = {i: CONTEXT for i in ids}
    spans, diffs = best_char_spans(starts, ends, ids, [w[0] for w in windows], [w[1] for w in windows],
                                   contexts, **kw)
    return span_texts(spans, contexts), diffs


def test_clear_answer():
    w = _window(WORDS)
    # context word k sits at position k + 4; "sleep at night" = words 2..4
    preds, diffs = _run([w], [_logits(len(w[0]), len(w[0]) + 3, 6, 8)], ["a"])
    assert preds == {"a": "sleep at night"}
    assert diffs["a"] == pytest.approx(0.0 - 8.0)


def test_clear_no_answer():
    w = _window(WORDS)
    preds, diffs = _run([w], [_logits(len(w[0]), len(w[0]) + 3, null=12.0)], ["a"])
    assert diffs["a"] > 0  # null beats every span
    assert apply_null_threshold(preds, diffs, 0.0) == {"a": ""}
    assert preds["a"] != ""  # the best non-null span is still reported, for threshold tuning


def test_answer_in_second_window_and_min_null_over_windows():
    first, second = _window(WORDS[:6]), _window(WORDS[4:])
    width = len(first[0]) + 3
    rows = [_logits(len(first[0]), width, null=10.0),  # sees no answer
            _logits(len(second[0]), width, 4 + 4, 4 + 4, null=2.0)]  # "tired" = word 8 = 4th here
    preds, diffs = _run([first, second], rows, ["a", "a"])
    assert preds == {"a": "tired"}
    assert diffs["a"] == pytest.approx(2.0 - 8.0)  # min null over windows, best span over windows


def test_examples_keep_their_own_windows():
    w = _window(WORDS)
    width = len(w[0]) + 3
    rows = [_logits(len(w[0]), width, 5, 5), _logits(len(w[0]), width, 12, 14)]
    preds, _ = _run([w, w], rows, ["a", "b"])
    assert preds == {"a": "cannot", "b": "tired all day"}
    assert list(preds) == ["a", "b"]


def test_padding_positions_never_chosen():
    short = _window(WORDS[:3])
    long = _window(WORDS)
    width = len(long[0]) + 3
    rows = [_logits(len(short[0]), width), _logits(len(long[0]), width, null=100.0)]
    rows[0][0][len(short[0]) - 2] = 1.0  # the last real context token is the best real choice
    rows[0][1][len(short[0]) - 2] = 1.0
    preds, diffs = _run([short, long], rows, ["a", "b"])
    assert preds["a"] == "sleep"
    assert np.isfinite(diffs["a"]) and diffs["b"] > 0


def test_invalid_spans_excluded():
    w = _window(WORDS)
    s, e = _logits(len(w[0]), len(w[0]) + 3)
    s[1], e[2] = 9.0, 9.0  # the question tokens are not part of the context
    s[10], e[6] = 8.0, 8.0  # end before start
    s[7], e[9] = 3.0, 3.0  # the best valid span: "at night and"
    preds, diffs = _run([w], [(s, e)], ["a"])
    assert preds["a"] == "at night and"
    assert diffs["a"] == pytest.approx(0.0 - 6.0)


def test_max_answer_length_respected():
    w = _window(WORDS)
    s, e = _logits(len(w[0]), len(w[0]) + 3)
    s[4], e[14] = 6.0, 6.0  # the whole context: 11 tokens
    s[6], e[8] = 3.0, 2.0  # start 6 + end 14 (9 tokens) scores 9, start 4 + end 8 scores 8
    preds, _ = _run([w], [(s, e)], ["a"], max_answer_length=10)
    assert preds["a"] == "sleep at night and I feel tired all day"
    preds, _ = _run([w], [(s, e)], ["a"], max_answer_length=11)
    assert preds["a"] == CONTEXT


def test_n_best_size_limits_candidates():
    w = _window(WORDS)
    s, e = _logits(len(w[0]), len(w[0]) + 3)
    s[10], e[4] = 5.0, 5.0  # highest start after highest end: no valid pair among the top 1
    s[4] = 4.0
    preds, diffs = _run([w], [(s, e)], ["a"], n_best_size=1)
    assert preds["a"] == "" and diffs["a"] == np.inf
    preds, _ = _run([w], [(s, e)], ["a"], n_best_size=2)
    assert preds["a"] == "I"


def test_threshold_matches_squad_na_probs():
    w = _window(WORDS)
    width = len(w[0]) + 3
    rows = [_logits(len(w[0]), width, 6, 8, null=1.0), _logits(len(w[0]), width, 6, 8, null=20.0)]
    preds, diffs = _run([w, w], rows, ["a", "b"])
    gold = {"a": ["sleep at night"], "b": []}
    final = apply_null_threshold(preds, diffs, 0.0)
    assert final == {"a": "sleep at night", "b": ""}
    assert squad_v2_scores(final, gold) == pytest.approx(
        {k: v for k, v in squad_v2_scores(preds, gold, diffs, 0.0).items() if not k.startswith("best")})


def test_mismatched_inputs_rejected():
    w = _window(WORDS)
    s, e = _logits(len(w[0]), len(w[0]) + 3)
    with pytest.raises(ValueError, match="example ids"):
        best_char_spans(s[None], e[None], ["a", "b"], [w[0]], [w[1]], {"a": CONTEXT})
    with pytest.raises(ValueError, match="no context"):
        best_char_spans(s[None], e[None], ["x"], [w[0]], [w[1]], {"a": CONTEXT})
    with pytest.raises(ValueError, match="logit columns"):
        best_char_spans(s[None, :5], e[None, :5], ["a"], [w[0]], [w[1]], {"a": CONTEXT})
    with pytest.raises(ValueError, match="no score difference"):
        apply_null_threshold({"a": "x"}, {}, 0.0)
