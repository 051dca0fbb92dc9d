# Sourced by scripts/up and scripts/test: creates or refreshes .venv from pyproject.toml.
# Usage: ensure_venv [extras]   e.g. ensure_venv dev
ensure_venv() {
    local extras="${1:-}"
    local root python stamp spec wanted
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    python="${PYTHON:-}"
    if [ -z "$python" ]; then
        for candidate in python3.13 python3.12 python3.11 python3; do
            if command -v "$candidate" >/dev/null 2>&1 &&
                "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
                python="$candidate"
                break
            fi
        done
    fi
    if [ -z "$python" ]; then
        echo "error: Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)" >&2
        return 1
    fi
    if [ ! -x "$root/.venv/bin/python" ]; then
        echo "creating .venv with $python" >&2
        "$python" -m venv "$root/.venv"
    fi
    spec="."
    [ -n "$extras" ] && spec=".[$extras]"
    # Reinstall only when pyproject.toml changed or extras are missing; the stamp
    # holds "<hash of pyproject.toml> <extras installed>".
    wanted="$(sha256sum "$root/pyproject.toml" | cut -c1-16)"
    stamp="$root/.venv/.credits-installed"
    local have_hash="" have_extras=""
    [ -f "$stamp" ] && read -r have_hash have_extras <"$stamp" || true
    if [ "$have_hash" != "$wanted" ] || { [ -n "$extras" ] && [ "$have_extras" != "$extras" ]; }; then
        echo "installing credits ($spec) into .venv" >&2
        # Build-backend chatter goes to a log; it is shown only when the install fails.
        if ! (cd "$root" && install_into_venv "$spec" >"$root/.venv/install.log" 2>&1); then
            cat "$root/.venv/install.log" >&2
            echo "error: installing credits into .venv failed (log: .venv/install.log)" >&2
            return 1
        fi
        echo "$wanted $extras" >"$stamp"
    fi
}

CREDITS_UV_VERSION=0.13.9

# Installs the project (editable, with its extras) into .venv. uv does it in seconds
# where pip takes a minute or two (CI builds .venv afresh in every clone). uv reads
# none of pip's settings (a mirror, a wheelhouse, no index), so whenever uv cannot be
# installed or fails, pip installs the packages as it always did.
install_into_venv() {
    local spec="$1"
    [ -x .venv/bin/uv ] || .venv/bin/python -m pip install --quiet --disable-pip-version-check \
        --retries 0 --timeout 15 "uv==$CREDITS_UV_VERSION" ||
        echo "note: uv could not be installed; pip installs the packages"
    if [ -x .venv/bin/uv ] && .venv/bin/uv pip install --python .venv/bin/python -e "$spec"; then
        return 0
    fi
    [ -x .venv/bin/uv ] && echo "note: uv could not install the packages; pip installs them"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"
}
