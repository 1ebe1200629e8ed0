import pytest

from data_prep.align import RULES, align_annotations, rule_counts, sentence_index, unaligned_ids
from data_prep.records import Annotation
from data_prep.text import split_sentences

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
    a = _one(_ann("I have not slept properly in weeks", k=0))
    assert a.rule == "sentence_id"
    assert POST[a.start : a.end] == "I haven't slept properly in weeks."
    assert 0.6 <= a.similarity < 1.0


def test_reworded_sentence_without_id_found_by_fuzzy():
    a = _one(_ann("Nothing I used to enjoy is fun now.", sentence_id=""))
    assert a.rule == "fuzzy"
    assert POST[a.start : a.end] == "Nothing I used to enjoy is fun anymore."
    assert a.similarity >= 0.75


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
    assert 0.0 < bad.similarity < 0.75
    assert unaligned_ids(aligned) == [f"{POST_ID}_1/ANHEDONIA", "row 3/FATIGUE"]


def test_missing_post_and_empty_text_stay_unaligned():
    anns = [_ann("Anything.", k=0, post_id="nope"), _ann("   ", k=0)]
    assert [(a.rule, a.similarity) for a in align_annotations(POSTS, anns)] == [
        ("unaligned", 0.0),
        ("unaligned", 0.0),
    ]


def test_thresholds_are_honoured():
    ann = _ann("I have not slept properly in weeks", k=0)
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
