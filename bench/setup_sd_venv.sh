#!/usr/bin/env bash
# Create bench/.sd-venv: SAEDashboard 0.8.0 with the local CPU torch wheel, plus this project
# (no deps) so bench/sd_runner.py can load the demo model directory.
# Usage: bash bench/setup_sd_venv.sh   (idempotent; compare_saedashboard.py runs it on first use)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/bench/.sd-venv"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
pip="$venv/bin/pip"
"$pip" install --quiet --upgrade pip
"$pip" install --quiet torch==2.13.0            # resolves to the local CPU wheel
constraints="$(mktemp)"
printf 'torch==2.13.0\npyarrow<22\n' > "$constraints"
"$pip" install --quiet sae-dashboard==0.8.0 -c "$constraints"
rm -f "$constraints"
"$pip" uninstall -y torchvision torchaudio >/dev/null 2>&1 || true   # no CPU builds of them here
"$pip" install --quiet --no-deps -e "$root"
"$venv/bin/python" - <<'PY'
from importlib import metadata
for name in ("sae-dashboard", "torch", "transformer-lens", "sae-lens", "transformers"):
    try:
        print(f"{name}=={metadata.version(name)}")
    except metadata.PackageNotFoundError:
        print(f"{name}: not installed")
PY
touch "$venv/.ready"
