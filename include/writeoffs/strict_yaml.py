"""Configuration files: which one to read, reading it, and YAML strictly (a key repeated in one mapping is an error
naming its line).

PyYAML's ``safe_load`` silently keeps the last of two equal keys, so a source mapped twice loses its first
half and fails later with a misleading "required field not provided". Every configuration file goes through
:func:`load` instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from writeoffs.errors import ConfigError


class _StrictLoader(yaml.SafeLoader):
    pass


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            continue  # PyYAML reports unhashable keys itself
        line = key_node.start_mark.line + 1
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {str(key)[:80]!r} (first on line {seen[key]})", key_node.start_mark
            )
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load(raw: bytes | str, origin: str) -> Any:
    """Parse ``raw`` (the content of ``origin``); any YAML problem is one ConfigError line naming file and line."""
    try:
        return yaml.load(raw, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}" if mark is not None else "?"
        raise ConfigError(f"{origin}: {where}: not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML: {str(exc).splitlines()[0][:200]}") from None


def config_file(path: str | os.PathLike[str] | None, env: str, default: Path) -> Path:
    """The configuration file to read: the argument, else the environment variable ``env`` (when set and not
    empty), else the committed ``default``. The one rule every configuration loader follows."""
    return Path(path or os.environ.get(env) or default)


def read_config(path: Path, what: str) -> bytes:
    """The bytes of the configuration file ``path``, or a :class:`ConfigError` naming ``what`` and the file."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read: {exc.strerror or exc}") from None
