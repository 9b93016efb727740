#!/usr/bin/env bash
# Byte-identity check for refactors: builds the outputs a change must not alter and prints one
# sha256 per output (over every file's relative path and content), plus a file list per output
# under $OUT/ for diffing two runs.
#
#   bash bench/identity.sh OUT_DIR [PYTHON]
#
# 1. README command 1 (`feature-browser build`, the embedded demo), SOURCE_DATE_EPOCH pinned;
# 2. a `--prompts` build (hostile prompts file, 64 sequences, no ablation);
# 3. a `--compact` render of the store from 1.
# Run it at two commits from the same folder (paths recorded in the store stay the same) and
# compare the printed hashes.
set -euo pipefail
out=$(realpath -m "${1:?usage: bench/identity.sh OUT_DIR [PYTHON]}")
python=${2:-.venv/bin/python}
export SOURCE_DATE_EPOCH=1700000000 PYTHONHASHSEED=0
mkdir -p "$out"
rm -rf "$out/site" "$out/store" "$out/psite" "$out/pstore" "$out/csite"
cat > "$out/prompts.txt" <<'EOF'
def __init__(self, name):
    return "</script><img src=x onerror=alert(1)>"
import os, sys  # a comment with ünïcödé and שלום and 🙂
EOF
fb() { "$python" -m generator.cli "$@"; }
fb build --out "$out/site" --store "$out/store" >"$out/build.log" 2>&1
fb build --prompts "$out/prompts.txt" --n-seqs 64 --no-ablation --out "$out/psite" \
   --store "$out/pstore" >"$out/pbuild.log" 2>&1
fb render --compact --store "$out/store" --out "$out/csite" >"$out/render.log" 2>&1
for part in site store psite pstore csite; do
    (cd "$out/$part" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$out/$part.sha256"
    echo "$part $(sha256sum <"$out/$part.sha256" | cut -c1-16) $(wc -l <"$out/$part.sha256") files"
done
