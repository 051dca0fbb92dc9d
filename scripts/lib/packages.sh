# Sourced by scripts/up and .ci/run: Debian packages the platform uses at run time.
# Usage: ensure_debian_package COMMAND PACKAGE WHY
#   installs PACKAGE with apt-get when COMMAND is missing and this runs as root;
#   otherwise says how to install it. Returns 1 when COMMAND is still missing.
ensure_debian_package() {
    local command="$1" package="$2" why="$3"
    command -v "$command" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing $package ($why)" >&2
        apt-get install -y -q "$package" >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$package" >/dev/null 2>&1; } ||
            true
    fi
    if ! command -v "$command" >/dev/null 2>&1; then
        echo "note: $command is not installed ($why): install the $package package" >&2
        return 1
    fi
}
