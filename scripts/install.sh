#!/usr/bin/env bash
# Sets up orrb from this checkout on a Debian/Ubuntu machine (other Linux: see step 1).
#
#   bash scripts/install.sh          # GL libraries (if missing) + orrb
#   bash scripts/install.sh --test   # the same + what the tests need (torch 2.13.0, SB3, Gymnasium's MuJoCo envs, pytest)
#
# 1. System libraries: MuJoCo renders without a display through EGL (libEGL, Mesa). Missing
#    Debian packages are installed with apt-get (as root, or with sudo); where that is not
#    possible the script prints the apt-get line to run and stops (exit 1).
# 2. Python environment: the active virtual environment or conda env, as it is; otherwise the
#    virtual environment .venv of this checkout (created with python3, or reused). Either way
#    .venv/bin/ afterwards holds this environment's python and orrb (an active environment
#    elsewhere is linked as .venv), so `.venv/bin/orrb demo` works in both cases.
# 3. orrb and its dependencies, with pip, into that environment.
#
# Environment: ORRB_VENV_OPTIONS adds options to `python3 -m venv` when .venv is created
# (e.g. --system-site-packages, to reuse packages installed for the system's Python);
# ORRB_TORCH_INDEX is an index to take torch 2.13.0 from with --test (default: pip's own
# configuration; PyTorch's CPU-only index avoids the multi-GB CUDA build).
set -euo pipefail
script="$(cd "$(dirname "$0")" && pwd)/${0##*/}"
cd "$(dirname "$script")/.."

say() { echo "install.sh: $*"; }
fail() { echo "install.sh: $*" >&2; exit 1; }

test_extras=0
for arg in "$@"; do
    case "$arg" in
        --test) test_extras=1 ;;
        -h|--help) sed -n '2,19p' "$script" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) fail "unknown option '$arg' (expected --test or --help)" ;;
    esac
done

# -- the Python environment: the active one, else .venv ----------------------------------------
active=""
if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "${VIRTUAL_ENV}/bin/python" ]; then
    active="$VIRTUAL_ENV"
elif [ -n "${CONDA_PREFIX:-}" ] && [ -x "${CONDA_PREFIX}/bin/python" ]; then
    active="$CONDA_PREFIX"
fi

# a python3 (or python) >= 3.10 to create .venv with; old_python: one that is too old
find_base_python() {
    base_python="" old_python=""
    for candidate in python3 python; do
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
            base_python="$(command -v "$candidate")"
            return
        fi
        [ -n "$old_python" ] || old_python="$("$candidate" -c 'import sys; print(sys.executable, "%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
    done
}
base_python="" old_python=""
if [ -z "$active" ] && [ ! -x .venv/bin/python ]; then
    find_base_python
    if [ -z "$base_python" ] && [ -n "$old_python" ]; then
        fail "orrb needs Python 3.10 or newer; the python3 here is ${old_python#* } (${old_python% *}): install a newer Python (or activate a virtual environment or conda env that has one) and rerun"
    fi
fi

# -- 1. system libraries ---------------------------------------------------------------------
packages=(libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri)
if [ -z "$active" ] && [ ! -x .venv/bin/python ]; then
    if [ -z "$base_python" ]; then
        packages+=(python3 python3-venv)
    elif ! "$base_python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        packages+=(python3-venv)   # Debian ships venv's pip bootstrap separately
    fi
fi
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
    for pkg in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
else
    say "no dpkg here (not Debian/Ubuntu): make sure libEGL and Mesa's EGL driver are installed"
fi
if [ "${#missing[@]}" -gt 0 ]; then
    line="apt-get install -y ${missing[*]}"
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
        say "installing Debian packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then
        say "installing Debian packages with sudo: ${missing[*]}"
        if ! { sudo apt-get update -qq && sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
            echo "install.sh: could not install the Debian packages with sudo; run this, then this script again:" >&2
            echo "sudo $line" >&2
            exit 1
        fi
    else
        echo "install.sh: missing Debian packages and no way to install them here (apt-get as root or with sudo); run this, then this script again:" >&2
        if [ "$(id -u)" -eq 0 ]; then echo "$line" >&2; else echo "sudo $line" >&2; fi
        exit 1
    fi
fi

if [ -z "$active" ] && [ ! -x .venv/bin/python ] && [ -z "$base_python" ]; then
    find_base_python   # python3 may have come with the packages just installed
fi

# -- 2. the environment ------------------------------------------------------------------------
if [ -L .venv ] && [ ! -e .venv ]; then
    rm .venv   # a link to an environment that is gone
fi
if [ -n "$active" ]; then
    if [ -L .venv ] || [ ! -e .venv ]; then
        ln -sfn "$active" .venv
        where="the active environment $active (linked as .venv)"
    elif [ "$(cd .venv && pwd -P)" = "$(cd "$active" && pwd -P)" ]; then
        where="the active environment .venv"
    else
        fail "an environment is active ($active) and this checkout has another one in .venv: deactivate it to use .venv, or remove .venv to install into $active"
    fi
elif [ -x .venv/bin/python ]; then
    where="the existing virtual environment .venv"
else
    [ -n "$base_python" ] || fail "no python3 >= 3.10 found: install Python 3.10 or newer (sudo apt-get install -y python3 python3-venv)"
    say "creating the virtual environment .venv with $base_python"
    # shellcheck disable=SC2086  # ORRB_VENV_OPTIONS holds several options
    "$base_python" -m venv ${ORRB_VENV_OPTIONS:-} .venv
    where="the new virtual environment .venv"
fi
py=.venv/bin/python
[ -x "$py" ] || fail "$py is missing: the environment in .venv is broken; remove .venv and rerun"

# -- 3. orrb -----------------------------------------------------------------------------------
say "installing orrb into $where"
if ! "$py" -m pip --version >/dev/null 2>&1; then   # environments made without pip (uv venv, --without-pip)
    "$py" -m ensurepip --upgrade >/dev/null 2>&1 \
        || fail "$where has no pip and ensurepip cannot add it: install pip there ('$py -m ensurepip', or 'uv pip install -e .' with uv), then rerun"
fi
"$py" -m pip install -q "pip>=21.3"   # editable installs of a pyproject.toml project (PEP 660)
# editable (-e): the checkout is the installed code, so edits and `git pull` need no reinstall
if [ "$test_extras" -eq 1 ]; then
    # torch first: stable-baselines3 asking pip for torch would pull the CUDA build (several
    # GB). torch==2.13.0 is the CPU build where a machine keeps that wheel on disk (pip's own
    # configuration counts); ORRB_TORCH_INDEX=URL takes torch from another index, such as
    # PyTorch's CPU-only one.
    if ! "$py" -c "import torch" >/dev/null 2>&1; then
        if [ -n "${ORRB_TORCH_INDEX:-}" ]; then
            say "installing torch from $ORRB_TORCH_INDEX"
            "$py" -m pip install -q torch==2.13.0 --index-url "$ORRB_TORCH_INDEX"
        else
            say "installing torch==2.13.0"
            "$py" -m pip install -q torch==2.13.0
        fi
    fi
    "$py" -m pip install -q -e ".[test]"
else
    "$py" -m pip install -q -e .
fi
say "done: orrb is in $where; next: .venv/bin/orrb demo"
