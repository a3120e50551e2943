"""The router checkpoint directory: one self-contained folder that can be copied to a cluster.

Layout (Hugging Face layout plus Model-SAT metadata):

| file | content |
|---|---|
| `config.json` | `RouterConfig` (architecture, backbone config, calibration, format version) |
| `model.safetensors` | all weights: backbone, connector, scoring head, task embeddings |
| `tokenizer.json`, `tokenizer_config.json`, ... | the backbone tokenizer |
| `aptitude_test.json` | the frozen aptitude test: items, tasks, descriptions, reference statistics |
| `profiles.json` | capability profiles of the models the checkpoint knows |
| `training.json` | seed, zoo fingerprint, unseen models, ids of the questions used in training, run config, result |
| `aptitude_items.json` | optional: the aptitude items' text and gold answers, so live models can take the test anywhere |

`RouterModel.from_pretrained(dir)` loads the model from this folder alone; `RouterCheckpoint.load(dir)` loads
everything.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from modelsat.aptitude import AptitudeTest, CapabilityProfile
from modelsat.errors import CheckpointError, ModelSATError
from modelsat.grading import AptitudeItem
from modelsat.paths import atomic_output_dir
from modelsat.router.configuration import ROUTER_FORMAT
from modelsat.router.modeling import RouterModel, register_auto_classes

__all__ = ["REQUIRED_FILES", "RouterCheckpoint", "check_replaceable"]

REQUIRED_FILES = ("config.json", "model.safetensors", "aptitude_test.json", "profiles.json", "training.json")


@dataclass
class RouterCheckpoint:
    """A trained router and what it needs to route.

    Attributes:
        model: the router (eval mode).
        tokenizer: the backbone tokenizer.
        aptitude: the frozen aptitude test.
        profiles: capability profiles of the models known at training time (seen and unseen).
        training: training record (`seed`, `zoo`, `zoo_fingerprint`, `unseen_models`, `training_models`,
            `train_ids`, `validation_ids`, `used_prompt_hashes`, `config`, `result`).
        path: where it was loaded from: the directory, or the URI of a remote checkpoint (whose temporary
            local copy is deleted after loading); None if not saved yet.
        items: the aptitude items' text and gold answers (None for checkpoints written without them).
    """

    model: RouterModel
    tokenizer: PreTrainedTokenizerBase
    aptitude: AptitudeTest
    profiles: dict[str, CapabilityProfile]
    training: dict[str, Any] = field(default_factory=dict)
    path: Path | str | None = None
    items: list[AptitudeItem] | None = None

    @property
    def used_question_ids(self) -> set[str]:
        """Every question the checkpoint used: router training, validation and aptitude items."""
        t = self.training
        return (
            set(t.get("train_ids", [])) | set(t.get("validation_ids", [])) | set(self.aptitude.question_ids)
        )

    def save(self, path: str | Path) -> Path:
        """Write the checkpoint directory atomically (a failed save leaves `path` as it was).

        The new directory replaces an existing checkpoint at `path` in one rename, so a reader sees the old or
        the new checkpoint (`load` re-reads one that is replaced while it reads it).

        Raises:
            CheckpointError: `path` exists and is neither an empty directory nor a router checkpoint (nothing is
                replaced then).
        """
        path = Path(path)
        check_replaceable(path)
        with atomic_output_dir(path) as tmp:
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            (tmp / "aptitude_test.json").write_text(json.dumps(self.aptitude.to_dict(), indent=1))
            (tmp / "profiles.json").write_text(
                json.dumps({m: p.to_dict() for m, p in self.profiles.items()}, indent=1)
            )
            (tmp / "training.json").write_text(json.dumps(self.training, indent=1, default=_json_default))
            if self.items is not None:
                (tmp / "aptitude_items.json").write_text(
                    json.dumps([it.to_dict() for it in self.items], indent=1)
                )
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> RouterCheckpoint:
        """Load and check a checkpoint directory.

        Args:
            path: the checkpoint directory, or its URI on an object store (`s3://...`, `gs://...`, `file://...`;
                copied to a temporary directory, verified against its manifest, loaded, and the copy deleted;
                see `modelsat.storage`). A directory in the upload layout (`modelsat-manifest.json`, e.g. a
                volume an upload went to) is read the same way.
            device: torch device of the model.
        Returns:
            The checkpoint; `path` is the directory, or the URI for a remote checkpoint.
        Raises:
            CheckpointError: if the directory is missing, lacks a file, is from an incompatible format
                version, or its files disagree (the message names the file and the value); for a URI, also if a
                file does not match the upload's manifest (SHA-256); for a directory replaced twice while it
                was being read (a `modelsat train --out` over it), asking to load it again.
        """
        from modelsat.storage import MANIFEST_FILE, download_dir, is_uri

        if not is_uri(path) and (Path(path) / MANIFEST_FILE).is_file():  # an upload's layout on a volume
            path = Path(path).resolve().as_uri()
        if is_uri(path):
            uri = str(path)
            try:
                local = download_dir(uri)
            except ModelSATError as e:
                raise CheckpointError(f"router checkpoint {uri!r}: {e}") from e
            try:
                ckpt = cls._load_dir(local, device, uri)
            finally:
                shutil.rmtree(local, ignore_errors=True)  # the weights are in memory now
            ckpt.path = uri
            return ckpt
        path = Path(path)
        for _ in range(2):  # a checkpoint replaced while we read it (a rename): read the new one once more
            before = _identity(path)
            try:
                ckpt = cls._load_dir(path, device, str(path))
            except (CheckpointError, OSError):
                if _identity(path) == before:
                    raise
                continue
            if _identity(path) == before:
                return ckpt
        raise CheckpointError(
            f"router checkpoint {str(path)!r} was replaced twice while it was being read (a `modelsat train "
            "--out` over it?); load it again"
        )

    @classmethod
    def _load_dir(cls, path: Path, device: str, name: str) -> RouterCheckpoint:
        """`load` of a local directory; messages call the checkpoint `name` (its path or its URI)."""
        if not path.is_dir():
            raise CheckpointError(
                f"router checkpoint {name!r} does not exist (expected a directory written by `modelsat train`)"
            )
        missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
        if missing:
            raise CheckpointError(
                f"router checkpoint {name!r} is incomplete: missing {', '.join(missing)} "
                f"(a checkpoint holds {', '.join(REQUIRED_FILES)} and tokenizer files)"
            )
        try:
            raw_cfg = json.loads((path / "config.json").read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{name}/config.json is not valid JSON: {e}") from e
        if raw_cfg.get("model_type") != "modelsat_router":
            raise CheckpointError(
                f"{name}/config.json: model_type={raw_cfg.get('model_type')!r}; expected 'modelsat_router'"
            )
        fmt = raw_cfg.get("modelsat_format")
        if fmt != ROUTER_FORMAT:
            raise CheckpointError(
                f"router checkpoint {name!r} has modelsat_format={fmt!r}; this version of modelsat reads format {ROUTER_FORMAT}"
            )
        try:
            aptitude = AptitudeTest.from_dict(json.loads((path / "aptitude_test.json").read_text()))
            profiles = {
                m: CapabilityProfile.from_dict(d)
                for m, d in json.loads((path / "profiles.json").read_text()).items()
            }
            training = json.loads((path / "training.json").read_text())
            items_file = path / "aptitude_items.json"
            items = (
                [AptitudeItem.from_dict(d) for d in json.loads(items_file.read_text())]
                if items_file.is_file()
                else None
            )
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"router checkpoint {name!r} has a malformed metadata file: {e}") from e
        register_auto_classes()
        try:
            model, info = RouterModel.from_pretrained(path, output_loading_info=True)
            tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(
                f"router checkpoint {name!r}: weights or tokenizer cannot be loaded: {e}"
            ) from e
        missing = sorted(k for k in info.get("missing_keys", ()) if "position_ids" not in k)
        unexpected = sorted(k for k in info.get("unexpected_keys", ()) if "position_ids" not in k)
        if missing or unexpected:  # transformers would have initialised them at random: refuse
            raise CheckpointError(
                f"router checkpoint {name!r} does not match this version's architecture "
                f"(missing weights: {', '.join(missing[:3]) or 'none'}; unexpected: {', '.join(unexpected[:3]) or 'none'}); "
                "retrain it with this version of modelsat"
            )
        model = model.to(device).eval()
        if model.config.n_tasks != len(aptitude.tasks):
            raise CheckpointError(
                f"router checkpoint {name!r}: config.json has n_tasks={model.config.n_tasks} but "
                f"aptitude_test.json has {len(aptitude.tasks)} tasks"
            )
        for name, prof in profiles.items():
            if len(prof.accuracies) != len(aptitude.tasks):
                raise CheckpointError(
                    f"router checkpoint {name!r}: profile of {name!r} has {len(prof.accuracies)} tasks, "
                    f"the aptitude test has {len(aptitude.tasks)}"
                )
        return cls(
            model=model,
            tokenizer=tokenizer,
            aptitude=aptitude,
            profiles=profiles,
            training=training,
            path=path,
            items=items,
        )


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a directory: changes when `atomic_output_dir` renames a new one into its place."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_replaceable(path: str | Path) -> None:
    """Refuse to replace anything at `path` but nothing, an empty directory, or a router checkpoint.

    Raises:
        CheckpointError: `path` is a file, or a non-empty directory without `config.json` (so a mistyped
            `--out` never deletes a directory of other files, nor the versions an upload wrote there).
    """
    path = Path(path)
    if not path.exists():
        return
    if path.is_dir() and (not any(path.iterdir()) or (path / "config.json").is_file()):
        return
    from modelsat.storage import MANIFEST_FILE

    if (path / MANIFEST_FILE).is_file():
        raise CheckpointError(
            f"refusing to replace {str(path)!r}: it holds uploaded checkpoint versions ({MANIFEST_FILE}); give "
            f"--out {path.resolve().as_uri()} to upload a new version there"
        )
    raise CheckpointError(
        f"refusing to replace {str(path)!r}: it exists and is not a router checkpoint (no config.json); give a "
        "new or empty directory, or an existing checkpoint to replace"
    )


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"cannot serialise {type(o).__name__}")
