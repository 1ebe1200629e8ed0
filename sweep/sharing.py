"""Features prepared once per variant by the sweep's driver and shared with every trial through
Ray's object store (trials get ObjectRefs and read the tables zero-copy; none tokenizes)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from plumbing.errors import ConfigError
from sweep.output import quiet_bars
from sweep.space import apply_params, variant_key


@dataclass
class Shared:
    """ObjectRefs of the feature variants (keyed by ``variant_key``), with what preparing them cost."""

    refs: dict[str, Any]
    prepare_s: float = 0.0
    put_s: float = 0.0
    sizes: dict[str, int] = field(default_factory=dict)


def share_features(cfg: DictConfig, variants: list[dict[str, Any]]) -> Shared:
    """Prepare each feature variant once (through data_prep's cache) and put it in the object store."""
    import ray

    from data_prep.pipeline import prepare_features

    shared = Shared(refs={})
    for variant in variants:
        started = time.perf_counter()
        try:
            with quiet_bars(cfg.sweep.verbose):
                featureset = prepare_features(apply_params(cfg, variant), verbose=False)
        except ConfigError as e:
            if not e.key.startswith("features.") or not variant:
                raise
            shown = ", ".join(f"{k}={v}" for k, v in variant.items())
            raise ConfigError(f"sweep.space.{e.key}", f"the space can propose {shown}, which fails: {e}. "
                                                      "Narrow the space so every value works") from None
        shared.prepare_s += time.perf_counter() - started
        started = time.perf_counter()
        name = variant_key(variant)
        shared.refs[name] = ray.put(featureset)
        shared.put_s += time.perf_counter() - started
        shared.sizes[name] = sum(t.nbytes for t in featureset.features.values())
    return shared

