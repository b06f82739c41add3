#!/usr/bin/env bash
# Installs what orrb needs on a fresh Debian/Ubuntu machine, then orrb itself.
#   bash scripts/install.sh          # EGL/Mesa libraries (if missing) + orrb
#   bash scripts/install.sh --test   # the same + everything the tests need (torch CPU, SB3, pytest)
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pkg in libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if [ "${1:-}" = "--test" ]; then
    # torch first: the CPU build of 2.13.0 is on local disk here; asking stable-baselines3 for
    # torch without it would pull a multi-GB CUDA build.
    python -c "import torch" >/dev/null 2>&1 || python -m pip install -q torch==2.13.0
    python -m pip install -q -e ".[test]"
else
    python -m pip install -q .
fi
