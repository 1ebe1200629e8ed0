"""The synthetic demo corpus: deterministic, valid ReDSM5, and hard enough to be worth sweeping on."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict

import pytest

from data_prep.demo import HARD_NEGATIVE, demo_dir, write_demo
from data_prep.featureset import is_complete
from data_prep.redsm5 import ANNOTATIONS_CSV, POSTS_CSV, load_redsm5
from data_prep.symptoms import SYMPTOMS

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split(text: str) -> list[str]:
    return SENTENCE_END.split(text)


PLAIN = str.maketrans({"\u2019": "'", "\u2013": "-", "\u2014": "-"})


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(PLAIN)
    return " ".join(text.lower().split())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return load_redsm5(write_demo(tmp_path_factory.mktemp("demo")))


@pytest.fixture(scope="module")
def posts(corpus):
    return {p.post_id: split(p.text) for p in corpus.posts}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a, b, c = (write_demo(tmp_path / name, 60, seed) for name, seed in (("a", 5), ("b", 5), ("c", 6)))
    for name in (POSTS_CSV, ANNOTATIONS_CSV):
        assert (a / name).read_bytes() == (b / name).read_bytes()
        assert (a / name).read_bytes() != (c / name).read_bytes()


def test_loads_back_without_warnings(corpus):
    assert len(corpus.posts) == 400
    assert corpus.posts[0].post_id == "demo_0001"
    assert corpus.warnings == {}
    assert all(a.explanation for a in corpus.annotations)


def test_every_symptom_has_evidence_and_hard_negatives(corpus):
    counts = Counter((a.symptom, a.status) for a in corpus.annotations)
    for symptom in SYMPTOMS:
        assert counts[symptom, 1] >= 20 and counts[symptom, 0] >= 10, symptom


def test_post_shapes_vary(corpus, posts):
    lengths = [len(s) for s in posts.values()]
    long_posts = sum(n >= 30 for n in lengths)
    assert 0.05 < long_posts / len(lengths) < 0.2 and max(lengths) <= 60
    assert sum(3 <= n <= 12 for n in lengths) / len(lengths) > 0.7
    by_post = defaultdict(list)
    for a in corpus.annotations:
        by_post[a.post_id].append(a)
    assert 0 < len(posts) - len(by_post) < 0.1 * len(posts)  # a few posts without annotations
    assert any(len({a.symptom for a in anns}) >= 3 for anns in by_post.values())
    positives = Counter((a.post_id, a.symptom) for a in corpus.annotations if a.status == 1)
    assert any(n >= 2 for n in positives.values())  # two evidence sentences for one symptom
    sentences = Counter((a.post_id, a.sentence_id) for a in corpus.annotations)
    assert any(n >= 2 for n in sentences.values())  # one sentence, several symptoms
    assert any("\n" in p.text for p in corpus.posts)


def test_sentences_are_split_unambiguously(posts):
    for sentences in posts.values():
        for s in sentences:
            assert s[-1] in ".!?" and not re.search(r"[.!?]\s", s) and "\n" not in s, s


def test_annotation_copies_are_mostly_verbatim_and_at_their_sentence_id(corpus, posts):
    kinds = Counter()
    for a in corpus.annotations:
        sentences = posts[a.post_id]
        k = int(a.sentence_id.rsplit("_", 1)[1])
        if a.sentence_text in sentences:
            kinds["verbatim"] += 1
            assert sentences[k] == a.sentence_text and sentences.count(a.sentence_text) == 1
        elif any(normalize(a.sentence_text) == normalize(s) for s in sentences):
            kinds["normalized"] += 1
            assert normalize(sentences[k]) == normalize(a.sentence_text)
        else:
            kinds["reworded"] += 1
    total = sum(kinds.values())
    assert kinds["verbatim"] / total > 0.88
    assert 0.02 < kinds["normalized"] / total < 0.08
    assert 0.01 < kinds["reworded"] / total < 0.06


def test_a_little_label_noise_on_hard_negatives(corpus):
    patterns = {s: [re.compile(re.sub(r"\\\{\w+\\\}", ".+", re.escape(t)) + "$") for t in templates]
                for s, templates in HARD_NEGATIVE.items()}
    statuses = [a.status for a in corpus.annotations
                if any(p.match(a.sentence_text) for p in patterns[a.symptom])]
    flipped = sum(statuses) / len(statuses)
    assert 0 < flipped < 0.1


def test_demo_dir_writes_once_and_replaces_partial_writes(tmp_path):
    partial = tmp_path / "demo" / "n20-s3"
    partial.mkdir(parents=True)
    (partial / POSTS_CSV).write_text("post_id,text\n")  # an interrupted write: no marker
    path = demo_dir(tmp_path, 20, 3)
    assert path == partial and is_complete(path)
    assert len(load_redsm5(path).posts) == 20
    (path / "sentinel").write_text("kept")
    assert demo_dir(tmp_path, 20, 3) == path and (path / "sentinel").exists()
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["n20-s3"]  # no temp dirs left
