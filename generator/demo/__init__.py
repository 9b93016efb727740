"""The embedded demo: a tiny code model and a TopK SAE on it, trained on the Python standard
library by `generator.demo.train`:

    artifacts/          what the training writes (and replaces as a whole when run again):
        model/          the language model, in the model-folder format
                        (generator/inputs/model_folder.py)
        sae/            the sae_lens SAE (cfg.json + sae_weights.safetensors)
        metrics.json    the trained artifacts' evaluation on held-out sequences
    prompts.jsonl       the prompt view's prompts for a demo build (not trained: kept apart)

This module only names those paths, so that loading the demo imports nothing heavy.
"""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEMO_DIR = PACKAGE_DIR / "artifacts"
"""the training's output folder: `feature-browser demo-train` replaces it whole, so it holds
nothing else (the package's code and the prompts stay beside it)."""
DEMO_MODEL_DIR = DEMO_DIR / "model"
DEMO_SAE_DIR = DEMO_DIR / "sae"
DEMO_PROMPTS = PACKAGE_DIR / "prompts.jsonl"
DEMO_MODEL_NAME = "feature-browser-demo"
