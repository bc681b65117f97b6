#!/usr/bin/env bash
# Type-check the installed `mpaas` namespace with mypy.
#
# mypy cannot follow the package_dir mapping (mpaas.signing -> signing/) from the repo
# root, and a strict editable install is shadowed by the root's mpaas/ at run time.
# So: a separate venv used only for type checks, holding a strict editable install
# of the project, which sees the main venv's dependencies through a .pth file; mypy
# then runs from outside the repo root. Re-run after adding files (strict mode links
# files, it does not watch for new ones).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
main_venv="${MPAAS_VENV:-$root/.venv}"
tc_venv="$root/.venv-typecheck"

[ -x "$main_venv/bin/mypy" ] || { echo "typecheck: $main_venv has no mypy; install '.[dev]' first" >&2; exit 2; }
[ -x "$tc_venv/bin/python" ] || python3 -m venv "$tc_venv"
deps="$("$main_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
site="$("$tc_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$deps" > "$site/_mpaas_main_venv.pth"
"$tc_venv/bin/pip" install -q --disable-pip-version-check --no-deps -e "$root" \
    --config-settings editable_mode=strict >/dev/null
cd "$(mktemp -d)"
exec "$main_venv/bin/mypy" --config-file "$root/pyproject.toml" --python-executable "$tc_venv/bin/python" \
    --cache-dir "$root/.mypy_cache" -p mpaas
