"""The model registry: what the router knows about each candidate model (STYLE.md §3).

One entry per candidate model: its **card** (name; how to reach it: a Ray Serve application name or an
OpenAI-compatible URL; price in USD per 1M tokens; context length) and its **capability profile** with the
aptitude results it came from. Deployment settings (engines, resources, autoscaling) stay in the serving config.

Storage: a directory on a local path or any pyarrow filesystem URI (`s3://bucket/registry`,
`gs://...`, `file:///...`):

    <root>/models/<quoted name>/v000001.json
    <root>/models/<quoted name>/v000002.json   # the latest version is the entry; older ones are history

Every write creates a new immutable version file and never touches an existing one, so a reader sees either
the old or the new version, never a half-written one. On a local filesystem a version is written to a
temporary file and published with a hard link, which fails if another writer published the same version
first (the loser gets a `RegistryError`, nothing is overwritten). On object stores a version is one object
PUT, which is atomic for readers; concurrent writers of the same name are not detected there. Removing a
model writes a tombstone version, so the history stays readable.

Reading is per entry: an entry that cannot be used (truncated or non-UTF-8 JSON, JSON that is not an object, a
missing or invalid field, another format, a profile measured on another aptitude test) is skipped by `entries()`
and `entries_for()` / `profiles_for()` and logged once per entry (its path and why), so one bad file never hides
the other models; `get(name)` of that model raises a `RegistryError` naming the file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
from pydantic import Field, field_validator

from modelsat.aptitude import AptitudeTest, CapabilityProfile
from modelsat.config import BaseConfig
from modelsat.errors import ModelSATError, RegistryError, UnknownModelError

__all__ = [
    "REGISTRY_ENV",
    "ModelCard",
    "ModelRegistry",
    "RegistryEntry",
    "aptitude_fingerprint",
    "default_registry_uri",
]

REGISTRY_ENV = "MODELSAT_REGISTRY"
FORMAT = 1
_VERSION_FILE = re.compile(r"^v(\d{6})\.json$")
_ENTRY_FIELDS = ("format", "name", "version", "created_at", "card", "profile", "aptitude")
_REQUIRED_FIELDS = ("name", "version", "card", "profile", "aptitude")

log = logging.getLogger("modelsat.registry")
_WARNED: set[tuple[str, str]] = set()
_WARNED_LOCK = threading.Lock()


def _warn_once(path: str, why: str) -> None:
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


class ModelRegistry:
    """A durable, versioned store of model cards and capability profiles.

    Args:
        uri: local directory (created on first write) or a pyarrow filesystem URI.
    Raises:
        RegistryError: the URI names a filesystem pyarrow cannot open.
    """

    def __init__(self, uri: str | Path) -> None:
        from pyarrow import fs as pafs

        self.uri = str(uri)
        try:
            if "://" in self.uri:
                self._fs, root = pafs.FileSystem.from_uri(self.uri)
            else:
                self._fs, root = pafs.LocalFileSystem(), str(Path(self.uri).expanduser().resolve())
        except (ValueError, OSError) as e:  # pyarrow.ArrowInvalid is a ValueError
            raise RegistryError(f"registry URI {self.uri!r} cannot be opened: {e}") from e
        self._root = root.rstrip("/")
        self._local = isinstance(self._fs, pafs.LocalFileSystem)

    # ------------------------------------------------------------------------------------------ paths
    def _model_dir(self, name: str) -> str:
        return f"{self._root}/models/{quote(name, safe='')}"

    def _versions(self, name: str) -> list[int]:
        from pyarrow import fs as pafs

        try:
            infos = self._fs.get_file_info(pafs.FileSelector(self._model_dir(name), allow_not_found=True))
        except OSError as e:
            raise RegistryError(f"registry {self.uri!r} cannot be read: {e}") from e
        out = []
        for info in infos:
            m = _VERSION_FILE.match(info.base_name)
            if m and info.type == pafs.FileType.File:
                out.append(int(m.group(1)))
        return sorted(out)

    def _path(self, name: str, version: int) -> str:
        return f"{self._model_dir(name)}/v{version:06d}.json"

    def _display(self, path: str) -> str:
        """A filesystem path of this registry as the user wrote the registry (`s3://...` stays a URI)."""
        return f"{self.uri.split('://', 1)[0]}://{path}" if "://" in self.uri else path

    def _read(self, name: str, version: int) -> dict[str, Any]:
        """The JSON object of one version file.

        Raises:
            _BadEntry (a RegistryError): the file cannot be read, is not UTF-8 JSON, or is not an object.
        """
        path = self._path(name, version)
        try:
            with self._fs.open_input_stream(path) as f:
                raw = json.loads(f.read().decode("utf-8"))
        except OSError as e:
            raise _BadEntry(name, self._display(path), f"it cannot be read ({e})") from e
        except UnicodeDecodeError as e:
            raise _BadEntry(name, self._display(path), f"it is not UTF-8 text ({e})") from e
        except json.JSONDecodeError as e:
            raise _BadEntry(name, self._display(path), f"it is not valid JSON ({e}; truncated?)") from e
        if not isinstance(raw, dict):
            raise _BadEntry(name, self._display(path), f"it is a JSON {type(raw).__name__}, not an object")
        return raw

    def _parse(self, name: str, version: int, raw: dict[str, Any]) -> RegistryEntry:
        """A version file's object as an entry of `name`, checked against where it is stored.

        Raises:
            _BadEntry (a RegistryError): a missing or invalid field, or an entry of another name or version.
        """
        path = self._display(self._path(name, version))
        try:
            entry = RegistryEntry.from_dict(raw)
        except (ValueError, ModelSATError) as e:
            raise _BadEntry(name, path, str(e)) from e
        if entry.name != name:
            raise _BadEntry(name, path, f"it names model {entry.name!r} but is stored under {name!r}")
        if entry.version != version:
            raise _BadEntry(name, path, f"it says version {entry.version} but is stored as version {version}")
        return entry

    def _latest_state(self, name: str) -> tuple[int, dict[str, Any] | None, _BadEntry | None] | None:
        """(latest version, its object or None, the reason it is unusable or None); None if never written.

        Raises:
            RegistryError: the model's directory cannot be listed (the registry is unreachable).
        """
        versions = self._versions(name)
        if not versions:
            return None
        try:
            return versions[-1], self._read(name, versions[-1]), None
        except _BadEntry as e:
            return versions[-1], None, e

    def _scan(self) -> tuple[list[RegistryEntry], list[_BadEntry]]:
        """Every registered model's latest entry, and the unusable entries (skipped), both by name.

        Raises:
            RegistryError: the registry cannot be listed.
        """
        entries: list[RegistryEntry] = []
        bad: list[_BadEntry] = []
        for name in self._dir_names():
            state = self._latest_state(name)
            if state is None:
                continue
            version, raw, err = state
            if raw is None:
                bad.append(err)
            elif not raw.get("removed"):
                try:
                    entries.append(self._parse(name, version, raw))
                except _BadEntry as e:
                    bad.append(e)
        return entries, bad

    # ------------------------------------------------------------------------------------------ reading
    def _dir_names(self) -> list[str]:
        from pyarrow import fs as pafs

        try:
            infos = self._fs.get_file_info(pafs.FileSelector(f"{self._root}/models", allow_not_found=True))
        except OSError as e:
            raise RegistryError(f"registry {self.uri!r} cannot be read: {e}") from e
        return sorted(unquote(i.base_name) for i in infos if i.type == pafs.FileType.Directory)

    def names(self) -> list[str]:
        """Names of the registered (not removed) candidate models, sorted; unusable entries included.

        Raises:
            RegistryError: the registry cannot be listed.
        """
        out = []
        for name in self._dir_names():
            state = self._latest_state(name)
            if state is not None and not (state[1] is not None and state[1].get("removed")):
                out.append(name)
        return out

    def get(self, name: str, version: int | None = None) -> RegistryEntry:
        """The latest (or a given) version of a model's entry.

        Raises:
            UnknownModelError: the model is not registered (lists the registered ones), or the version does
                not exist or is a removal.
            RegistryError: the entry's file is unusable (names the file and why: unreadable, not UTF-8 JSON,
                not an object, a missing or invalid field).
        """
        versions = self._versions(name)
        v = versions[-1] if version is None and versions else version
        raw = self._read(name, v) if v is not None and v in versions else None
        if raw is None or raw.get("removed"):
            what = f"model {name!r}" + (f" version {version}" if version is not None else "")
            raise UnknownModelError(
                f"{what} is not in registry {self.uri!r}; registered: {', '.join(self.names()) or 'none'}"
            )
        return self._parse(name, v, raw)

    def entries(self) -> list[RegistryEntry]:
        """The latest entry of every registered model, by name; unusable entries are skipped and logged.

        Raises:
            RegistryError: the registry cannot be listed (one bad entry never raises).
        """
        entries, bad = self._scan()
        for e in bad:
            _warn_once(e.path, e.why)
        return entries

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every version of a name: `{"version", "created_at", "removed"}` (plus `"error"` for an unreadable
        version file), oldest first."""
        out: list[dict[str, Any]] = []
        for v in self._versions(name):
            try:
                r = self._read(name, v)
            except _BadEntry as e:
                out.append({"version": v, "created_at": "", "removed": False, "error": e.why})
                continue
            out.append(
                {"version": v, "created_at": r.get("created_at", ""), "removed": bool(r.get("removed"))}
            )
        return out

    def entries_for(self, test: AptitudeTest) -> list[RegistryEntry]:
        """The latest entries whose capability profiles were measured on the router's aptitude test, by name.

        Entries measured on another aptitude test, and unusable ones, are skipped and logged (once per entry,
        with its path and why); every other model is returned.

        Args:
            test: the router checkpoint's aptitude test (profiles are comparable iff its fingerprint matches).
        Returns:
            The usable entries; each profile has one accuracy per task of `test`.
        Raises:
            RegistryError: the registry is empty or cannot be listed, or no entry is usable: every profile was
                measured on another aptitude test (names them; re-run `modelsat registry add` with this router)
                or every entry is unusable (names the files).
        """
        entries, bad = self._scan()
        if not entries and not bad:
            raise RegistryError(
                f"registry {self.uri!r} has no models; add one with `modelsat registry add NAME --router-checkpoint CKPT ...`"
            )
        fp = aptitude_fingerprint(test)
        usable, foreign = [], []
        for e in entries:
            path = self._display(self._path(e.name, e.version))
            if e.aptitude_test != fp:
                foreign.append(e.name)
                _warn_once(
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
        for b in bad:
            _warn_once(b.path, b.why)
        if usable:
            return usable
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
        raise RegistryError(
            f"registry {self.uri!r} has no model this router can route to: {'; and '.join(parts)}"
        )

    def profiles_for(self, test: AptitudeTest) -> dict[str, CapabilityProfile]:
        """Capability profiles of every usable registered model, checked against the router's aptitude test.

        See `entries_for` (models measured on another test, and unusable entries, are skipped and logged).

        Returns:
            Model name -> capability profile ([T'] accuracies in [0, 1], T' = tasks of `test`).
        Raises:
            RegistryError: the registry is empty, or no profile was measured on this aptitude test (names the
                models and files; re-run `modelsat registry add` with this router).
        """
        return {e.name: e.profile for e in self.entries_for(test)}

    # ------------------------------------------------------------------------------------------ writing
    def check_writable(self) -> None:
        """Write and delete a probe file, so a long aptitude job does not end on an unwritable registry.

        Raises:
            RegistryError: naming the URI and the filesystem's error.
        """
        probe = f"{self._root}/.probe-{uuid.uuid4().hex}"
        try:
            self._fs.create_dir(self._root, recursive=True)
            with self._fs.open_output_stream(probe) as f:
                f.write(b"ok")
            self._fs.delete_file(probe)
        except OSError as e:
            raise RegistryError(f"registry {self.uri!r} is not writable: {e}") from e

    def _publish(self, name: str, version: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, indent=1).encode()
        final = f"{self._model_dir(name)}/v{version:06d}.json"
        try:
            self._fs.create_dir(self._model_dir(name), recursive=True)
            if not self._local:
                if version in self._versions(name):
                    raise FileExistsError(final)
                with self._fs.open_output_stream(final) as f:
                    f.write(data)
                return
            tmp = f"{self._model_dir(name)}/.tmp-{uuid.uuid4().hex}"
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.link(tmp, final)  # fails if the version exists: no writer ever overwrites another
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        except FileExistsError as e:
            raise RegistryError(
                f"registry {self.uri!r}: version {version} of {name!r} was written by another writer at the same "
                "time; nothing was overwritten, retry"
            ) from e
        except OSError as e:
            raise RegistryError(f"registry {self.uri!r} is not writable: {e}") from e

    def put(
        self,
        card: ModelCard,
        profile: CapabilityProfile,
        aptitude: dict[str, Any],
        replace: bool = False,
    ) -> RegistryEntry:
        """Register a model (a new version of its entry).

        Args:
            card: the model card; `card.name` is the key.
            profile: its capability profile (`profile.model` must equal `card.name`).
            aptitude: aptitude results (see `RegistryEntry.aptitude`; must hold `test`, the test fingerprint).
            replace: allow replacing a registered model (its old versions stay as history).
        Returns:
            The new entry.
        Raises:
            RegistryError: the name is registered and `replace` is False, the aptitude results lack the test
                fingerprint, the profile is invalid (accuracies outside [0, 1], lengths that differ), or the
                registry cannot be written. Nothing is written on error.
        """
        if profile.model != card.name:
            raise RegistryError(f"profile is of {profile.model!r} but the card names {card.name!r}")
        if "test" not in aptitude:
            raise RegistryError("aptitude results must name the aptitude test they were measured on ('test')")
        try:
            _profile_from(profile.to_dict(), card.name)
        except ValueError as e:
            raise RegistryError(f"the capability profile of {card.name!r} is invalid: {e}") from e
        versions = self._versions(card.name)
        state = None if replace else self._latest_state(card.name)
        if state is not None and not (state[1] is not None and state[1].get("removed")):
            unusable = f", unusable: {state[2].why}" if state[2] is not None else ""
            raise RegistryError(
                f"model {card.name!r} is already in registry {self.uri!r} (version {versions[-1]}{unusable}); "
                "pass --replace to register a new version, or remove it first"
            )
        entry = RegistryEntry(
            card=card,
            profile=profile,
            aptitude=aptitude,
            version=(versions[-1] if versions else 0) + 1,
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        self._publish(card.name, entry.version, entry.to_dict())
        return entry

    def remove(self, name: str) -> int:
        """Unregister a model by writing a tombstone version; returns that version.

        An unusable latest entry (unreadable, malformed) can be removed too.

        Raises:
            UnknownModelError: the model is not registered. RegistryError: the registry cannot be written.
        """
        state = self._latest_state(name)
        if state is None or (state[1] is not None and state[1].get("removed")):
            raise UnknownModelError(
                f"model {name!r} is not in registry {self.uri!r}; registered: {', '.join(self.names()) or 'none'}"
            )
        version = state[0] + 1
        self._publish(
            name,
            version,
            {
                "format": FORMAT,
                "name": name,
                "version": version,
                "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "removed": True,
            },
        )
        return version


def default_registry_uri() -> str:
    """`$MODELSAT_REGISTRY`, else `./registry`."""
    return os.environ.get(REGISTRY_ENV) or "registry"
