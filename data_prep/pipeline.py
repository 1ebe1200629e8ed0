"""Raw files to cached, task-ready features: load, validate, align, split, featurize, cache.

``prepare_features`` is the single way any stage obtains features; the sweep driver calls it
once per feature variant and trials never tokenize.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from data_prep.align import align_annotations, rule_counts, unaligned_ids
from data_prep.cache import cache_key, entry_path, fingerprint_files
from data_prep.config import split_ratios, validate_prep
from data_prep.demo import demo_dir
from data_prep.examples import CrossPair, cross_negatives, keep_no_answer, pair_examples, span_examples
from data_prep.features import featurize_pair, featurize_span, pair_examples_table, span_examples_table
from data_prep.featureset import SPLITS, FeatureSet, is_complete, load_featureset, save_featureset
from data_prep.records import Alignment, Annotation, Corpus, QAExample
from data_prep.redsm5 import load_redsm5
from data_prep.report import DataReport
from data_prep.split import split_groups
from data_prep.squad import load_squad_v2
from data_prep.tokenizer import load_tokenizer, resolve_model, tokenizer_identity


@dataclass
class Source:
    """Examples per split before tokenization, with the facts the report and cache need."""

    examples: dict[str, list]  # split -> QAExample | PairExample
    texts: list[str]  # every context, for training the tiny tokenizer
    files: list[Path]
    report: DataReport
    manifest: dict[str, list[str]]


def prepare_features(cfg: DictConfig, verbose: bool = True) -> FeatureSet:
    """Build (or read from the cache) the features ``cfg`` asks for.

    A cache hit neither aligns nor splits the corpus: the key needs only the raw files' bytes (and a
    built-in model's name, its texts), and alignment is the slow part of a sweep driver's start on a real
    corpus. A miss, or raw files that are not where the config says, loads the source (whose errors name
    the file, row and field)."""
    validate_prep(cfg)
    say = print if verbose else (lambda *a, **k: None)
    files = source_files(cfg)
    if not files or not all(f.is_file() for f in files):
        load_source(cfg)  # raises: the loader's error names what is missing
    model = resolve_model(cfg.model.name, lambda: source_texts(cfg), cfg.cache_dir)
    tokenizer = load_tokenizer(model)
    ident = tokenizer_identity(tokenizer)
    settings = feature_settings(cfg)
    key = cache_key(fingerprint_files(files), cfg.task, ident["fingerprint"], settings)
    path = entry_path(cfg.cache_dir, key)
    if is_complete(path):
        say(f"features: cache hit {path}")
        fs = load_featureset(path)
        fs.meta.update(model=model, cache_path=str(path), cache_hit=True)
        return fs
    say(f"features: building {cfg.task} features with {model} -> {path}")
    source = load_source(cfg)
    fs = featurize_source(source, cfg, tokenizer)
    source.report.cache = {"key": key, "path": str(path)}
    fs.meta.update(key=key, tokenizer=ident, settings=settings, manifest=source.manifest,
                   report=source.report.to_dict(), model=model)
    save_featureset(fs, path)
    fs.meta.update(cache_path=str(path), cache_hit=False)
    return fs


def source_files(cfg: DictConfig) -> list[Path]:
    """The raw files the source is read from (what the cache key fingerprints), found without reading
    them; ones that do not exist are left for ``load_source`` to report."""
    if cfg.data.name == "squad_v2":
        path = Path(cfg.data.dir)
        return sorted(path.glob("*.json")) if path.is_dir() else [path]
    return sorted(_redsm5_dir(cfg).glob("redsm5_*"))


def source_texts(cfg: DictConfig) -> list[str]:
    """Every context of the source (what a built-in model is trained on and named after), without
    aligning or splitting a ReDSM5 corpus."""
    if cfg.data.name == "squad_v2":
        return load_source(cfg).texts
    return _post_texts(load_redsm5(_redsm5_dir(cfg)))


def _post_texts(corpus: Corpus) -> list[str]:
    return list({p.post_id: p.text for p in corpus.posts}.values())


def _redsm5_dir(cfg: DictConfig) -> Path:
    """The ReDSM5-shaped folder: data.dir, or the demo corpus (written on first use)."""
    directory = Path(cfg.data.dir) if cfg.data.dir else None
    if cfg.data.name == "demo":
        directory = demo_dir(directory or Path(cfg.cache_dir), cfg.data.demo_posts, cfg.data.demo_seed)
    return directory


def feature_settings(cfg: DictConfig) -> dict[str, Any]:
    """Everything besides the data and tokenizer that changes the features (the cache key)."""
    return {
        "data": {k: v for k, v in OmegaConf.to_container(cfg.data).items() if k != "dir"},
        "split_ratios": split_ratios(cfg),
        "features": OmegaConf.to_container(cfg.features),
    }


def load_source(cfg: DictConfig) -> Source:
    if cfg.data.name == "squad_v2":
        return _squad_source(cfg)
    return _redsm5_source(cfg, load_redsm5(_redsm5_dir(cfg)))


def _redsm5_source(cfg: DictConfig, corpus: Corpus) -> Source:
    posts = {p.post_id: p.text for p in corpus.posts}
    alignments = align_annotations(posts, corpus.annotations, cfg.data.sentence_threshold,
                                   cfg.data.fuzzy_threshold)
    labels = {pid: set() for pid in posts}
    for a in corpus.annotations:
        if a.status == 1:
            labels[a.post_id].add(a.symptom)
    manifest = split_groups(labels, split_ratios(cfg), cfg.data.split_seed)
    report = _corpus_report(cfg, corpus, alignments)
    if cfg.task == "pair":
        examples = _by_split(pair_examples(corpus.annotations), manifest)
        annotations = _by_split(corpus.annotations, manifest, group=lambda a: a.post_id)
        for split in SPLITS:
            examples[split] += _cross_negatives(annotations[split], split, cfg)
    else:
        examples = _by_split(span_examples(posts, alignments, cfg.features.question_mode), manifest)
        hard = {f"{a.post_id}/{a.symptom}" for a in corpus.annotations if a.status == 0}
        for split in SPLITS:
            examples[split] = _keep_no_answer(examples[split], split, cfg, hard, report)
    return Source(examples, _post_texts(corpus), source_files(cfg), report, manifest)


def _squad_source(cfg: DictConfig) -> Source:
    loaded = load_squad_v2(cfg.data.dir)
    train_pool = loaded["train"]
    ratios = split_ratios(cfg)
    if "dev" in loaded:  # the official dev set is the test split; train/val come from train
        ratios = [ratios[0] / (ratios[0] + ratios[1]), ratios[1] / (ratios[0] + ratios[1]), 0.0]
    manifest = split_groups({e.group: () for e in train_pool}, ratios, cfg.data.split_seed)
    examples = _by_split(train_pool, manifest)
    if "dev" in loaded:
        examples["test"] = loaded["dev"]
        manifest["test"] = sorted({e.group for e in loaded["dev"]})
    path = Path(cfg.data.dir)
    files = source_files(cfg)
    report = DataReport(source=str(path), task=cfg.task,
                        counts={"questions": sum(len(v) for v in loaded.values()),
                                "impossible": sum(not e.answers for v in loaded.values() for e in v)})
    texts = sorted({e.context for v in loaded.values() for e in v})
    return Source(examples, texts, files, report, manifest)


def _by_split(examples: Sequence, manifest: Mapping[str, list[str]], group=lambda e: e.group) -> dict:
    where = {g: split for split, groups in manifest.items() for g in groups}
    out: dict[str, list] = {split: [] for split in SPLITS}
    for e in examples:
        out[where[group(e)]].append(e)
    return out


def _cross_negatives(annotations: list[Annotation], split: str, cfg: DictConfig) -> list[CrossPair]:
    f = cfg.features
    ratio = f.cross_negative_ratio if split == "train" else f.eval_cross_negative_ratio
    return cross_negatives(annotations, ratio, cfg.data.split_seed)


def _keep_no_answer(examples: list[QAExample], split: str, cfg: DictConfig, hard: set[str],
                    report: DataReport) -> list[QAExample]:
    f = cfg.features
    ratio = f.no_answer_ratio if split == "train" else f.eval_no_answer_ratio
    kept = keep_no_answer(examples, ratio, cfg.data.split_seed, prefer=hard)
    if len(kept) < len(examples):
        report.counts[f"{split}_no_answer_left_out"] = len(examples) - len(kept)
    return kept


def _corpus_report(cfg: DictConfig, corpus: Corpus, alignments: list[Alignment]) -> DataReport:
    per_symptom: dict[str, Counter] = {}
    for a in corpus.annotations:
        per_symptom.setdefault(a.symptom, Counter())[str(a.status)] += 1
    return DataReport(
        source=corpus.source,
        task=cfg.task,
        counts={"posts": len(corpus.posts), "annotations": len(corpus.annotations),
                "positive": sum(a.status == 1 for a in corpus.annotations)},
        symptoms={s: dict(c) for s, c in sorted(per_symptom.items())},
        alignment=rule_counts(alignments),
        unaligned=unaligned_ids(alignments),
        warnings={k: list(v) for k, v in corpus.warnings.items()},
    )


def featurize_source(source: Source, cfg: DictConfig, tokenizer: Any) -> FeatureSet:
    f = cfg.features
    features, examples = {}, {}
    for split in SPLITS:
        items = source.examples[split]
        if cfg.task == "pair":
            features[split] = featurize_pair(items, tokenizer, f.max_length)
            examples[split] = pair_examples_table(items)
        else:
            features[split] = featurize_span(items, tokenizer, f.max_length, f.doc_stride,
                                             bio=cfg.task == "span_crf")
            examples[split] = span_examples_table(items)
        source.report.splits[split] = _split_counts(source, split, items, features[split].num_rows)
    return FeatureSet(task=cfg.task, features=features, examples=examples)


def _split_counts(source: Source, split: str, items: list, rows: int) -> dict[str, int]:
    counts = {"groups": len(source.manifest[split]), "examples": len(items), "features": rows}
    if items and isinstance(items[0], QAExample):
        counts["no_answer"] = sum(not e.answers for e in items)
    elif items:
        cross = [e for e in items if isinstance(e, CrossPair)]
        counts["positive"] = sum(e.label == 1 for e in items)
        counts["annotated_negative"] = len(items) - len(cross) - counts["positive"]
        counts["cross_negative"] = len(cross)
        counts["cross_hard"] = sum(e.hard for e in cross)
        counts["cross_other"] = len(cross) - counts["cross_hard"]
    return counts


def write_outputs(fs: FeatureSet, out_dir: str | Path) -> None:
    """The data report and split manifest next to the command's resolved config."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(fs.meta.get("report", {}), indent=1))
    (out / "manifest.json").write_text(json.dumps(fs.meta.get("manifest", {}), indent=1))
