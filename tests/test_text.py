import pytest

from data_prep.text import normalize, normalize_with_map, similarity, split_sentences


def test_normalize_folds_case_quotes_dashes_and_whitespace():
    text = "  I\u00a0CAN\u2019T  sleep \u2014 \u201creally\u201d\u2026\n\tOK\u200b!  "
    assert normalize(text) == 'i can\'t sleep - "really"... ok!'


def test_normalize_applies_nfkc_and_composes_combining_marks():
    assert normalize("\ufb01ne Cafe\u0301 \uff21") == "fine caf\u00e9 a"


def test_map_points_every_char_back_to_its_origin():
    text = "  Don\u2019t  \u2013 STOP\u2026 caf\u00e9 "
    norm, index = normalize_with_map(text)
    assert norm == "don't - stop... caf\u00e9"
    assert len(index) == len(norm)
    assert index == sorted(index)
    for c, i in zip(norm, index, strict=True):
        if c != " ":
            assert normalize(text[i]) and c in normalize(text[i])
    stop = norm.index("stop...")
    start, last = index[stop], index[stop + len("stop...") - 1]
    assert text[start : last + 1] == "STOP\u2026"


def test_map_of_collapsed_space_points_at_whitespace():
    text = "a \t\n b"
    norm, index = normalize_with_map(text)
    assert norm == "a b"
    assert text[index[1]].isspace()


def _sentences(text):
    return [text[s:e] for s, e in split_sentences(text)]


def test_split_on_terminal_punctuation_quotes_and_newlines():
    text = 'I am tired. "Why me?!" she asked.\nNo title line\n\n  Done... really (yes.) End'
    assert _sentences(text) == [
        "I am tired.",
        '"Why me?!"',
        "she asked.",
        "No title line",
        "Done...",
        "really (yes.)",
        "End",
    ]


def test_split_keeps_inner_periods_and_skips_blank_pieces():
    assert _sentences("Version 3.5 works.   ") == ["Version 3.5 works."]
    assert split_sentences("   \n \n") == []
    assert split_sentences("") == []


def test_split_spans_are_trimmed_and_in_order():
    text = "  One.  Two!\n Three?"
    spans = split_sentences(text)
    assert spans == [(2, 6), (8, 12), (14, 20)]


@pytest.mark.parametrize(
    "a, b",
    [
        ("I haven't slept properly in weeks.", "I have not slept properly in weeks"),
        ("I can't sleep at night anymore.", "I can't sleep at night."),
        ("I can't sleep at night anymore.", "I cannot sleep at night anymore!"),
        ("I feel worthless and useless every day.", "I feel useless every day."),
        ("i don't want to be here anymore", "I DO NOT want to be here anymore..."),
    ],
)
def test_light_rewording_scores_high(a, b):
    assert similarity(a, b) >= 0.8
    assert similarity(a, b) == pytest.approx(similarity(b, a), abs=0.05)


@pytest.mark.parametrize(
    "a, b",
    [
        ("I feel worthless and useless every day.", "My dog went to the vet yesterday."),
        ("I can't sleep at night anymore.", "Nothing I used to enjoy is fun."),
        (
            "I've been so tired lately that I can barely get out of bed.",
            "Honestly I don't know what to do with my life at this point.",
        ),
    ],
)
def test_unrelated_sentences_score_low(a, b):
    assert similarity(a, b) < 0.5


def test_similarity_bounds():
    assert similarity("Same text.", "  same TEXT. ") == 1.0
    assert 0.0 <= similarity("abc", "xyz") < 0.1
