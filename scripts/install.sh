#!/usr/bin/env bash
# Set up .venv for feature-browser on a fresh machine. `--test` adds what the test suite needs:
# Debian's Chromium + CJK/emoji fonts (apt-get) and the test extras (pytest, playwright, ruff, mypy).
# torch 2.13.0 is installed first and on its own, so pip takes the local CPU wheel instead of
# resolving a multi-GB CUDA build for the project's "torch" requirement.
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
[[ "${1:-}" == "--test" ]] && with_tests=1

if (( with_tests )) && [[ ! -x /usr/lib/chromium/chromium ]]; then
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        chromium fonts-noto-cjk fonts-noto-color-emoji >/dev/null
fi

[[ -x .venv/bin/python ]] || python3 -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored" >&2); }
pip install "torch==2.13.0"
if (( with_tests )); then
    pip install -e ".[test]"
else
    pip install .
fi
echo "feature-browser installed in .venv"
