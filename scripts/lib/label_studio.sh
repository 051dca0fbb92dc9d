# Sourced by .ci/run: a pinned Label Studio server, for the real-server labelling suite.
# Label Studio's dependencies clash with the platform's, so it lives in a virtual
# environment of its own, outside the repository, and is reused while it holds the
# pinned version (CI on the same machine does not reinstall it every run).
#
# Usage: ensure_label_studio
#   prints the path of the label-studio executable on stdout (progress goes to stderr);
#   returns 1 when it cannot be installed.
#   CREDITS_LABEL_STUDIO_VENV overrides where the environment lives; LABEL_STUDIO_PYTHON,
#   the interpreter it is made with.
LABEL_STUDIO_VERSION="1.23.2"

ensure_label_studio() {
    local version="$LABEL_STUDIO_VERSION"
    local venv="${CREDITS_LABEL_STUDIO_VENV:-$HOME/.cache/credits/label-studio-$version}"
    local stamp="$venv/.credits-label-studio-version"
    local python="" candidate have="" started lock
    mkdir -p "$(dirname "$venv")"
    # One installer at a time per environment: a developer's run and CI may overlap.
    exec {lock}>"$venv.lock"
    flock "$lock"
    [ -f "$stamp" ] && have="$(cat "$stamp")"
    # Reused when it says it holds this version and its interpreter still agrees.
    if [ "$have" = "$version" ] && [ -x "$venv/bin/label-studio" ] &&
        "$venv/bin/python" -c 'import sys
from importlib.metadata import version
sys.exit(version("label-studio") != sys.argv[1])' "$version" 2>/dev/null; then
        flock -u "$lock"
        exec {lock}>&-
        echo "$venv/bin/label-studio"
        return 0
    fi
    python="${LABEL_STUDIO_PYTHON:-}"
    if [ -z "$python" ]; then
        # Label Studio needs 3.10 or newer; the versions its dependencies have wheels for first.
        for candidate in python3.12 python3.11 python3.13 python3; do
            if command -v "$candidate" >/dev/null 2>&1 &&
                "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
                python="$candidate"
                break
            fi
        done
    fi
    if [ -z "$python" ]; then
        echo "error: Label Studio $version needs Python 3.10 or newer (set LABEL_STUDIO_PYTHON)" >&2
        flock -u "$lock"
        exec {lock}>&-
        return 1
    fi
    started="$(date +%s)"
    echo "installing label-studio==$version into $venv (about 1 GB, a few minutes)" >&2
    rm -rf "$venv"
    if ! { "$python" -m venv "$venv" &&
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            "label-studio==$version" >"$venv.install.log" 2>&1; }; then
        tail -n 30 "$venv.install.log" >&2
        echo "error: installing label-studio==$version failed (log: $venv.install.log)" >&2
        flock -u "$lock"
        exec {lock}>&-
        return 1
    fi
    echo "$version" >"$stamp"
    echo "installed label-studio==$version in $(($(date +%s) - started)) s" >&2
    flock -u "$lock"
    exec {lock}>&-
    echo "$venv/bin/label-studio"
}
