"""feature-browser: a static-site browser for sparse autoencoder latents.

A folder per pipeline stage: inputs -> compute -> store -> site, orchestrated by run (docs/
ARCHITECTURE.md). Importing this package is cheap: torch and sae_lens are imported only by the
stages that need them.
"""

__version__ = "0.1.0"
