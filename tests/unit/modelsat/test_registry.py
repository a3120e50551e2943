"""The model registry: versioned, atomic entries on a local path or a pyarrow URI (modelsat.registry)."""

import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from modelsat.aptitude import AptitudeTask, AptitudeTest, CapabilityProfile
from modelsat.cli._registry_view import entry_report, registry_table
from modelsat.errors import ConfigError, RegistryError, UnknownModelError
from modelsat.registry import ModelCard, ModelRegistry, aptitude_fingerprint

TEST = AptitudeTest(
    zoo="toy",
    tasks=(
        AptitudeTask("algebra", "a, b, c, d, e", ("toy/algebra/1", "toy/algebra/2"), 0.5, 0.2),
        AptitudeTask("law", "f, g, h, i, j", ("toy/law/1", "toy/law/2"), 0.5, 0.2),
    ),
    seed=0,
    requested=(2, 2),
    training_models=("alpha",),
)


def _profile(name: str, acc=(0.5, 1.0)) -> CapabilityProfile:
    return CapabilityProfile(name, np.asarray(acc, dtype=np.float32), np.array([2, 2]), source="test")


def _aptitude(test: AptitudeTest = TEST) -> dict:
    return {"test": aptitude_fingerprint(test), "engine": {"kind": "recorded"}, "n_items": 4, "n_unparsed": 0}


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_put_get_versions_replace_and_remove(tmp_path):
    reg = ModelRegistry(tmp_path / "reg")
    assert reg.names() == []
    e1 = reg.put(ModelCard(name="org/model-a", usd_per_mtok=0.5), _profile("org/model-a"), _aptitude())
    assert (e1.version, reg.names()) == (1, ["org/model-a"])
    got = reg.get("org/model-a")
    assert got.card.usd_per_mtok == 0.5 and np.allclose(got.profile.accuracies, [0.5, 1.0])
    with pytest.raises(RegistryError, match="already in registry.*--replace"):
        reg.put(ModelCard(name="org/model-a"), _profile("org/model-a"), _aptitude())
    e2 = reg.put(
        ModelCard(name="org/model-a"), _profile("org/model-a", (0.0, 0.5)), _aptitude(), replace=True
    )
    assert e2.version == 2 and np.allclose(reg.get("org/model-a").profile.accuracies, [0.0, 0.5])
    assert np.allclose(reg.get("org/model-a", version=1).profile.accuracies, [0.5, 1.0])  # history kept
    assert reg.remove("org/model-a") == 3
    assert reg.names() == []
    assert [h["removed"] for h in reg.history("org/model-a")] == [False, False, True]
    with pytest.raises(UnknownModelError, match="not in registry"):
        reg.get("org/model-a")
    with pytest.raises(UnknownModelError):
        reg.remove("org/model-a")
    # a removed name can be added again without --replace
    assert reg.put(ModelCard(name="org/model-a"), _profile("org/model-a"), _aptitude()).version == 4


def test_file_uri_and_listing_tables(tmp_path):
    reg = ModelRegistry(f"file://{tmp_path}/reg")
    reg.put(ModelCard(name="a", base_url="http://127.0.0.1:9/v1"), _profile("a"), _aptitude())
    reg.put(ModelCard(name="b", serve_application="b-app"), _profile("b"), _aptitude())
    assert ModelRegistry(tmp_path / "reg").names() == ["a", "b"]  # same store through a plain path
    table = registry_table(reg.entries())
    assert "| a | 1 | recorded | 4 | 0 | 75.0 |" in table and "serve:b-app" in table
    report = entry_report(reg.get("a"), reg.history("a"))
    assert "http://127.0.0.1:9/v1" in report and "| task 1 | 2 | 100.0 |" in report


OTHER = AptitudeTest("toy", TEST.tasks[:1], 0, (1, 2), ("alpha",))


def test_profiles_for_checks_the_aptitude_test(tmp_path, caplog):
    caplog.set_level("WARNING", logger="modelsat.registry")
    reg = ModelRegistry(tmp_path / "reg")
    with pytest.raises(RegistryError, match="has no models"):
        reg.profiles_for(TEST)
    reg.put(ModelCard(name="b"), CapabilityProfile("b", np.array([0.5]), np.array([2])), _aptitude(OTHER))
    # every profile measured on another aptitude test: a clear error, not routing over nothing
    with pytest.raises(RegistryError, match="profiles of b were measured on another aptitude test"):
        reg.profiles_for(TEST)
    reg.put(ModelCard(name="a"), _profile("a"), _aptitude())
    assert list(reg.profiles_for(TEST)) == ["a"]  # the foreign one is skipped, not fatal
    assert list(reg.profiles_for(TEST)) == ["a"]
    b_path = str(tmp_path / "reg" / "models" / "b" / "v000001.json")
    assert [r.getMessage() for r in caplog.records] == [  # logged once, naming the file and why
        f"skipping registry entry {b_path}: its profile was measured on aptitude test "
        f"'{aptitude_fingerprint(OTHER)}', not this router's ({aptitude_fingerprint(TEST)}); "
        "re-run `modelsat registry add b --replace` with this router"
    ]


def _write_bad_entries(root: Path) -> dict[str, Path]:
    """Registry entries that are broken in one way each (written over a valid entry's file)."""
    reg = ModelRegistry(root)
    files = {}
    for name in ("truncated", "a-list", "no-profile", "not-utf8", "other-name"):
        reg.put(ModelCard(name=name), _profile(name), _aptitude())
        files[name] = root / "models" / name / "v000001.json"
    text = files["truncated"].read_text()
    files["truncated"].write_text(text[: len(text) // 2])
    files["a-list"].write_text("[1, 2]")
    raw = json.loads(files["no-profile"].read_text())
    del raw["profile"]
    files["no-profile"].write_text(json.dumps(raw))
    files["not-utf8"].write_bytes(b'{"name": "\xff\xfe"}')
    raw = json.loads(files["other-name"].read_text())
    raw["name"] = raw["card"]["name"] = raw["profile"]["model"] = "someone-else"
    files["other-name"].write_text(json.dumps(raw))
    return files


def test_one_bad_entry_is_skipped_and_logged_once_and_get_names_its_file(tmp_path, caplog):
    reg = ModelRegistry(tmp_path / "reg")
    reg.put(ModelCard(name="a", usd_per_mtok=1.0), _profile("a"), _aptitude())
    files = _write_bad_entries(tmp_path / "reg")
    reg.put(ModelCard(name="z"), _profile("z"), _aptitude())
    with caplog.at_level("WARNING", logger="modelsat.registry"):
        for _ in range(3):  # a router re-reads the registry: each bad entry is logged once
            assert [e.name for e in reg.entries()] == ["a", "z"]
            assert list(reg.profiles_for(TEST)) == ["a", "z"]
    logged = sorted(r.getMessage() for r in caplog.records)
    assert len(logged) == len(files)
    why = {
        "truncated": "it is not valid JSON",
        "a-list": "it is a JSON list, not an object",
        "no-profile": "missing field 'profile' (an entry has format, name, version",
        "not-utf8": "it is not UTF-8 text",
        "other-name": "it names model 'someone-else' but is stored under 'other-name'",
    }
    for name, path in files.items():
        assert sum(m.startswith(f"skipping registry entry {path}: {why[name]}") for m in logged) == 1, name
        with pytest.raises(RegistryError, match=rf"registry entry {re.escape(str(path))} is unusable: "):
            reg.get(name)
    assert reg.names() == sorted(["a", "z", *files])  # still registered (unusable), so not silently re-added
    with pytest.raises(RegistryError, match=r"already in registry .*version 1, unusable: it is a JSON list"):
        reg.put(ModelCard(name="a-list"), _profile("a-list"), _aptitude())
    assert reg.remove("truncated") == 2  # an unusable entry can be unregistered
    assert [h.get("error", "")[:22] for h in reg.history("truncated")] == ["it is not valid JSON (", ""]
    reg.put(ModelCard(name="a-list"), _profile("a-list"), _aptitude(), replace=True)
    assert "a-list" in reg.profiles_for(TEST) and "truncated" not in reg.names()


def test_a_registry_of_only_unusable_entries_is_an_error_naming_them(tmp_path):
    files = _write_bad_entries(tmp_path / "reg")
    reg = ModelRegistry(tmp_path / "reg")
    assert reg.entries() == []
    with pytest.raises(
        RegistryError, match=r"has no model this router can route to: 5 entries are unusable: .*a-list"
    ):
        reg.profiles_for(TEST)
    assert files


def test_an_invalid_profile_is_refused_before_writing(tmp_path):
    reg = ModelRegistry(tmp_path / "reg")
    bad = CapabilityProfile("m", np.array([0.5, 1.5]), np.array([2, 2]))
    with pytest.raises(
        RegistryError, match=r"profile of 'm' is invalid: .*\[0\.5, 1\.5\] are not all in \[0, 1\]"
    ):
        reg.put(ModelCard(name="m"), bad, _aptitude())
    assert reg.names() == [] and not (tmp_path / "reg" / "models" / "m").exists()


def test_bad_input_changes_nothing(tmp_path):
    reg = ModelRegistry(tmp_path / "reg")
    reg.put(ModelCard(name="a"), _profile("a"), _aptitude())
    before = _snapshot(tmp_path / "reg")
    with pytest.raises(RegistryError, match="profile is of 'b'"):
        reg.put(ModelCard(name="a"), _profile("b"), _aptitude(), replace=True)
    with pytest.raises(RegistryError, match="must name the aptitude test"):
        reg.put(ModelCard(name="c"), _profile("c"), {})
    with pytest.raises(RegistryError, match="already in registry"):
        reg.put(ModelCard(name="a"), _profile("a"), _aptitude())
    reg.check_writable()
    assert _snapshot(tmp_path / "reg") == before
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RegistryError, match="is not writable"):
        ModelRegistry(blocker / "reg").check_writable()
    for bad in (
        {"name": ".."},
        {"name": " a"},
        {"name": "a", "usd_per_mtok": -1},
        {"name": "a", "base_url": "ftp://x"},
    ):
        with pytest.raises(ConfigError):
            ModelCard.from_dict(bad)


def test_concurrent_reader_sees_old_or_new_never_partial(tmp_path):
    reg = ModelRegistry(tmp_path / "reg")
    reg.put(ModelCard(name="m"), _profile("m", (0.0, 0.0)), _aptitude())
    big = {**_aptitude(), "items": {f"q{i}": {"score": 1.0, "answer": "A" * 50} for i in range(5000)}}
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def reader():
        r = ModelRegistry(tmp_path / "reg")
        while not stop.is_set():
            try:
                e = r.get("m")
                assert (
                    abs(float(e.profile.accuracies[0]) - (e.version - 1) / 10) < 1e-6
                )  # content matches version
                seen.append(e.version)
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)
                return

    t = threading.Thread(target=reader)
    t.start()
    for v in range(2, 11):
        reg.put(ModelCard(name="m"), _profile("m", ((v - 1) / 10, 0.0)), big, replace=True)
    stop.set()
    t.join()
    assert not errors, errors[0]
    assert seen and seen == sorted(seen) and set(seen) <= set(range(1, 11))


def test_a_second_writer_of_the_same_version_loses_without_overwriting(tmp_path, monkeypatch):
    reg = ModelRegistry(tmp_path / "reg")
    reg.put(ModelCard(name="m"), _profile("m"), _aptitude())
    before = _snapshot(tmp_path / "reg")
    monkeypatch.setattr(reg, "_versions", lambda name: [])  # a writer that has not seen version 1 yet
    with pytest.raises(RegistryError, match="written by another writer"):
        reg.put(ModelCard(name="m"), _profile("m", (0.0, 0.0)), _aptitude())
    assert _snapshot(tmp_path / "reg") == before
