"""feature-browser: a static-site browser for sparse autoencoder latents.

Pipeline stages, one module each: corpus -> activations -> statistics -> store -> render.
Importing this package is cheap: torch and sae_lens are imported only by the stages that need them.
"""

__version__ = "0.1.0"
