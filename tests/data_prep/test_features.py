"""Examples and features: every gold span survives tokenization and decodes back through offsets."""

from __future__ import annotations

import io
import sys

import numpy as np
import pyarrow as pa
import pytest

from data_prep.examples import keep_no_answer, pair_examples, span_examples
from data_prep.features import (
    featurize_pair,
    featurize_span,
    pair_examples_table,
    span_examples_table,
)
from data_prep.records import Alignment, Annotation, Answer, QAExample
from data_prep.symptoms import SYMPTOM_ID, SYMPTOMS, criteria
from data_prep.tiny import tiny_model_dir
from data_prep.tokenizer import load_tokenizer
from plumbing.errors import ConfigError

SLEEP = "I lie awake until four every night."
TIRED = "Even a shower leaves me exhausted for hours."
EMPTY = "I feel empty and hopeless most days."
FUN = "Nothing I used to love is fun anymore."
FILLER = ["We went to the market on Sunday.", "My cousin bought a red bicycle.",
          "The weather was mild and windy.", "Our neighbour plays the piano loudly."]


def _post(*sentences: str) -> str:
    return " ".join(sentences)


POSTS = {
    "p1": _post(FILLER[0], SLEEP, EMPTY, FILLER[1]),
    # longer than one 64-token window: the evidence sits in later windows
    "p2": _post(*(FILLER * 8), TIRED, *(FILLER * 2), TIRED.replace("hours", "days"), FILLER[2]),
    "p3": _post(FILLER[3], EMPTY, EMPTY.replace("most", "all"), FILLER[0]),
}


def _annotation(post_id, k, text, symptom, status, row):
    return Annotation(post_id, f"{post_id}_{k}", text, symptom, status, row=row)


def _aligned(post_id, k, text, symptom, status, row, occurrence=0):
    post, start = POSTS[post_id], -1
    for _ in range(occurrence + 1):
        start = post.index(text, start + 1)
    annotation = _annotation(post_id, k, text, symptom, status, row)
    return Alignment(annotation, start, start + len(text), "exact", 1.0)


ALIGNMENTS = [
    _aligned("p1", 1, SLEEP, "SLEEP_ISSUES", 1, 1),
    _aligned("p1", 2, EMPTY, "DEPRESSED_MOOD", 1, 2),
    _aligned("p1", 0, FILLER[0], "FATIGUE", 0, 3),  # status 0: not evidence
    Alignment(_annotation("p1", 9, FUN, "ANHEDONIA", 1, 4), None, None, "unaligned", 0.2),
    _aligned("p2", 32, TIRED, "FATIGUE", 1, 5),
    _aligned("p2", 35, TIRED.replace("hours", "days"), "FATIGUE", 1, 6),
    _aligned("p3", 2, EMPTY.replace("most", "all"), "DEPRESSED_MOOD", 1, 7),
    _aligned("p3", 1, EMPTY, "DEPRESSED_MOOD", 1, 8),
    _aligned("p3", 1, EMPTY, "DEPRESSED_MOOD", 1, 9),  # a duplicate row: one answer, not two
]
MAX_LEN, STRIDE = 64, 16


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    texts = [*POSTS.values(), FUN] + [f"{s} {f}" for s in (SLEEP, TIRED, EMPTY, FUN) for f in FILLER] * 20
    return load_tokenizer(str(tiny_model_dir(texts, tmp_path_factory.mktemp("cache"))))


def _windows(table: pa.Table) -> list[dict]:
    return table.to_pylist()


def _by_id(examples):
    return {ex.example_id: ex for ex in examples}


def _context_bounds(w) -> tuple[int, int]:
    ctx = [i for i, s in enumerate(w["offset_start"]) if s >= 0]
    return w["offset_start"][ctx[0]], w["offset_end"][ctx[-1]]


def test_span_examples_one_per_post_and_symptom():
    examples = span_examples(POSTS, ALIGNMENTS, "criterion")
    assert [ex.example_id for ex in examples] == [f"{p}/{s}" for p in POSTS for s in SYMPTOMS]
    got = {ex.example_id: [a.text for a in ex.answers] for ex in examples if ex.answers}
    assert got == {
        "p1/SLEEP_ISSUES": [SLEEP],
        "p1/DEPRESSED_MOOD": [EMPTY],
        "p2/FATIGUE": [TIRED, TIRED.replace("hours", "days")],
        "p3/DEPRESSED_MOOD": [EMPTY, EMPTY.replace("most", "all")],  # sorted by position, deduplicated
    }
    ex = _by_id(examples)["p1/SLEEP_ISSUES"]
    assert ex.group == "p1" and ex.symptom == "SLEEP_ISSUES" and ex.question == criteria()["SLEEP_ISSUES"]
    assert all(ex.context[a.start:a.start + len(a.text)] == a.text for ex in examples for a in ex.answers)
    assert not _by_id(examples)["p1/ANHEDONIA"].answers  # unaligned rows give no answer
    assert not _by_id(examples)["p1/FATIGUE"].answers  # status 0 is not evidence
    assert span_examples({"p1": POSTS["p1"]}, ALIGNMENTS, "symptom")[3].question == "sleep issues"


@pytest.mark.parametrize("mode", ["criterion", "symptom", "empty"])
def test_span_windows_decode_to_gold(tok, mode):
    examples = span_examples(POSTS, ALIGNMENTS, mode)
    table = featurize_span(examples, tok, MAX_LEN, STRIDE)
    by_id, seen_answer_windows, later_window_answers = _by_id(examples), 0, 0
    window_index: dict[str, int] = {}
    for w in _windows(table):
        ex = by_id[w["example_id"]]
        index = window_index[ex.example_id] = window_index.get(ex.example_id, -1) + 1
        assert len(w["input_ids"]) <= MAX_LEN
        assert w["input_ids"][0] == tok.cls_token_id
        is_ctx = [s >= 0 for s in w["offset_start"]]
        assert all((e >= 0) == c for e, c in zip(w["offset_end"], is_ctx, strict=True))
        first_ctx = is_ctx.index(True)
        question_ids = w["input_ids"][1:first_ctx - 1]
        assert question_ids == tok(ex.question, add_special_tokens=False)["input_ids"]
        assert w["token_type_ids"] == [0] * first_ctx + [1] * (len(is_ctx) - first_ctx)
        s, e = w["start_positions"], w["end_positions"]
        if not ex.answers:
            assert (s, e) == (0, 0)
            continue
        lo, hi = _context_bounds(w)
        inside = [a for a in ex.answers if lo <= a.start and a.start + len(a.text) <= hi]
        assert (s > 0) == bool(inside), (ex.example_id, index)
        if inside:  # the first answer wholly inside the window
            assert 0 < s <= e and is_ctx[s] and is_ctx[e]
            assert ex.context[w["offset_start"][s]:w["offset_end"][e]] == inside[0].text
            seen_answer_windows += 1
            later_window_answers += index > 0
        else:
            assert (s, e) == (0, 0)
    assert later_window_answers > 0  # the long post's answer lies beyond its first window
    assert seen_answer_windows >= sum(1 for ex in examples if ex.answers)
    assert max(window_index.values()) >= 2  # p2 needs several windows
    if mode == "empty":
        first = _windows(table)[0]["input_ids"]
        assert tok.convert_ids_to_tokens(first[:2]) == ["[CLS]", "[SEP]"]


def _runs(tags: list[int]) -> list[tuple[int, int, bool]]:
    """(first, last, starts_with_B) of every B/I run."""
    runs, i = [], 0
    while i < len(tags):
        if tags[i] in (1, 2):
            j = i
            while j + 1 < len(tags) and tags[j + 1] == 2:
                j += 1
            runs.append((i, j, tags[i] == 1))
            i = j + 1
        else:
            i += 1
    return runs


def _check_bio(table: pa.Table, examples) -> dict[str, int]:
    """Every B/I run decodes to a gold answer, or to its visible part where a window cuts it."""
    assert table.schema.field("tags").type == pa.list_(pa.int8())
    by_id, tagged, kinds = _by_id(examples), set(), {"full": 0, "prefix": 0, "suffix": 0}
    for w in _windows(table):
        ex = by_id[w["example_id"]]
        tags, starts, ends = w["tags"], w["offset_start"], w["offset_end"]
        assert all((t == -100) == (s < 0) for t, s in zip(tags, starts, strict=True))
        lo, hi = _context_bounds(w)
        expected = {a.text for a in ex.answers if lo <= a.start and a.start + len(a.text) <= hi}
        full = set()
        for first, last, begins in _runs(tags):
            text = ex.context[starts[first]:ends[last]]
            if begins and text in expected:
                full.add(text)
                kinds["full"] += 1
            elif begins:  # the window cuts the span's end: a prefix, up to the last context token
                assert ends[last] == hi and any(a.text.startswith(text) for a in ex.answers), text
                kinds["prefix"] += 1
            else:  # the window cuts the span's start: a suffix, from the first context token on
                assert starts[first] == lo and any(a.text.endswith(text) for a in ex.answers), text
                kinds["suffix"] += 1
        assert full == expected, ex.example_id
        tagged |= {(ex.example_id, t) for t in full}
    return {**kinds, "tagged": tagged}


def test_bio_tags_cover_every_gold_span(tok):
    examples = span_examples(POSTS, ALIGNMENTS, "criterion")
    table = featurize_span(examples, tok, MAX_LEN, STRIDE, bio=True)
    checked = _check_bio(table, examples)
    assert checked["tagged"] == {(ex.example_id, a.text) for ex in examples for a in ex.answers}
    p3 = [w for w in _windows(table) if w["example_id"] == "p3/DEPRESSED_MOOD"][0]
    assert sum(1 for *_, begins in _runs(p3["tags"]) if begins) == 2  # adjacent spans stay apart
    for w in _windows(table):  # start/end point at the first answer wholly inside the window
        if w["start_positions"]:
            assert w["tags"][w["start_positions"]] == 1


def test_bio_tags_of_a_span_longer_than_the_window_step(tok):
    long_answer = " ".join([TIRED, EMPTY, SLEEP, FUN, TIRED, EMPTY])
    context = _post(*(FILLER * 3), long_answer, *(FILLER * 3))
    short = context.index(FILLER[1], len(" ".join(FILLER * 3)) + len(long_answer))
    answers = (Answer(long_answer, context.index(long_answer)), Answer(FILLER[1], short))
    ex = QAExample("long/FATIGUE", "", context, answers, "long")
    kinds = _check_bio(featurize_span([ex], tok, 48, 8, bio=True), [ex])
    assert kinds["prefix"] >= 1 and kinds["suffix"] >= 1 and kinds["full"] >= 1


def test_compact_dtypes(tok):
    examples = span_examples(POSTS, ALIGNMENTS, "criterion")
    span = featurize_span(examples, tok, MAX_LEN, STRIDE)
    assert span.schema == pa.schema([
        ("example_id", pa.string()), ("input_ids", pa.list_(pa.uint16())),
        ("token_type_ids", pa.list_(pa.int8())), ("offset_start", pa.list_(pa.int32())),
        ("offset_end", pa.list_(pa.int32())), ("start_targets", pa.list_(pa.int8())),
        ("end_targets", pa.list_(pa.int8())), ("start_positions", pa.int32()), ("end_positions", pa.int32()),
    ])
    pair = featurize_pair(pair_examples([al.annotation for al in ALIGNMENTS]), tok, 64)
    assert pair.schema == pa.schema([
        ("example_id", pa.string()), ("input_ids", pa.list_(pa.uint16())),
        ("token_type_ids", pa.list_(pa.int8())), ("label", pa.int8()), ("symptom_id", pa.int8()),
    ])


def test_tokenizer_without_token_types_gives_no_column(tok):
    from transformers import PreTrainedTokenizerFast

    plain = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, cls_token="[CLS]",
                                    sep_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]",
                                    model_input_names=["input_ids", "attention_mask"])
    examples = span_examples(POSTS, ALIGNMENTS, "symptom")
    table = featurize_span(examples, plain, MAX_LEN, STRIDE, bio=True)
    assert "token_type_ids" not in table.column_names
    assert table.column("input_ids").to_pylist() == \
        featurize_span(examples, tok, MAX_LEN, STRIDE).column("input_ids").to_pylist()


def test_question_without_room_is_a_config_error(tok):
    examples = span_examples({"p1": POSTS["p1"]}, ALIGNMENTS, "criterion")
    longest = max(len(tok(q, add_special_tokens=False)["input_ids"]) for q in criteria().values())
    with pytest.raises(ConfigError) as e:
        featurize_span(examples, tok, longest + 3, 0)
    assert e.value.key == "features.max_length" and f"needs {longest + 3} tokens" in str(e.value)
    with pytest.raises(ConfigError) as e:
        featurize_span(examples, tok, longest + 3 + 8, 8)
    assert e.value.key == "features.doc_stride"
    featurize_span(examples, tok, longest + 3 + 9, 8)  # one more token is enough
    with pytest.raises(ConfigError, match="features.max_length"):
        featurize_pair(pair_examples([al.annotation for al in ALIGNMENTS]), tok, 8)


def test_pair_examples_and_features(tok):
    annotations = [al.annotation for al in ALIGNMENTS]
    examples = pair_examples(annotations)
    ids = [ex.example_id for ex in examples]
    assert len(set(ids)) == len(ids)
    assert ids[:2] == ["p1_1/SLEEP_ISSUES", "p1_2/DEPRESSED_MOOD"]
    assert ids[-2:] == ["p3_1/DEPRESSED_MOOD#row8", "p3_1/DEPRESSED_MOOD#row9"]  # repeated annotation
    assert [ex.label for ex in examples] == [a.status for a in annotations]
    assert all(ex.criterion == criteria()[ex.symptom] and ex.group == ex.example_id[:2] for ex in examples)

    width = max(len(tok(ex.criterion)["input_ids"]) for ex in examples) + 4
    table = featurize_pair(examples, tok, width)
    for ex, row in zip(examples, table.to_pylist(), strict=True):
        crit = tok(ex.criterion, add_special_tokens=False)["input_ids"]
        sent = tok(ex.sentence, add_special_tokens=False)["input_ids"]
        ids = row["input_ids"]
        n_sent = min(len(sent), width - len(crit) - 3)
        assert ids == [tok.cls_token_id, *crit, tok.sep_token_id, *sent[:n_sent], tok.sep_token_id]
        assert row["token_type_ids"] == [0] * (len(crit) + 2) + [1] * (n_sent + 1)
        assert (row["label"], row["symptom_id"]) == (ex.label, SYMPTOM_ID[ex.symptom])
    assert any(len(r) == width for r in table.column("input_ids").to_pylist())  # some were truncated


def test_example_tables():
    examples = span_examples(POSTS, ALIGNMENTS, "symptom")
    t = span_examples_table(examples)
    assert t.schema == pa.schema([
        ("example_id", pa.string()), ("group", pa.string()), ("symptom", pa.string()),
        ("question", pa.string()), ("context", pa.string()),
        ("answer_texts", pa.list_(pa.string())), ("answer_starts", pa.list_(pa.int32())),
    ])
    row = t.to_pylist()[[ex.example_id for ex in examples].index("p2/FATIGUE")]
    assert row["answer_texts"] == [TIRED, TIRED.replace("hours", "days")]
    assert [row["context"][s:s + len(a)] for s, a in zip(row["answer_starts"], row["answer_texts"],
                                                            strict=True)] == row["answer_texts"]
    pairs = pair_examples([al.annotation for al in ALIGNMENTS])
    p = pair_examples_table(pairs)
    assert p.schema == pa.schema([("example_id", pa.string()), ("group", pa.string()),
                                  ("symptom", pa.string()), ("sentence", pa.string()), ("label", pa.int8()),
                                  ("kind", pa.string()), ("sentence_key", pa.int32())])
    assert p.column("label").to_pylist() == [ex.label for ex in pairs]
    assert set(p.column("kind").to_pylist()) == {"annotated"}
    keys = p.column("sentence_key").to_pylist()  # one per sentence of a post: p3's repeated row shares one
    assert keys[:3] == [0, 1, 2] and keys[-1] == keys[-2]


def _qa(n: int, every: int) -> list[QAExample]:
    """``n`` examples, every ``every``-th one answerable."""
    return [QAExample(f"e{i}", "q", "x y", (Answer("x", 0),) if i % every == 0 else (), f"g{i}")
            for i in range(n)]


def test_keep_no_answer_is_seeded_and_respects_ratio():
    examples = _qa(200, 10)
    n_ans = sum(1 for e in examples if e.answers)
    assert n_ans == 20
    kept = keep_no_answer(examples, 1.5, seed=3)
    assert sum(1 for e in kept if e.answers) == 20 and sum(1 for e in kept if not e.answers) == 30
    order = [e.example_id for e in examples]
    assert [order.index(e.example_id) for e in kept] == sorted(order.index(e.example_id) for e in kept)
    assert keep_no_answer(examples, 1.5, seed=3) == kept
    assert keep_no_answer(examples, 1.5, seed=4) != kept
    assert keep_no_answer(examples, 0, seed=3) == [e for e in examples if e.answers]
    assert keep_no_answer(examples, -1, seed=3) == examples
    assert keep_no_answer(examples, 100, seed=3) == examples  # more than exist: all of them
    assert len(keep_no_answer(examples, 0.26, seed=3)) == 20 + 5  # round(0.26 * 20)
    with pytest.raises(ConfigError, match="no_answer_ratio"):
        keep_no_answer(examples, -0.5, seed=3)


def test_keep_no_answer_keeps_hard_negatives_first():
    examples = _qa(200, 10)
    no_answer = [e.example_id for e in examples if not e.answers]
    hard = set(no_answer[:15])
    kept = {e.example_id for e in keep_no_answer(examples, 1.0, seed=3, prefer=hard) if not e.answers}
    assert len(kept) == 20 and hard <= kept  # all 15 hard ones, then 5 sampled easy ones
    fewer = {e.example_id for e in keep_no_answer(examples, 0.5, seed=3, prefer=hard) if not e.answers}
    assert len(fewer) == 10 and fewer <= hard


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_for_large_inputs_on_a_terminal(tok, capsys, monkeypatch):
    annotations = [al.annotation for al in ALIGNMENTS]
    featurize_pair(pair_examples(annotations * 40), tok, 64)
    assert "pair features" not in capsys.readouterr().err  # piped (captured): no bar however large
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    featurize_pair(pair_examples(annotations * 5), tok, 64)
    assert "pair features" not in terminal.getvalue()
    featurize_pair(pair_examples(annotations * 40), tok, 64)
    assert "pair features" in terminal.getvalue()


def test_windows_share_stride_tokens(tok):
    ex = span_examples({"p2": POSTS["p2"]}, ALIGNMENTS, "empty")[SYMPTOM_ID["FATIGUE"]]
    windows = _windows(featurize_span([ex], tok, MAX_LEN, STRIDE))
    assert len(windows) >= 3
    for a, b in zip(windows, windows[1:], strict=False):
        ctx_a = [(s, e) for s, e in zip(a["offset_start"], a["offset_end"], strict=True) if s >= 0]
        ctx_b = [(s, e) for s, e in zip(b["offset_start"], b["offset_end"], strict=True) if s >= 0]
        assert ctx_a[-STRIDE:] == ctx_b[:STRIDE]
    assert _context_bounds(windows[-1])[1] == len(ex.context)
    assert np.all(np.diff([_context_bounds(w)[0] for w in windows]) > 0)


def test_windows_are_full_until_the_last_and_step_room_minus_stride(tok):
    """The windows come from the context length, room and stride alone, whatever the tokenizers
    version (0.23.2's own overflow gave this post 2 windows, the second cut short, instead of 7)."""
    ex = span_examples({"p2": POSTS["p2"]}, ALIGNMENTS, "empty")[SYMPTOM_ID["FATIGUE"]]
    n = len(tok(ex.context, add_special_tokens=False)["input_ids"])
    room = MAX_LEN - tok.num_special_tokens_to_add(pair=True)
    windows = _windows(featurize_span([ex], tok, MAX_LEN, STRIDE))
    assert len(windows) == 1 + -(-(n - room) // (room - STRIDE)) == 7
    assert [len(w["input_ids"]) for w in windows[:-1]] == [MAX_LEN] * (len(windows) - 1)
    assert sum(s >= 0 for s in windows[-1]["offset_start"]) == n - (len(windows) - 1) * (room - STRIDE)


def test_start_end_targets_mark_every_answer_inside_the_window(tok):
    examples = span_examples(POSTS, ALIGNMENTS, "criterion")
    table = featurize_span(examples, tok, MAX_LEN, STRIDE)
    by_id = {ex.example_id: ex for ex in examples}
    two = 0
    for w in _windows(table):
        starts, ends = np.flatnonzero(w["start_targets"]), np.flatnonzero(w["end_targets"])
        context = by_id[w["example_id"]].context
        spans = {context[w["offset_start"][s]:w["offset_end"][e]] for s, e in zip(starts, ends, strict=True)}
        if list(starts) == [0]:  # no answer inside: [CLS], as start_positions
            assert list(ends) == [0] and w["start_positions"] == 0
            continue
        assert spans <= {a.text for a in by_id[w["example_id"]].answers}
        assert w["start_positions"] == starts[0] and w["end_positions"] == ends[0]
        two += len(starts) > 1
    assert two >= 1  # p3/DEPRESSED_MOOD holds two evidence sentences in one window
