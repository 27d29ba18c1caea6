#!/usr/bin/env bash
# check-format.sh: checks that every tracked C, C++ and header file
# (git ls-files '*.c' '*.h' '*.cc') is formatted as .clang-format says.
# Changes nothing. Exit status 0 when every file is formatted, 1 when some
# drift (each is listed, with the command that fixes them), 2 when
# clang-format or git is missing. ./scripts/test runs it before the build;
# it also runs alone, from any directory:
#   scripts/check-format.sh
#   CLANG_FORMAT=clang-format-14 scripts/check-format.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cf=${CLANG_FORMAT:-clang-format}

if ! command -v "$cf" >/dev/null 2>&1; then
  echo "check-format: $cf not found (scripts/install-deps.sh installs clang-format)" >&2
  exit 2
fi
if ! git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
  echo "check-format: $root is not a git checkout: no list of tracked files" >&2
  exit 2
fi

cd "$root"
drift=()
n=0
while IFS= read -r -d '' f; do
  # A tracked file deleted in the working tree is not checked.
  [ -f "$f" ] || continue
  n=$((n + 1))
  if ! "$cf" --dry-run --Werror "$f" >/dev/null 2>&1; then
    drift+=("$f")
  fi
done < <(git ls-files -z -- '*.c' '*.h' '*.cc')

if [ "${#drift[@]}" -eq 0 ]; then
  echo "check-format: $n files, all formatted ($("$cf" --version | head -n 1))"
  exit 0
fi
echo "check-format: ${#drift[@]} of $n files differ from .clang-format:" >&2
printf '  %s\n' "${drift[@]}" >&2
echo "fix them with (from $root):" >&2
echo "  $cf -i ${drift[*]}" >&2
exit 1
