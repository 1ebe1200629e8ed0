"""``sweep.warm_start=OTHER_RUN_DIR``: a new search begins with the best configs of an earlier sweep.

The earlier sweep's top configs (by best validation metric, its stage 1 and 2) are enqueued in the
new study (``optuna.Study.enqueue_trial``), so its first trials train them again under this sweep's
settings, and TPE learns from them as from any trial. Only what fits the new space is kept: a key
the new space does not search is dropped, a value outside its distribution leaves that key to the
sampler, and a config left with no key is not enqueued. Trials are run, not copied: the earlier
results were measured under another config (data, epochs, model) that need not match this one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution

from plumbing import storage


@dataclass
class WarmStart:
    enqueued: list[dict[str, Any]] = field(default_factory=list)
    dropped: set[str] = field(default_factory=set)  # keys the new space does not search
    outside: set[str] = field(default_factory=set)  # keys whose value lies outside the new space

    def describe(self, source: str, top: int) -> str:
        text = f"sweep: warm start from {source}: {len(self.enqueued)} of its top {top} config(s) enqueued"
        if self.dropped:
            text += f"; dropped (not searched here): {', '.join(sorted(self.dropped))}"
        if self.outside:
            text += f"; outside this space, left to the sampler: {', '.join(sorted(self.outside))}"
        return text


def contains(dist: BaseDistribution, value: Any) -> bool:
    if isinstance(dist, CategoricalDistribution):
        return value in dist.choices
    return isinstance(value, int | float) and not isinstance(value, bool) and dist.low <= value <= dist.high


def fit_to_space(params: Mapping[str, Any], dists: Mapping[str, BaseDistribution], warm: WarmStart) -> dict:
    kept = {}
    for key, value in params.items():
        if key not in dists:
            warm.dropped.add(key)
        elif contains(dists[key], value):
            kept[key] = value
        else:
            warm.outside.add(key)
    return kept


def warm_start(study: optuna.Study, source: str, dists: Mapping[str, BaseDistribution], top: int) -> WarmStart:
    """Enqueue the ``top`` best configs of the sweep in ``source`` (a run dir or URI) into ``study``."""
    from sweep.summary import search_trials, sweep_config

    source = storage.absolute(source)
    records = [r for r in search_trials(source, sweep_config(source)) if r.best_metric is not None]
    best = sorted(records, key=lambda r: -r.best_metric)[:top]
    warm = WarmStart()
    for record in best:
        params = fit_to_space(record.params, dists, warm)
        if params and params not in warm.enqueued:
            study.enqueue_trial(params)
            warm.enqueued.append(params)
    return warm
