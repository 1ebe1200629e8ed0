"""The data report: what was read, how it was aligned and split, what was kept and why.

Everything that is not turned into a feature is counted here with its ids, so nothing is
dropped silently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MAX_IDS_SHOWN = 10


@dataclass
class DataReport:
    source: str
    task: str
    counts: dict[str, int] = field(default_factory=dict)
    symptoms: dict[str, dict[str, int]] = field(default_factory=dict)  # symptom -> {status: n}
    alignment: dict[str, int] = field(default_factory=dict)  # rule -> rows
    unaligned: list[str] = field(default_factory=list)
    warnings: dict[str, list[str]] = field(default_factory=dict)
    splits: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> {groups, examples, ...}
    cache: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataReport:
        return cls(**data)

    def format(self) -> str:
        """A human-readable report for the terminal."""
        lines = [f"data report: {self.source} (task {self.task})"]
        lines += [f"  {k}: {v}" for k, v in self.counts.items()]
        if self.symptoms:
            lines.append("  annotations per symptom (status 1 / status 0):")
            for name, c in self.symptoms.items():
                lines.append(f"    {name:<18} {c.get('1', 0):>5} / {c.get('0', 0):<5}")
        if self.alignment:
            lines.append("  alignment: " + ", ".join(f"{r}={n}" for r, n in self.alignment.items()))
        if self.unaligned:
            lines.append(f"  WARNING {len(self.unaligned)} annotation(s) not aligned to their post "
                         f"(left out of span answers): {_ids(self.unaligned)}")
        for kind, items in self.warnings.items():
            lines.append(f"  WARNING {kind}: {len(items)} ({_ids(items)})")
        for split, c in self.splits.items():
            lines.append(f"  {split:<5} " + ", ".join(f"{k}={v}" for k, v in c.items()))
        if self.cache:
            lines.append("  cache: " + ", ".join(f"{k}={v}" for k, v in self.cache.items()))
        return "\n".join(lines)


def _ids(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_IDS_SHOWN])
    return shown + (f", ... ({len(items) - MAX_IDS_SHOWN} more)" if len(items) > MAX_IDS_SHOWN else "")
