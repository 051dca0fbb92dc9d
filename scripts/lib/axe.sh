# Sourced by scripts/test: axe-core, for the browser tests' accessibility pass, from the
# npm registry at the version pinned in tests/browser/axe/package-lock.json. It is
# installed once per lock file (npm ci into a cache folder outside the repository) and
# reused while the lock is unchanged.
#
# Usage: ensure_axe
#   prints the path of axe.min.js on stdout (progress goes to stderr); returns 1 when
#   it cannot be installed (no npm, no registry). CREDITS_AXE_CACHE overrides the
#   cache folder (default ~/.cache/credits).
ensure_axe() {
    local source_dir lock digest dir script lock_fd
    source_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../tests/browser/axe" && pwd)"
    lock="$source_dir/package-lock.json"
    digest="$(sha256sum "$lock" | cut -c1-16)"
    dir="${CREDITS_AXE_CACHE:-$HOME/.cache/credits}/axe-$digest"
    script="$dir/node_modules/axe-core/axe.min.js"
    if [ -f "$script" ]; then
        echo "$script"
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        echo "note: npm is not installed, so axe-core is not (the accessibility tests need it):" \
            "install the npm package" >&2
        return 1
    fi
    mkdir -p "$dir"
    # One installer at a time per lock: a developer's run and CI may overlap.
    exec {lock_fd}>"$dir.lock"
    flock "$lock_fd"
    if [ ! -f "$script" ]; then
        echo "installing axe-core into $dir (npm ci)" >&2
        cp "$source_dir/package.json" "$lock" "$dir/"
        if ! npm ci --prefix "$dir" --ignore-scripts --no-audit --no-fund >"$dir.install.log" 2>&1; then
            tail -n 20 "$dir.install.log" >&2
            echo "error: npm ci of axe-core failed (log: $dir.install.log)" >&2
            flock -u "$lock_fd"
            exec {lock_fd}>&-
            return 1
        fi
    fi
    flock -u "$lock_fd"
    exec {lock_fd}>&-
    echo "$script"
}
