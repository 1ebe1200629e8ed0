"""The search space: YAML specs keyed by dotted config key -> Optuna distributions.

A space is checked as a whole before any trial runs: every value it can propose (each choice,
each end of a range, every combination of the feature settings) must pass the same validation a
single training run does, so a sweep never burns an hour to discover ``doc_stride >= max_length``.
Feature settings are categorical so the driver can prepare each variant once.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
    json_to_distribution,
)

from plumbing.errors import ConfigError, DataError
from trainable.config import validate_train

SPACES_DIR = Path(__file__).parent / "spaces"
SEARCHABLE = ("training.", "features.", "augment.")
RANGE_TYPES = ("loguniform", "uniform", "int")
SpecDict = dict[str, Any]


def builtin_space_path(task: str) -> Path:
    return SPACES_DIR / f"{task}.yaml"


def load_space_file(path: str | Path) -> SpecDict:
    """A space file as written (dotted or nested keys)."""
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise DataError(str(path), f"not valid YAML: {e}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise DataError(str(path), "a search space is a mapping of dotted config keys to specs")
    return loaded


def resolve_space(cfg: DictConfig, keep_removed: bool = False) -> SpecDict:
    """The space in force: the task's file (or sweep.space_file) with sweep.space overrides on top.

    Returns specs keyed by dotted config key; a key overridden with null is not searched (and is
    kept as None with ``keep_removed``, so a saved config removes it again when resumed).
    """
    path = cfg.sweep.space_file or builtin_space_path(cfg.task)
    base = _nest(load_space_file(path))
    overrides = OmegaConf.to_container(cfg.sweep.space, resolve=True) if cfg.sweep.space else {}
    merged = _flatten_specs(_merge(base, _nest(overrides)))
    known = _flatten_specs(base)
    for key, spec in merged.items():
        if spec is None and key not in known:
            raise ConfigError(f"sweep.space.{key}", f"is not in the search space ({', '.join(known)}), so "
                                                    "there is nothing to remove; check the spelling")
    return {k: v for k, v in merged.items() if keep_removed or v is not None}


def nested_space(space: Mapping[str, Any]) -> SpecDict:
    """Specs as a nested mapping (what ``sweep.space`` holds in a saved config)."""
    return _nest(dict(space))


def _nest(flat: Mapping[str, Any]) -> SpecDict:
    out: SpecDict = {}
    for key, value in flat.items():
        parts = str(key).split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"sweep.space.{key}", "conflicts with a parameter of the same prefix")
        leaf = parts[-1]
        if isinstance(value, dict) and "type" not in value:
            value = _nest(value)
            if isinstance(node.get(leaf), dict):
                value = _merge(node[leaf], value)
        node[leaf] = value
    return out


def _merge(base: SpecDict, over: SpecDict) -> SpecDict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _is_spec(value: Any) -> bool:
    return value is None or isinstance(value, list | tuple) or (isinstance(value, dict) and "type" in value)


def _flatten_specs(nested: SpecDict, prefix: str = "") -> SpecDict:
    out: SpecDict = {}
    for k, v in nested.items():
        key = f"{prefix}{k}"
        if _is_spec(v):
            out[key] = v
        elif isinstance(v, dict):
            out.update(_flatten_specs(v, key + "."))
        else:
            raise ConfigError(f"sweep.space.{key}", f"got {v!r}; a parameter is a list of choices or "
                                                    "{type: loguniform|uniform|int, low: L, high: H}")
    return out


def to_distributions(space: Mapping[str, Any], cfg: DictConfig) -> dict[str, BaseDistribution]:
    """Parse and check every spec; keys must be searchable leaves of the config."""
    dists = {}
    for key, spec in space.items():
        _check_key(key, cfg)
        dists[key] = _distribution(key, spec)
    return dists


def _check_key(key: str, cfg: DictConfig) -> None:
    if not key.startswith(SEARCHABLE):
        raise ConfigError(f"sweep.space.{key}", "only training.* and features.* keys (and augment.*) "
                                                "can be searched (one sweep uses one dataset and one model)")
    missing = object()
    value = OmegaConf.select(cfg, key, default=missing)
    if value is missing or isinstance(value, DictConfig):
        raise ConfigError(f"sweep.space.{key}", "is not a config key (see python -m sweep.run --help)")
    if key.startswith("features.") and cfg.task == "pair" and key == "features.doc_stride":
        raise ConfigError(f"sweep.space.{key}", "pair features have no windows, so doc_stride changes "
                                                "nothing; drop it with sweep.space.features.doc_stride=null")


def _distribution(key: str, spec: Any) -> BaseDistribution:
    where = f"sweep.space.{key}"
    if isinstance(spec, list | tuple):
        if not spec or any(not isinstance(c, bool | int | float | str) for c in spec):
            raise ConfigError(where, f"choices must be a non-empty list of numbers or strings; got {spec!r}")
        return CategoricalDistribution(list(spec))
    kind = spec.get("type")
    if kind not in RANGE_TYPES:
        raise ConfigError(where, f"type must be one of {', '.join(RANGE_TYPES)}; got {kind!r}")
    if key.startswith("features."):
        raise ConfigError(where, "feature settings must be a list of choices: each combination is "
                                 "tokenized once before the trials start")
    unknown = set(spec) - {"type", "low", "high", "step", "log"}
    if unknown or "low" not in spec or "high" not in spec:
        raise ConfigError(where, f"a {kind} range needs low and high (and optionally step, log); got {spec}")
    low, high = spec["low"], spec["high"]
    if not isinstance(low, int | float) or not isinstance(high, int | float) or not low < high:
        raise ConfigError(where, f"needs numbers low < high; got low={low!r}, high={high!r}")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(where, f"a log range needs low > 0; got {low}")
    if kind == "int":
        if low != int(low) or high != int(high):
            raise ConfigError(where, f"an int range needs whole low and high; got {low}, {high}")
        return IntDistribution(int(low), int(high), log=bool(spec.get("log", False)),
                               step=int(spec.get("step", 1)))
    return FloatDistribution(float(low), float(high), log=kind == "loguniform", step=spec.get("step"))


def candidates(dist: BaseDistribution) -> list[Any]:
    """The values that bound what a distribution can propose (choices, or both ends)."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    return [dist.low, dist.high]


def apply_params(cfg: DictConfig, params: Mapping[str, Any]) -> DictConfig:
    """A copy of ``cfg`` with each dotted key set to the proposed value (type-checked by the schema)."""
    out = copy.deepcopy(cfg) if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
    for key, value in params.items():
        OmegaConf.update(out, key, value, merge=False)
    return out


def check_space(cfg: DictConfig, dists: Mapping[str, BaseDistribution]) -> None:
    """Every feature combination, and every bound of every other parameter, passes validation."""
    others = {k: d for k, d in dists.items() if not k.startswith("features.")}
    for variant in feature_variants(dists):
        probes = [{}] + [{k: v} for k, d in others.items() for v in candidates(d)]
        for probe in probes:
            params = {**variant, **probe}
            try:
                validate_train(apply_params(cfg, params), check_hardware=False)
            except ConfigError as e:
                shown = ", ".join(f"{k}={v}" for k, v in params.items()) or "the base config"
                raise ConfigError(f"sweep.space.{e.key}", f"the space can propose {shown}, which fails: {e}. "
                                                          "Narrow the space so every value works") from None
    epochs = max_epochs(cfg, dists)
    if cfg.sweep.scheduler == "asha" and cfg.sweep.grace_period > epochs:
        raise ConfigError("sweep.grace_period", f"must not exceed the most epochs a trial runs ({epochs}); "
                                                f"got {cfg.sweep.grace_period}")


def max_epochs(cfg: DictConfig, dists: Mapping[str, BaseDistribution]) -> int:
    """ASHA's max_t: the most epochs any proposed config trains for."""
    d = dists.get("training.epochs")
    return int(max(candidates(d))) if d is not None else int(cfg.training.epochs)


def feature_variants(dists: Mapping[str, BaseDistribution]) -> list[dict[str, Any]]:
    """Every combination of feature settings the space can propose ([{}] when none is searched)."""
    keys = sorted(k for k in dists if k.startswith("features."))
    choices = [candidates(dists[k]) for k in keys]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*choices)]


def combinations(dists: Mapping[str, BaseDistribution]) -> int:
    """How many combinations of choices the categorical parameters make."""
    return math.prod(len(d.choices) for d in dists.values() if isinstance(d, CategoricalDistribution))


def variant_key(params: Mapping[str, Any]) -> str:
    """The name of the feature variant a trial's params select."""
    items = sorted((k, v) for k, v in params.items() if k.startswith("features."))
    return ",".join(f"{k}={v}" for k, v in items) or "base"


def narrow(dists: Mapping[str, BaseDistribution], top: Iterable[Mapping[str, Any]],
           margin: float = 0.25) -> dict[str, BaseDistribution]:
    """Stage 2's space: each range shrunk to the top configs' values plus a margin, choices subset.

    The margin is a fraction of the original range (in log space for log ranges), so a parameter
    on which the top configs agree still gets explored a little around their value.
    """
    top = list(top)
    out: dict[str, BaseDistribution] = {}
    for key, d in dists.items():
        values = [t[key] for t in top if key in t]
        if not values:
            out[key] = d
        elif isinstance(d, CategoricalDistribution):
            out[key] = CategoricalDistribution([c for c in d.choices if c in values])
        else:
            out[key] = _narrow_range(d, min(values), max(values), margin)
    return out


def _narrow_range(d: FloatDistribution | IntDistribution, lo: float, hi: float, margin: float):
    f, inv = (math.log, math.exp) if d.log else (float, float)
    pad = margin * (f(d.high) - f(d.low))
    low, high = max(d.low, inv(f(lo) - pad)), min(d.high, inv(f(hi) + pad))
    if isinstance(d, IntDistribution):
        low, high = int(math.floor(low)), int(math.ceil(high))
        low = d.low + (low - d.low) // d.step * d.step
        high = max(low, min(d.high, d.low + -(-(high - d.low) // d.step) * d.step))
        return IntDistribution(low, high, log=d.log, step=d.step)
    if d.step is not None:  # keep the grid of a stepped float range
        low = d.low + math.floor((low - d.low) / d.step) * d.step
        high = min(d.high, d.low + math.ceil((high - d.low) / d.step) * d.step)
    return FloatDistribution(low, high, log=d.log, step=d.step)


def describe(dists: Mapping[str, BaseDistribution]) -> dict[str, Any]:
    """A readable picture of a space, in the spec language of the space files (summary.json, logs)."""
    out = {}
    for k, d in dists.items():
        if isinstance(d, CategoricalDistribution):
            out[k] = list(d.choices)
        else:
            kind = "int" if isinstance(d, IntDistribution) else ("loguniform" if d.log else "uniform")
            out[k] = {"type": kind, "low": d.low, "high": d.high, "step": d.step}
            if isinstance(d, IntDistribution) and d.log:
                out[k]["log"] = True
    return out


def space_to_json(dists: Mapping[str, BaseDistribution]) -> dict[str, Any]:
    """The space as Optuna writes distributions: ``space_from_json`` gives back equal distributions
    (steps, integer log ranges and all), so a resumed stage searches exactly the space it began with."""
    return {k: json.loads(distribution_to_json(d)) for k, d in dists.items()}


def space_from_json(saved: Mapping[str, Any]) -> dict[str, BaseDistribution]:
    """``space_to_json``'s output back as distributions; a run saved before it (specs) still reads."""
    return {k: json_to_distribution(json.dumps(v)) if isinstance(v, dict) and "name" in v
            else _distribution(k, v) for k, v in saved.items()}
