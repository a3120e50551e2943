"""One entry of the model registry: the model card, the stored form, and reading it back with checks.

`modelsat.registry` stores versions of these entries and re-exports `ModelCard`, `RegistryEntry` and
`aptitude_fingerprint`; this module knows what one version file holds and when it is unusable:

- `decode_entry`: the file's bytes are UTF-8 JSON of an object;
- `RegistryEntry.from_dict`: every field is there and valid (format, version, card, capability profile,
  aptitude results naming their test);
- `stored_entry`: the entry names the model and version it is stored as;
- `split_by_test`: its capability profile was measured on the router's aptitude test;
- `check_new_entry`: what `ModelRegistry.put` is given is consistent.

An unusable entry is a `_BadEntry` (a `RegistryError` naming the file and why); `warn_once` logs a skipped one
once per process, on the `modelsat.registry` logger.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from modelsat.aptitude import AptitudeTest, CapabilityProfile
from modelsat.config import BaseConfig
from modelsat.errors import ModelSATError, RegistryError

__all__ = [
    "FORMAT",
    "ModelCard",
    "RegistryEntry",
    "aptitude_fingerprint",
    "check_new_entry",
    "decode_entry",
    "no_usable_entry_message",
    "split_by_test",
    "stored_entry",
    "warn_once",
]

FORMAT = 1
_ENTRY_FIELDS = ("format", "name", "version", "created_at", "card", "profile", "aptitude")
_REQUIRED_FIELDS = ("name", "version", "card", "profile", "aptitude")

log = logging.getLogger("modelsat.registry")
_WARNED: set[tuple[str, str]] = set()
_WARNED_LOCK = threading.Lock()


def warn_once(path: str, why: str) -> None:
    """Log a skipped registry entry once per (path, reason) in this process (a router re-reads every 30 s)."""
    with _WARNED_LOCK:
        if (path, why) in _WARNED:
            return
        _WARNED.add((path, why))
    log.warning("skipping registry entry %s: %s", path, why)


class _BadEntry(RegistryError):
    """One registry entry is unusable (the rest of the registry is fine). Attributes: name, path, why."""

    def __init__(self, name: str, path: str, why: str) -> None:
        self.name, self.path, self.why = name, path, why
        super().__init__(
            f"registry entry {path} is unusable: {why}; register the model again with "
            f"`modelsat registry add {name} --replace ...`, or unregister it with `modelsat registry remove {name}`"
        )


def aptitude_fingerprint(test: AptitudeTest) -> str:
    """16-hex-digit hash of an aptitude test's tasks and items: profiles are comparable iff it matches."""
    h = hashlib.sha256()
    for t in test.tasks:
        h.update(t.name.encode() + b"\0" + "\0".join(t.question_ids).encode() + b"\n")
    return h.hexdigest()[:16]


class ModelCard(BaseConfig):
    """How to reach a candidate model and what it costs (deployment settings live in the serving config)."""

    name: str = Field(
        min_length=1,
        max_length=200,
        description="Candidate model name: the OpenAI `model` it is served under and the routing key",
    )
    serve_application: str | None = Field(
        None, description="Ray Serve application that serves the model (our serving graph)"
    )
    base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint, e.g. http://host:8000/v1 (a model served elsewhere)"
    )
    served_model_name: str | None = Field(
        None, description="Model name at the endpoint when it differs from `name`"
    )
    usd_per_mtok: float | None = Field(
        None, ge=0.0, description="Price in USD per 1M tokens (prompt and completion); None = unknown"
    )
    context_length_tokens: int | None = Field(
        None, ge=1, description="Longest prompt + completion the model accepts, in tokens; None = unknown"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if v in {".", ".."} or v != v.strip() or any(ord(c) < 32 for c in v):
            raise ValueError(
                "a model name must be non-blank text without control characters or surrounding spaces, "
                "and not '.' or '..'"
            )
        return v

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("base_url must start with http:// or https:// followed by a host")
        return v


@dataclass(frozen=True)
class RegistryEntry:
    """One version of a registered candidate model.

    Attributes:
        card: the model card.
        profile: capability profile, [T'] accuracies in [0, 1] on the test identified by `aptitude_test`.
        aptitude: the aptitude results it came from: `test` (fingerprint), `engine` (settings, no secrets),
            `n_items`, `n_unparsed` (responses without an extractable answer), `seconds`, and `items`
            (question id -> {"score": 0..1, "answer": extracted answer or null}).
        version: 1, 2, ... per name.
        created_at: ISO-8601 UTC time of the write.
    """

    card: ModelCard
    profile: CapabilityProfile
    aptitude: dict[str, Any] = field(default_factory=dict)
    version: int = 0
    created_at: str = ""

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def aptitude_test(self) -> str:
        return str(self.aptitude.get("test", ""))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "name": self.card.name,
            "version": self.version,
            "created_at": self.created_at,
            "card": self.card.model_dump(mode="json"),
            "profile": self.profile.to_dict(),
            "aptitude": self.aptitude,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RegistryEntry:
        """Parse a stored entry (the JSON of one version file).

        Raises:
            ValueError: naming the missing or invalid field and what is allowed (`ConfigError` for the card).
        """
        if not isinstance(d, dict):
            raise ValueError(f"the entry is a JSON {type(d).__name__}, not an object")
        missing = [k for k in _REQUIRED_FIELDS if k not in d]
        if missing:
            raise ValueError(
                f"missing field {', '.join(map(repr, missing))} (an entry has {', '.join(_ENTRY_FIELDS)}; "
                f"found: {', '.join(map(str, d)) or 'none'})"
            )
        if d.get("format", FORMAT) != FORMAT:
            raise ValueError(f"format {d.get('format')!r}; this version of modelsat reads format {FORMAT}")
        if not isinstance(d["version"], int) or isinstance(d["version"], bool) or d["version"] < 1:
            raise ValueError(f"'version' is {d['version']!r}; allowed: an integer >= 1")
        card = ModelCard.from_dict(d["card"], source="'card'")
        profile = _profile_from(d["profile"], card.name)
        aptitude = d["aptitude"]
        if not isinstance(aptitude, dict) or not isinstance(aptitude.get("test"), str):
            raise ValueError(
                f"'aptitude' must be an object naming its aptitude test ('test': fingerprint), got {aptitude!r:.80}"
            )
        return cls(
            card=card,
            profile=profile,
            aptitude=aptitude,
            version=d["version"],
            created_at=str(d.get("created_at", "")),
        )


def _profile_from(d: Any, name: str) -> CapabilityProfile:
    """A stored capability profile, checked: [T'] accuracies in [0, 1] and [T'] item counts, of model `name`.

    Raises:
        ValueError: naming the bad value and what is allowed.
    """
    if not isinstance(d, dict):
        raise ValueError(f"'profile' is a JSON {type(d).__name__}, not an object")
    try:
        profile = CapabilityProfile.from_dict(d)
    except KeyError as e:
        raise ValueError(f"'profile' lacks {e} (a profile has model, accuracies, n_items, source)") from e
    except (TypeError, ValueError) as e:
        raise ValueError(f"'profile' has non-numeric accuracies or n_items ({e})") from e
    acc = profile.accuracies
    if acc.ndim != 1 or acc.size == 0 or profile.n_items.shape != acc.shape:
        raise ValueError(
            f"'profile' has accuracies of shape {list(acc.shape)} and n_items of shape "
            f"{list(profile.n_items.shape)}; allowed: two lists of the same length >= 1"
        )
    if not np.all(np.isfinite(acc)) or acc.min() < 0.0 or acc.max() > 1.0:
        raise ValueError(f"'profile' accuracies {acc.tolist()} are not all in [0, 1]")
    if profile.model != name:
        raise ValueError(f"'profile' is of model {profile.model!r} but the card names {name!r}")
    return profile


def decode_entry(name: str, path: str, data: bytes) -> dict[str, Any]:
    """The JSON object of one version file of model `name`, stored at `path` (as the user wrote it).

    Raises:
        _BadEntry (a RegistryError): `data` is not UTF-8 JSON, or not an object.
    """
    try:
        raw = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise _BadEntry(name, path, f"it is not UTF-8 text ({e})") from e
    except json.JSONDecodeError as e:
        raise _BadEntry(name, path, f"it is not valid JSON ({e}; truncated?)") from e
    if not isinstance(raw, dict):
        raise _BadEntry(name, path, f"it is a JSON {type(raw).__name__}, not an object")
    return raw


def stored_entry(name: str, version: int, path: str, raw: dict[str, Any]) -> RegistryEntry:
    """A version file's object as an entry of `name`, checked against where it is stored.

    Args:
        name, version: where the file is stored; path: the file, as the user wrote the registry.
        raw: the file's JSON object (`decode_entry`).
    Raises:
        _BadEntry (a RegistryError): a missing or invalid field, or an entry of another name or version.
    """
    try:
        entry = RegistryEntry.from_dict(raw)
    except (ValueError, ModelSATError) as e:
        raise _BadEntry(name, path, str(e)) from e
    if entry.name != name:
        raise _BadEntry(name, path, f"it names model {entry.name!r} but is stored under {name!r}")
    if entry.version != version:
        raise _BadEntry(name, path, f"it says version {entry.version} but is stored as version {version}")
    return entry


def split_by_test(
    entries: list[RegistryEntry], test: AptitudeTest, path_of: Callable[[RegistryEntry], str]
) -> tuple[list[RegistryEntry], list[str], list[_BadEntry]]:
    """Sort entries by whether their capability profile was measured on the router's aptitude test.

    Entries measured on another test are logged once each (`warn_once`, with `path_of(entry)` and why).

    Args:
        entries: usable entries (`stored_entry`), in the order to keep.
        test: the router checkpoint's aptitude test.
        path_of: an entry's file, as the user wrote the registry.
    Returns:
        (entries measured on `test`, names of those measured on another test, those measured on a test of
        `test`'s fingerprint whose profile has another number of accuracies than `test` has tasks).
    """
    fp = aptitude_fingerprint(test)
    usable, foreign, bad = [], [], []
    for e in entries:
        path = path_of(e)
        if e.aptitude_test != fp:
            foreign.append(e.name)
            warn_once(
                path,
                f"its profile was measured on aptitude test {e.aptitude_test!r}, not this router's ({fp}); "
                f"re-run `modelsat registry add {e.name} --replace` with this router",
            )
        elif len(e.profile.accuracies) != len(test.tasks):
            bad.append(
                _BadEntry(
                    e.name,
                    path,
                    f"its profile has {len(e.profile.accuracies)} accuracies, the aptitude test "
                    f"{fp} has {len(test.tasks)} tasks",
                )
            )
        else:
            usable.append(e)
    return usable, foreign, bad


def no_usable_entry_message(uri: str, fp: str, foreign: list[str], bad: list[_BadEntry]) -> str:
    """Why registry `uri` has no model a router of aptitude test `fp` can route to (names models and files)."""
    parts = []
    if foreign:
        parts.append(
            f"the profiles of {', '.join(foreign)} were measured on another aptitude test than this "
            f"router's (test {fp}); re-run `modelsat registry add NAME --replace` with this router"
        )
    if bad:
        parts.append(
            f"{len(bad)} entr{'y is' if len(bad) == 1 else 'ies are'} unusable: "
            + "; ".join(f"{b.path} ({b.why})" for b in bad[:3])
            + ("; ..." if len(bad) > 3 else "")
        )
    return f"registry {uri!r} has no model this router can route to: {'; and '.join(parts)}"


def check_new_entry(card: ModelCard, profile: CapabilityProfile, aptitude: dict[str, Any]) -> None:
    """Check what `ModelRegistry.put` is given: one model, a named aptitude test, a valid profile.

    Raises:
        RegistryError: the profile is of another model, the aptitude results lack the test fingerprint
            (`test`), or the profile is invalid (accuracies outside [0, 1], lengths that differ).
    """
    if profile.model != card.name:
        raise RegistryError(f"profile is of {profile.model!r} but the card names {card.name!r}")
    if "test" not in aptitude:
        raise RegistryError("aptitude results must name the aptitude test they were measured on ('test')")
    try:
        _profile_from(profile.to_dict(), card.name)
    except ValueError as e:
        raise RegistryError(f"the capability profile of {card.name!r} is invalid: {e}") from e
