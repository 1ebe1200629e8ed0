import importlib.util
import time
from pathlib import Path

import pytest

from data_prep.align import RULES, align_annotations, rule_counts, sentence_index, unaligned_ids
from data_prep.config import DataConfig
from data_prep.demo import write_demo
from data_prep.records import Annotation
from data_prep.text import split_sentences

SENTENCE_T, FUZZY_T = DataConfig.sentence_threshold, DataConfig.fuzzy_threshold

POST_ID = "abc_123"  # post ids may contain underscores
POST = (
    "I haven't slept properly in weeks. Work is fine, my boss is nice.\n"
    "I feel worthless and useless every day. My dog went to the vet yesterday. "
    "I feel worthless and useless every day. Nothing I used to enjoy is fun anymore."
)
POSTS = {POST_ID: POST}


def _ann(text, k=None, symptom="SLEEP_ISSUES", sentence_id=None, row=1, post_id=POST_ID):
    sid = sentence_id if sentence_id is not None else (f"{post_id}_{k}" if k is not None else "")
    return Annotation(post_id, sid, text, symptom, 1, row=row)


def _one(ann, **kw):
    (alignment,) = align_annotations(POSTS, [ann], **kw)
    return alignment


def test_post_splits_into_expected_sentences():
    assert [POST[s:e] for s, e in split_sentences(POST)] == [
        "I haven't slept properly in weeks.",
        "Work is fine, my boss is nice.",
        "I feel worthless and useless every day.",
        "My dog went to the vet yesterday.",
        "I feel worthless and useless every day.",
        "Nothing I used to enjoy is fun anymore.",
    ]


def test_exact_rule():
    a = _one(_ann("  I haven't slept properly in weeks. ", k=0))
    assert (a.rule, a.similarity) == ("exact", 1.0)
    assert POST[a.start : a.end] == "I haven't slept properly in weeks."


def test_normalized_rule_maps_back_to_original_offsets():
    variant = "i  HAVEN\u2019T slept\nproperly in weeks."
    assert variant not in POST
    a = _one(_ann(variant, k=0))
    assert (a.rule, a.similarity) == ("normalized", 1.0)
    assert POST[a.start : a.end] == "I haven't slept properly in weeks."


def test_normalized_rule_on_a_post_with_unicode():
    post = "Intro here.  \u201cI CAN\u2019T  go on\u201d \u2014 she said.\nEnd."
    ann = Annotation("u1", "u1_1", '"i can\'t go on" - she said.', "SUICIDAL_THOUGHTS", 1, row=1)
    (a,) = align_annotations({"u1": post}, [ann])
    assert a.rule == "normalized"
    assert post[a.start : a.end] == "\u201cI CAN\u2019T  go on\u201d \u2014 she said."


def test_reworded_sentence_found_by_sentence_id():
    a = _one(_ann("I have not slept well in weeks", k=0))
    assert a.rule == "sentence_id"
    assert POST[a.start : a.end] == "I haven't slept properly in weeks."
    assert SENTENCE_T <= a.similarity < 1.0


def test_reworded_sentence_without_id_found_by_fuzzy():
    a = _one(_ann("Nothing I used to enjoy is fun now.", sentence_id=""))
    assert a.rule == "fuzzy"
    assert POST[a.start : a.end] == "Nothing I used to enjoy is fun anymore."
    assert a.similarity >= FUZZY_T


def test_wrong_sentence_id_is_rejected_and_fuzzy_finds_the_right_sentence():
    # k=3 is "My dog went to the vet yesterday.", unlike the annotated text.
    a = _one(_ann("I have not slept properly in weeks", k=3))
    assert a.rule == "fuzzy"
    assert POST[a.start : a.end] == "I haven't slept properly in weeks."


def test_fuzzy_matches_a_window_of_two_sentences():
    a = _one(_ann("I have not slept properly in weeks. Work is fine, my boss is nice", sentence_id=""))
    assert a.rule == "fuzzy"
    assert POST[a.start : a.end] == "I haven't slept properly in weeks. Work is fine, my boss is nice."


def test_duplicate_occurrence_is_disambiguated_by_sentence_id():
    text = "I feel worthless and useless every day."
    second = _one(_ann(text, k=4))
    first = _one(_ann(text, k=2))
    no_id = _one(_ann(text, sentence_id="garbage"))
    assert second.rule == first.rule == no_id.rule == "exact"
    assert POST[second.start : second.end] == text
    assert second.start > first.start
    assert no_id.start == first.start == POST.index(text)


def test_duplicate_occurrence_disambiguated_in_normalized_rule():
    text = "I FEEL worthless and useless every day"
    a = _one(_ann(text, k=4))
    assert a.rule == "normalized"
    assert a.start == POST.rindex("I feel worthless")


def test_unrelated_sentence_stays_unaligned_and_is_reported():
    anns = [
        _ann("I haven't slept properly in weeks.", k=0, row=1),
        _ann("The stock market crashed on Tuesday.", k=1, symptom="ANHEDONIA", row=2),
        _ann("Bananas are yellow.", sentence_id="", symptom="FATIGUE", row=3),
    ]
    aligned = align_annotations(POSTS, anns)
    assert [a.annotation for a in aligned] == anns
    bad = aligned[1]
    assert (bad.rule, bad.start, bad.end) == ("unaligned", None, None)
    assert 0.0 < bad.similarity < FUZZY_T
    assert unaligned_ids(aligned) == [f"{POST_ID}_1/ANHEDONIA", "row 3/FATIGUE"]


def test_missing_post_and_empty_text_stay_unaligned():
    anns = [_ann("Anything.", k=0, post_id="nope"), _ann("   ", k=0)]
    assert [(a.rule, a.similarity) for a in align_annotations(POSTS, anns)] == [
        ("unaligned", 0.0),
        ("unaligned", 0.0),
    ]


def test_thresholds_are_honoured():
    ann = _ann("I have not slept well in weeks", k=0)
    strict = _one(ann, sentence_threshold=0.99, fuzzy_threshold=0.99)
    assert strict.rule == "unaligned"
    assert strict.similarity == pytest.approx(_one(ann).similarity)


def test_rule_counts_lists_every_rule():
    anns = [
        _ann("I haven't slept properly in weeks.", k=0),
        _ann("i haven't slept  properly in weeks", k=0),
        _ann("I have not slept properly in weeks", k=0),
        _ann("I have not slept properly in weeks", k=3),
        _ann("Bananas are yellow.", k=1),
        _ann("Work is fine, my boss is nice.", k=1),
    ]
    counts = rule_counts(align_annotations(POSTS, anns))
    assert counts == {"exact": 2, "normalized": 1, "sentence_id": 1, "fuzzy": 1, "unaligned": 1}
    assert rule_counts([]) == dict.fromkeys(RULES, 0)


@pytest.mark.parametrize(
    "sentence_id, k",
    [
        ("abc_123_4", 4),
        ("p1_0", 0),
        ("p1", None),
        ("p1_x", None),
        ("p1_-1", None),
        ("p1_\u00b2", None),
        ("", None),
    ],
)
def test_sentence_index(sentence_id, k):
    assert sentence_index(sentence_id) == k


def test_out_of_range_sentence_id_falls_through_to_fuzzy():
    a = _one(_ann("I have not slept properly in weeks", k=99))
    assert a.rule == "fuzzy"


def test_reordered_synonyms_found_by_sentence_id():
    a = _one(_ann("Every single day I feel useless and worthless", k=2))
    assert a.rule == "sentence_id"
    assert POST[a.start : a.end] == "I feel worthless and useless every day."


LOOKALIKES = (
    "Everything is my fault. I ruined my relationship because I was too needy. "
    "I ruined my friendship with Sam because I never texted back. I feel so guilty all the time."
)


def test_id_of_a_lookalike_sentence_does_not_pull_the_copy_to_it():
    # The id names sentence 1, which shares "I ruined my ... because I" with the copy; sentence 2 is
    # more similar, so the id is not trusted and fuzzy takes the right one.
    ann = Annotation("p", "p_1", "I ruined my friendship with Sam since I never replied to his texts",
                     "WORTHLESSNESS", 1, row=1)
    (a,) = align_annotations({"p": LOOKALIKES}, [ann])
    assert a.rule == "fuzzy"
    assert LOOKALIKES[a.start : a.end] == "I ruined my friendship with Sam because I never texted back."


def test_sentence_id_takes_the_kth_sentence_with_the_next_when_the_splitter_cut_the_copy():
    post = "Went to see my GP today. My GP, Dr. Patel, said it's probably depression. She gave me a leaflet."
    ann = Annotation("p", "p_1", "My GP Dr Patel said it is probably depression", "SPECIAL_CASE", 1, row=1)
    (a,) = align_annotations({"p": post}, [ann])
    assert a.rule == "sentence_id"
    assert post[a.start : a.end] == "My GP, Dr. Patel, said it's probably depression."


def test_post_of_punctuation_only_leaves_the_row_unaligned():
    (a,) = align_annotations({"p": "?!"}, [Annotation("p", "p_0", "Hello there.", "FATIGUE", 1, row=1)])
    assert (a.rule, a.similarity) == ("unaligned", 0.0)


def _bench_align():
    """bench/align.py, the paraphrase set's loader and figures (a script, so loaded from its path)."""
    path = Path(__file__).resolve().parents[2] / "bench" / "align.py"
    spec = importlib.util.spec_from_file_location("bench_align", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def paraphrases(tmp_path_factory):
    bench = _bench_align()
    demo = write_demo(tmp_path_factory.mktemp("demo"), bench.DEMO_POSTS, bench.DEMO_SEED)
    return bench, *bench.load_set(demo)


def test_paraphrase_set_is_reworded_copies_and_absent_ones(paraphrases):
    bench, posts, annotations, gold = paraphrases
    assert sum(span is not None for span in gold) >= 100 and sum(span is None for span in gold) >= 10
    demo_sentences = {(a.post_id, span) for a, span in zip(annotations, gold, strict=True)
                      if span and a.post_id.startswith("demo_")}
    assert len(demo_sentences) >= 40
    # Neither exact nor normalized copies: every row is a job for the similarity rules.
    counts = rule_counts(align_annotations(posts, annotations, sentence_threshold=1.0, fuzzy_threshold=1.0))
    assert counts["exact"] == counts["normalized"] == 0


def test_paraphrase_figures_at_default_thresholds(paraphrases):
    bench, posts, annotations, gold = paraphrases
    start = time.perf_counter()
    alignments = align_annotations(posts, annotations)
    seconds = time.perf_counter() - start
    figures = bench.figures(alignments, gold)
    assert figures["right"] >= 0.8, figures
    assert figures["wrong"] <= 0.02, figures
    assert figures["absent_kept_out"] == figures["absent"], figures
    counts = rule_counts(alignments)
    assert counts["sentence_id"] > 0 and counts["fuzzy"] > 0
    assert seconds < 5, f"aligning {len(annotations)} rows took {seconds:.1f} s"
