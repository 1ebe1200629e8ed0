"""Typed config of data preparation, shared by every later stage (they extend ``PrepConfig``).

OmegaConf structured configs give typed defaults, dotted overrides and clear errors for unknown
keys or wrong types; ``validate_prep`` adds the range checks types cannot express.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING, DictConfig  # noqa: F401  (re-exported for config modules)

from plumbing.errors import ConfigError

TASKS = ("span", "span_crf", "pair")
DATASETS = ("redsm5", "squad_v2", "demo")
QUESTION_MODES = ("criterion", "symptom", "empty")
DEFAULT_SPLITS = {"span": [0.8, 0.1, 0.1], "span_crf": [0.8, 0.1, 0.1], "pair": [0.7, 0.15, 0.15]}


def doc(text: str, default=MISSING, factory=None):
    """A dataclass field carrying its help text (shown by ``--help``)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass
class DataConfig:
    name: str = doc("dataset: redsm5 | squad_v2 | demo", "demo")
    dir: str | None = doc(
        "redsm5: folder with redsm5_posts.csv|jsonl and redsm5_annotations.csv; "
        "squad_v2: folder with train-v2.0.json [dev-v2.0.json] or one JSON file; "
        "demo: the synthetic CSVs go to <data.dir or cache_dir>/demo/n<posts>-s<seed>",
        None,
    )
    demo_posts: int = doc("number of posts in the synthetic demo corpus", 400)
    demo_seed: int = doc("seed of the demo corpus (independent of the training seed)", 13)
    split_ratios: list[float] | None = doc(
        "train/val/test fractions by post (default 0.8/0.1/0.1 for span tasks, 0.7/0.15/0.15 for pair)",
        None,
    )
    split_seed: int = doc("seed of the post-level split", 42)
    sentence_threshold: float = doc(
        "similarity (0-1: mean TF-IDF cosine over word 1-2 grams and char 3-4 grams) needed to accept "
        "the post's most similar sentence (or pair) when it starts at the k-th sentence of sentence_id; "
        "below fuzzy_threshold since id and text agree. 0.25: on the paraphrase set (bench/align.py) "
        "copies absent from their post score <= 0.20 and 0.20-0.25 aligns the same rows",
        0.25,
    )
    fuzzy_threshold: float = doc(
        "similarity needed to accept the post's most similar sentence or pair of adjacent sentences "
        "anywhere in the post. 0.3: mid-plateau on the paraphrase set (0.25-0.35 align the same rows; "
        "below 0.2 copies absent from their post get aligned, above 0.35 reworded copies get lost)",
        0.3,
    )


@dataclass
class FeaturesConfig:
    max_length: int = doc("tokens per window (question + context + special tokens)", 256)
    doc_stride: int = doc("tokens shared by consecutive windows of a long post", 64)
    question_mode: str = doc("span question: criterion | symptom | empty", "criterion")
    no_answer_ratio: float = doc(
        "no-answer (post, symptom) examples kept per answerable one in train (hard negatives, i.e. "
        "symptoms annotated with status 0 in the post, first); -1 keeps all",
        1.0,
    )
    eval_no_answer_ratio: float = doc(
        "the same for val and test; -1 keeps all (the corpus' own, mostly no-answer, distribution)", 1.0
    )
    cross_negative_ratio: int = doc(
        "pair: other symptoms' criteria each evidence sentence of train is also paired with, as "
        "not-evidence examples (symptoms with evidence elsewhere in the post first); 0 = annotated "
        "pairs only, -1 = all nine", 4
    )
    eval_cross_negative_ratio: int = doc(
        "the same for val and test; -1 (all nine) scores every evidence sentence under all ten "
        "criteria, which the rank metrics (own_top1, own_mrr) need", -1
    )


@dataclass
class ModelConfig:
    name: str = doc("Hugging Face model name, local directory, or a built-in model: 'tiny' (small BERT) | "
                   "'tiny-deberta' (small DeBERTa-v3-shaped model), both built offline from the corpus | "
                   "'minilm' (pretrained all-MiniLM-L6-v2, needs the minilm extra)", "tiny")


@dataclass
class PrepConfig:
    task: str = doc("span | span_crf | pair", "span")
    seed: int = doc("global seed", 42)
    out_dir: str = doc("where this command writes its outputs", "runs/data_prep")
    cache_dir: str = doc("feature and tiny-model cache", ".cache/redsm5_sweep")
    data: DataConfig = doc("data source", factory=DataConfig)
    features: FeaturesConfig = doc("tokenization settings", factory=FeaturesConfig)
    model: ModelConfig = doc("encoder (its tokenizer is used for features)", factory=ModelConfig)


def split_ratios(cfg: DictConfig) -> list[float]:
    """The split ratios in force: the configured ones or the task's default."""
    ratios = cfg.data.split_ratios
    return list(ratios) if ratios is not None else list(DEFAULT_SPLITS[cfg.task])


def _one_of(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(key, f"must be one of {', '.join(allowed)}; got {value!r}")


def validate_prep(cfg: DictConfig) -> None:
    """Range and consistency checks that OmegaConf's types cannot express."""
    _one_of("task", cfg.task, TASKS)
    _one_of("data.name", cfg.data.name, DATASETS)
    _one_of("features.question_mode", cfg.features.question_mode, QUESTION_MODES)
    if cfg.data.name == "redsm5" and not cfg.data.dir:
        raise ConfigError("data.dir", "data.name=redsm5 needs data.dir=<folder with the CSVs>")
    if cfg.data.name == "squad_v2":
        if not cfg.data.dir:
            raise ConfigError("data.dir", "data.name=squad_v2 needs data.dir=<folder or JSON file>")
        if cfg.task == "pair":
            raise ConfigError("task", "squad_v2 has no criterion/sentence pairs; use span or span_crf")
    if cfg.data.demo_posts < 10:
        raise ConfigError("data.demo_posts", f"must be at least 10; got {cfg.data.demo_posts}")
    ratios = split_ratios(cfg)
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1) > 1e-6:
        raise ConfigError("data.split_ratios", f"need 3 fractions >= 0 summing to 1; got {ratios}")
    for key in ("sentence_threshold", "fuzzy_threshold"):
        value = getattr(cfg.data, key)
        if not 0 < value <= 1:
            raise ConfigError(f"data.{key}", f"must be in (0, 1]; got {value}")
    f = cfg.features
    if not 32 <= f.max_length <= 8192:
        raise ConfigError("features.max_length", f"must be in [32, 8192]; got {f.max_length}")
    if not 0 <= f.doc_stride < f.max_length:
        raise ConfigError(
            "features.doc_stride",
            f"must be >= 0 and below features.max_length ({f.max_length}); got {f.doc_stride}",
        )
    for key in ("no_answer_ratio", "eval_no_answer_ratio", "cross_negative_ratio", "eval_cross_negative_ratio"):
        value = getattr(f, key)
        if value < 0 and value != -1:
            raise ConfigError(f"features.{key}", f"must be >= 0 or -1 (all); got {value}")
