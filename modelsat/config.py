"""Base class of every run configuration (STYLE.md §3): pydantic v2, `extra="forbid"`, frozen, YAML-loadable."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from modelsat.errors import ConfigError

__all__ = ["BaseConfig"]


class BaseConfig(BaseModel):
    """Frozen pydantic model that rejects unknown keys; load with `Cls.from_yaml(path)`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Self:
        """Load and validate a YAML file.

        Raises:
            ConfigError: if the file is missing, is not YAML, or does not validate (the message lists
                every offending field with its value).
        """
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {e}") from e
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: Any, source: str = "<dict>") -> Self:
        """Validate a plain mapping (e.g. parsed YAML or a Ray Train `config` dict).

        Raises:
            ConfigError: naming each invalid field, its value and the constraint it breaks.
        """
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            raise ConfigError(f"{source}: invalid {cls.__name__}: {_format_errors(e)}") from e

    def with_overrides(self, overrides: dict[str, Any], source: str = "overrides") -> Self:
        """A copy with dotted keys replaced, validated again (e.g. `{"train.max_steps": 10}`).

        Args:
            overrides: `section.key` (any depth) -> new value; None values are skipped.
            source: named in error messages.
        Raises:
            ConfigError: a key that names no field (listing the allowed ones there), or an invalid value.
        """
        raw = self.model_dump(mode="json")
        for dotted, value in overrides.items():
            if value is None:
                continue
            node = raw
            *path, last = dotted.split(".")
            for i, part in enumerate([*path, last]):
                if not isinstance(node, dict) or part not in node:
                    where = ".".join(path[:i]) or "the top level"
                    allowed = ", ".join(node) if isinstance(node, dict) else "none"
                    raise ConfigError(f"{source}: {dotted!r} names no field; allowed at {where}: {allowed}")
                if i < len(path):
                    node = node[part]
            node[last] = value
        return type(self).from_dict(raw, source=source)

    def to_yaml(self) -> str:
        """The config as YAML (round-trips through `from_yaml`)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _format_errors(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        value = err.get("input")
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        if len(shown) > 80:
            shown = shown[:77] + "..."
        parts.append(f"{loc}={shown}: {err['msg']}")
    return "; ".join(parts)
