"""What loading a model by name costs now (its snapshot loaded as a checkpoint folder, raw
activations) against the old path (TransformerLens' `from_pretrained`, weights processed), on a
GPT-2-small-shaped random checkpoint in a Hugging Face cache of its own, offline.

    python bench/model_load.py              # 3 runs of each, alternating, in fresh interpreters

Each run is a fresh interpreter (imports included, as a build pays them), loading 'gpt2' on CPU.
Prints each path's median wall time and the ratio. The rest of a build is the same code on the same
HookedTransformer either way, so this is the whole difference in build time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OLD = """
import time; t = time.perf_counter()
from transformer_lens import HookedTransformer
model = HookedTransformer.from_pretrained("gpt2", device="cpu")
print(time.perf_counter() - t)
"""
NEW = """
import time; t = time.perf_counter()
from generator.inputs.models import load_model
model = load_model("gpt2", "cpu")
print(time.perf_counter() - t)
"""


def make_cache(hf_home: Path) -> None:
    """A GPT-2-small-shaped random checkpoint (124M parameters) stored as the hub's 'gpt2'."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    from tests.hubcache import write_repo

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        GPT2LMHeadModel(GPT2Config()).save_pretrained(folder)
        vocab = {f"t{i}": i for i in range(50257)}
        (folder / "vocab.json").write_text(json.dumps(vocab))
        (folder / "merges.txt").write_text("#version: 0.2\n")
        GPT2TokenizerFast(vocab_file=str(folder / "vocab.json"),
                          merges_file=str(folder / "merges.txt")).save_pretrained(folder)
        config = json.loads((folder / "config.json").read_text())
        config["n_ctx"] = config["n_positions"]  # as in the hub's gpt2/config.json
        (folder / "config.json").write_text(json.dumps(config))
        write_repo(hf_home / "hub", "gpt2", {p.name: p.read_bytes() for p in folder.iterdir()
                                             if p.is_file()})


def timed(code: str, hf_home: Path) -> float:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "TRANSFORMERS_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="fb-load-") as tmp:
        hf_home = Path(tmp)
        make_cache(hf_home)
        old, new = [], []
        for _ in range(args.repeat):  # alternating, so that drift on a shared machine hits both
            old.append(timed(OLD, hf_home))
            new.append(timed(NEW, hf_home))
    mo, mn = statistics.median(old), statistics.median(new)
    print(f"old (from_pretrained, processed): {[round(t, 2) for t in old]} median {mo:.2f} s")
    print(f"new (snapshot as checkpoint, raw): {[round(t, 2) for t in new]} median {mn:.2f} s")
    print(f"new / old: {mn / mo:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
