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

This module is the storage (`ModelRegistry`). What one entry holds (`ModelCard`, `RegistryEntry`,
`aptitude_fingerprint`, re-exported here) and the checks that make it usable live in `modelsat._registry_entries`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from modelsat._registry_entries import (
    FORMAT,
    ModelCard,
    RegistryEntry,
    _BadEntry,
    aptitude_fingerprint,
    check_new_entry,
    decode_entry,
    no_usable_entry_message,
    split_by_test,
    stored_entry,
    warn_once,
)
from modelsat.aptitude import AptitudeTest, CapabilityProfile
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
_VERSION_FILE = re.compile(r"^v(\d{6})\.json$")


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
                data = f.read()
        except OSError as e:
            raise _BadEntry(name, self._display(path), f"it cannot be read ({e})") from e
        return decode_entry(name, self._display(path), data)

    def _parse(self, name: str, version: int, raw: dict[str, Any]) -> RegistryEntry:
        """A version file's object as an entry of `name`, checked against where it is stored.

        Raises:
            _BadEntry (a RegistryError): a missing or invalid field, or an entry of another name or version.
        """
        return stored_entry(name, version, self._display(self._path(name, version)), raw)

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
            warn_once(e.path, e.why)
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
        usable, foreign, mismatched = split_by_test(
            entries, test, lambda e: self._display(self._path(e.name, e.version))
        )
        bad += mismatched
        for b in bad:
            warn_once(b.path, b.why)
        if usable:
            return usable
        raise RegistryError(no_usable_entry_message(self.uri, aptitude_fingerprint(test), foreign, bad))

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
        check_new_entry(card, profile, aptitude)
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
