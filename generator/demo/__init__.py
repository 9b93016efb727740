"""The embedded demo: a tiny code model and a TopK SAE on it, trained on the Python standard
library by `generator.demo.train` and committed beside this file:

    model/          the language model, in the model-folder format (generator/inputs/model_folder.py)
    sae/            the sae_lens SAE (cfg.json + sae_weights.safetensors)
    prompts.jsonl   the prompt view's prompts for a demo build
    metrics.json    the trained artifacts' evaluation on held-out sequences

This module only names those paths, so that loading the demo imports nothing heavy.
"""

from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent
DEMO_MODEL_DIR = DEMO_DIR / "model"
DEMO_SAE_DIR = DEMO_DIR / "sae"
DEMO_PROMPTS = DEMO_DIR / "prompts.jsonl"
DEMO_MODEL_NAME = "feature-browser-demo"
