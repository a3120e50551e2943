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
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from pydantic import Field, field_validator

from modelsat.aptitude import AptitudeTest, CapabilityProfile
from modelsat.config import BaseConfig
from modelsat.errors import RegistryError, UnknownModelError

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
        return cls(
            card=ModelCard.from_dict(d["card"], source=f"registry entry {d.get('name')!r}"),
            profile=CapabilityProfile.from_dict(d["profile"]),
            aptitude=d.get("aptitude", {}),
            version=int(d["version"]),
            created_at=str(d.get("created_at", "")),
        )


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

    def _read(self, name: str, version: int) -> dict[str, Any]:
        path = f"{self._model_dir(name)}/v{version:06d}.json"
        try:
            with self._fs.open_input_stream(path) as f:
                return json.loads(f.read().decode())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RegistryError(f"registry entry {path} cannot be read: {e}") from e

    # ------------------------------------------------------------------------------------------ reading
    def names(self) -> list[str]:
        """Names of the registered (not removed) candidate models, sorted."""
        from pyarrow import fs as pafs

        try:
            infos = self._fs.get_file_info(pafs.FileSelector(f"{self._root}/models", allow_not_found=True))
        except OSError as e:
            raise RegistryError(f"registry {self.uri!r} cannot be read: {e}") from e
        names = sorted(unquote(i.base_name) for i in infos if i.type == pafs.FileType.Directory)
        return [n for n in names if self._latest(n) is not None]

    def _latest(self, name: str) -> dict[str, Any] | None:
        versions = self._versions(name)
        if not versions:
            return None
        raw = self._read(name, versions[-1])
        return None if raw.get("removed") else raw

    def get(self, name: str, version: int | None = None) -> RegistryEntry:
        """The latest (or a given) version of a model's entry.

        Raises:
            UnknownModelError: the model is not registered (lists the registered ones), or the version does
                not exist or is a removal.
        """
        if version is None:
            raw = self._latest(name)
        else:
            raw = self._read(name, version) if version in self._versions(name) else None
            raw = None if raw is None or raw.get("removed") else raw
        if raw is None:
            what = f"model {name!r}" + (f" version {version}" if version is not None else "")
            raise UnknownModelError(
                f"{what} is not in registry {self.uri!r}; registered: {', '.join(self.names()) or 'none'}"
            )
        return RegistryEntry.from_dict(raw)

    def entries(self) -> list[RegistryEntry]:
        """The latest entry of every registered model, by name."""
        return [self.get(n) for n in self.names()]

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every version of a name: `{"version", "created_at", "removed"}`, oldest first."""
        return [
            {"version": v, "created_at": r.get("created_at", ""), "removed": bool(r.get("removed"))}
            for v in self._versions(name)
            for r in [self._read(name, v)]
        ]

    def profiles_for(self, test: AptitudeTest) -> dict[str, CapabilityProfile]:
        """Capability profiles of every registered model, checked against the router's aptitude test.

        Raises:
            RegistryError: the registry is empty, or some profiles were measured on another aptitude test
                (names them; re-run `modelsat registry add` with this router).
        """
        entries = self.entries()
        if not entries:
            raise RegistryError(
                f"registry {self.uri!r} has no models; add one with `modelsat registry add NAME --router-checkpoint CKPT ...`"
            )
        fp = aptitude_fingerprint(test)
        bad = [e.name for e in entries if e.aptitude_test != fp]
        if bad:
            raise RegistryError(
                f"registry {self.uri!r}: the profiles of {', '.join(bad)} were measured on another aptitude test "
                f"than this router's (test {fp}); re-run `modelsat registry add NAME --replace` with this router"
            )
        return {e.name: e.profile for e in entries}

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
                fingerprint, or the registry cannot be written. Nothing is written on error.
        """
        if profile.model != card.name:
            raise RegistryError(f"profile is of {profile.model!r} but the card names {card.name!r}")
        if "test" not in aptitude:
            raise RegistryError("aptitude results must name the aptitude test they were measured on ('test')")
        versions = self._versions(card.name)
        if not replace and versions and not self._read(card.name, versions[-1]).get("removed"):
            raise RegistryError(
                f"model {card.name!r} is already in registry {self.uri!r} (version {versions[-1]}); "
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

        Raises:
            UnknownModelError: the model is not registered. RegistryError: the registry cannot be written.
        """
        self.get(name)
        version = self._versions(name)[-1] + 1
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
