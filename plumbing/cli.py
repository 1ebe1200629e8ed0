"""The one way every entry point reads its config and reports user errors.

``key=value`` dotted overrides (and ``--key value`` spellings) are merged into a structured
config; ``--help`` lists every key with its default and help; a ``UserError`` becomes a
one-paragraph message on stderr and exit status 2.

A value given for a ``str`` field is the text as typed: ``training.amp=off`` is ``'off'`` (YAML
would read ``False``), ``tracking.experiment=007`` is ``'007'``. ``null`` (or YAML's other
spellings of it: ``~``, ``Null``, ``NULL``, an empty value) is None for an optional string and an
error naming the key for a plain one. Every other value is read as YAML by OmegaConf, so booleans
take ``true/false/yes/no/on/off``, numbers stay numbers and ``[64,128]`` is a list.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from plumbing import storage
from plumbing.errors import ConfigError, UserError

CONFIG_FILE = "config.yaml"
NULLS = ("", "null", "Null", "NULL", "~")  # what YAML reads as null


def _help_lines(node: Any, prefix: str = "") -> list[str]:
    """One line per key with the default in force (a subclass may change a section's defaults)."""
    node = node() if isinstance(node, type) else node
    lines = []
    for f in dataclasses.fields(node):
        key, value = prefix + f.name, getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            lines.append(f"  {key}.*  ({f.metadata.get('help', '')})")
            lines += _help_lines(value, key + ".")
        else:
            lines.append(f"  {key}={value}\n      {f.metadata.get('help', '')}")
    return lines


def help_text(schema: type, prog: str, description: str, positional: str | None = None) -> str:
    usage = f"usage: python -m {prog} [--help] [key=value ...]"
    if positional:
        usage = f"usage: python -m {prog} [--help] {positional.upper()} [key=value ...]"
    return "\n".join([usage, "", description.strip(), "", "config keys (dotted overrides):"]
                     + _help_lines(schema))


def _normalise(argv: Sequence[str], positional: str | None) -> list[str]:
    """Turn ``--key value`` / ``--key=value`` / a leading positional into dotted overrides."""
    out, args, i = [], list(argv), 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            key = arg[2:].replace("-", "_")
            if "=" in key:
                out.append(key)
            elif i + 1 < len(args):
                out.append(f"{key}={args[i + 1]}")
                i += 1
            else:
                raise UserError(f"option {arg} needs a value (or write {key}=VALUE)")
        elif "=" in arg:
            out.append(arg)
        elif positional and not any(o.startswith(positional + "=") for o in out):
            out.append(f"{positional}={arg}")
        else:
            raise UserError(f"unexpected argument {arg!r}: overrides are written key=value")
        i += 1
    return out


def _field_type(schema: type, key: str) -> Any:
    """The declared type of a dotted key; None past the dataclasses (e.g. inside ``sweep.space``)."""
    node: Any = schema
    for part in key.split("."):
        if not (isinstance(node, type) and dataclasses.is_dataclass(node)):
            return None
        node = typing.get_type_hints(node).get(part)
    return node


def _overlay(schema: type, overrides: Sequence[str]) -> DictConfig:
    """The overrides as a config: strings for ``str`` fields exactly as typed, YAML otherwise."""
    overlay = OmegaConf.create()
    for item in overrides:
        key, text = item.split("=", 1)
        declared = _field_type(schema, key)
        if declared is str and text in NULLS:
            raise ConfigError(key, f"needs a value, not {text!r} (see the default under --help)")
        if declared is str or set(typing.get_args(declared)) == {str, type(None)}:
            OmegaConf.update(overlay, key, None if text in NULLS else text)
        else:
            overlay.merge_with_dotlist([item])
    return overlay


def typed(schema: type, *parts: Any) -> DictConfig:
    """``schema``'s defaults with ``parts`` (dicts, configs, YAML-loaded) merged over them, type-checked:
    how a config that travelled as plain data (to a trial, in a checkpoint, in a run dir) becomes one again."""
    return OmegaConf.merge(OmegaConf.structured(schema), *parts)


def parse_config(
    schema: type,
    argv: Sequence[str],
    prog: str,
    description: str,
    positional: str | None = None,
) -> DictConfig:
    """Merge ``argv`` overrides into ``schema``'s defaults; exits 0 after printing ``--help``."""
    if any(a in ("-h", "--help") for a in argv):
        print(help_text(schema, prog, description, positional))
        raise SystemExit(0)
    overrides = _normalise(argv, positional)
    base = OmegaConf.structured(schema)
    try:
        return OmegaConf.merge(base, _overlay(schema, overrides))
    except ConfigKeyError as e:
        raise ConfigError(e.full_key or "?", f"unknown key (see python -m {prog} --help)") from None
    except ValidationError as e:
        raise ConfigError(e.full_key or "?", str(e).splitlines()[0]) from None
    except OmegaConfBaseException as e:
        raise UserError(f"bad override: {str(e).splitlines()[0]}") from None


def save_config(cfg: DictConfig, out_dir: str | Path) -> str:
    """Write the resolved config next to the outputs it produced (a directory or a URI); its path."""
    path = storage.join(str(out_dir), CONFIG_FILE)
    storage.write_text(path, OmegaConf.to_yaml(cfg, resolve=True))
    return path


def run_cli(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None) -> None:
    """Run ``main``; a UserError ends with its message on stderr and exit status 2. Progress bars are
    for a terminal: piped to a file, a command leaves out Hugging Face's (loading weights, downloads)."""
    if not sys.stderr.isatty():
        quiet_hf_bars()
    try:
        main(list(sys.argv[1:] if argv is None else argv))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None


def quiet_hf_bars() -> None:
    """Hugging Face's progress bars off: through the environment for a later import, through their own
    switches where transformers / huggingface_hub are imported already (a command module's imports)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def required(cfg: DictConfig, key: str, example: str) -> str:
    """A mandatory string key of a command's config, or a UserError showing how to pass it."""
    if OmegaConf.is_missing(cfg, key) or not str(cfg[key]).strip():
        raise ConfigError(key, f"required; e.g. {example}")
    return str(cfg[key])


def absolute(path: str) -> str:
    """A path from the command line, absolute against the command's working directory: the configs
    it is saved in are read later from other directories."""
    return str(Path(path).expanduser().resolve())

