"""What every aptitude engine is: one class carrying its config, its pre-flight check and its Ray options.

An engine answers aptitude items for one candidate model (`AptitudeEngine.respond`). Its pydantic config
(`AptitudeEngine.config_class`, with a `kind` literal) is what `AptitudeJobConfig.engine` holds and what
`modelsat registry add --engine KIND` builds from command-line flags: one flag per config field, named after
it (`max_concurrency` → `--max-concurrency`) unless `cli_flags` renames it. A new engine is one module in
`jobs/engines/` with a subclass of `AptitudeEngine` and one line in `jobs.engines.ENGINES`.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, ClassVar

from modelsat.config import BaseConfig
from modelsat.errors import ConfigError
from modelsat.grading import AptitudeItem

__all__ = ["AptitudeEngine", "Response"]


@dataclass(frozen=True)
class Response:
    """An engine's answer to one item: generated `text`, and `score` in [0, 1] when the engine knows it."""

    text: str
    score: float | None = None


class AptitudeEngine:
    """Answers aptitude items for one candidate model (built inside a Ray Data worker).

    Subclasses set `config_class` and implement `__init__(config, candidate)` and `respond`; the class
    methods have defaults that suit an engine without resources of its own.

    Class attributes:
        config_class: the pydantic config (a `BaseConfig` with `kind: Literal["<kind>"]`).
        generates: True when the engine generates text that `modelsat.grading` grades (every item must then
            be gradable); False when it returns scores itself (recorded outcomes).
        cli_flags: config field → command-line flag, where the flag is not the field's name in kebab case.
    """

    config_class: ClassVar[type[BaseConfig]]
    generates: ClassVar[bool] = True
    cli_flags: ClassVar[dict[str, str]] = {}

    def __init__(self, config: Any, candidate: str) -> None:
        raise NotImplementedError

    def respond(self, items: list[AptitudeItem], prompts: list[str]) -> list[Response]:
        """One `Response` per item, in order. `prompts` are the formatted user messages.

        Raises:
            EngineError: the engine failed (the job stops and nothing is registered).
        """
        raise NotImplementedError

    @classmethod
    def preflight(cls, config: Any, candidates: list[str]) -> None:
        """Cheap checks on the driver before any worker starts, so bad input fails in seconds.

        Raises:
            ModelSATError: the engine cannot answer for these candidates (the message says why).
        """

    @classmethod
    def check_candidates(cls, config: Any, candidates: list[str]) -> None:
        """Whether one config can serve these candidate names (e.g. one model path serves one model).

        Raises:
            ConfigError: it cannot (the message names the option and the names).
        """

    @classmethod
    def ray_options(cls, config: Any) -> dict[str, Any]:
        """Ray options of each Ray Data worker beyond its CPUs (`num_gpus`, `runtime_env`)."""
        return {}

    @classmethod
    def card_fields(cls, config: Any) -> dict[str, Any]:
        """Model-card fields this engine knows (an endpoint's `base_url`), for `modelsat registry add`."""
        return {}

    @classmethod
    def flags(cls) -> dict[str, str]:
        """Command-line flag → config field, for every field but `kind` (README: "Add a model")."""
        out: dict[str, str] = {}
        for name in cls.config_class.model_fields:
            if name != "kind":
                out[cls.cli_flags.get(name, "--" + name.replace("_", "-"))] = name
        return out

    @classmethod
    def config_from_flags(cls, kind: str, given: dict[str, list[str]]) -> BaseConfig:
        """The engine config from command-line flags, each with its values (`{"--base-url": ["http://…"]}`).

        A dict field takes repeated `KEY=VALUE` values, each VALUE read as YAML (`--engine-arg
        max_model_len=2048`); any other field takes one value, validated by the config (pydantic coerces
        strings where it can, e.g. `"8"` → 8).

        Raises:
            ConfigError: a flag that does not apply to this engine (lists those that do), a missing required
                flag, a plain flag given twice, a malformed `KEY=VALUE`, or an invalid value.
        """
        import yaml

        flags = cls.flags()
        stray = [f for f in given if f not in flags]
        if stray:
            raise ConfigError(
                f"{', '.join(stray)} do not apply to --engine {kind}; its options: {', '.join(flags) or 'none'}"
            )
        fields = cls.config_class.model_fields
        missing = [f for f, n in flags.items() if fields[n].is_required() and f not in given]
        if missing:
            hint = "; ".join(f"{f}: {fields[flags[f]].description}" for f in missing)
            raise ConfigError(f"--engine {kind} needs {', '.join(missing)} ({hint})")
        options: dict[str, Any] = {}
        for flag, values in given.items():
            name = flags[flag]
            if typing.get_origin(fields[name].annotation) is dict:
                pairs = [v.partition("=") for v in values]
                bad = [k + eq + v for k, eq, v in pairs if not eq or not k.strip()]
                if bad:
                    raise ConfigError(f"{flag} {bad[0]!r}: expected KEY=VALUE (e.g. max_model_len=2048)")
                options[name] = {k.strip(): yaml.safe_load(v) for k, _, v in pairs}
            elif len(values) > 1:
                raise ConfigError(f"{flag} is given {len(values)} times; give it once")
            else:
                options[name] = values[0]
        return cls.config_class.from_dict({"kind": kind, **options}, source=f"--engine {kind}")
