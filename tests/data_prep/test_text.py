import pytest

from data_prep.text import (
    TfidfSpace,
    normalize,
    normalize_with_map,
    similarity,
    similarity_form,
    split_sentences,
)


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
        ("I cry almost every night and I dont even know why.",
         "Almost every night I cry and I do not even know the reason."),
    ],
)
def test_rewording_scores_high(a, b):
    assert similarity(a, b) >= 0.6
    assert similarity(a, b) == pytest.approx(similarity(b, a))


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
    assert similarity(a, b) < 0.1


def test_similarity_bounds():
    assert similarity("Same text.", "  same TEXT. ") == 1.0
    assert similarity("abc", "xyz") == 0.0
    assert similarity("Sleep came late.", "late came sleep") > 0.6  # word order barely matters


@pytest.mark.parametrize(
    "text, form",
    [
        ("I can't, I cant, I CANNOT", "i can not i can not i can not"),
        ("I won't. I didn't, it wasnt, they couldn\u2019t", "i will not i did not it was not they could not"),
        ("I'm fine, im fine, I've, ive", "i am fine i am fine i have i have"),
        ("we'll, they're, I'd, needn't", "we will they are i would need not"),
        ("my dog's bowl, imagine, cantor, well-being!", "my dog s bowl imagine cantor well being"),
    ],
)
def test_similarity_form_spells_out_contractions_and_drops_punctuation(text, form):
    assert similarity_form(text) == form


def test_space_scores_sentences_and_windows():
    space = TfidfSpace(["I can't sleep at night.", "My dog is great.", "Work is busy.", "I can't sleep."])
    vectors = space.vectors([(0, 1), (1, 2), (2, 3), (0, 2)])
    scores = space.scores(vectors, "At night I cannot sleep")
    assert scores.shape == (4,) and scores.argmax() == 0 and scores[0] > 0.9
    assert scores[1] < 0.1 and scores[2] < 0.1
    assert 0.5 < scores[3] < scores[0]  # the window of two reads as one text, diluted by the dog
    assert space.scores(vectors, "zebra quokka").tolist() == [0.0] * 4


def test_space_weighs_words_by_their_idf_and_unseen_words_count():
    def score(texts, query):
        space = TfidfSpace(texts)
        return space.scores(space.vectors([(0, 1)]), query)[0]

    # "a lot" is shared with the query; it counts for less where every sentence has it.
    common = score(["I sleep a lot.", "I eat a lot.", "I walk a lot."], "I nap a lot")
    rare = score(["I sleep a lot.", "The dog barks.", "Rain again today."], "I nap a lot")
    assert common < rare
    texts = ["I sleep a lot.", "The dog barks."]
    assert score(texts, "I sleep a lot") == pytest.approx(1.0)
    assert score(texts, "I sleep a lot, zebra quokka yak") < 0.6  # words the texts lack count against it
