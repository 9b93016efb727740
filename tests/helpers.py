"""Shared test helpers: tiny real models for the engine tests (a TransformerLens model and
sae_lens SAEs built from config on CPU with fixed seeds, no downloads), a folder's digest, and
the one-line error check of the CLI."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import IO

import numpy as np
import torch

BOS = 0
SAE_KINDS = ("standard", "topk", "jumprelu", "gated", "matching_pursuit", "temporal")
HOOKS = {
    "blocks.1.hook_resid_pre": 16,
    "blocks.0.hook_attn_out": 16,
    "blocks.1.hook_mlp_out": 16,
    "blocks.0.mlp.hook_post": 32,
    "blocks.1.attn.hook_z": 16,
    "blocks.1.hook_mlp_in": 16,
    "hook_embed": 16,
}
SAE_CASES = [(kind, hook) for kind in SAE_KINDS for hook in HOOKS
             if not (kind == "temporal" and hook.endswith("hook_z"))]
"""(SAE kind, hook) pairs the engine supports (a temporal SAE on hook_z is refused: test_sites)."""
TRANSCODER_KINDS = ("transcoder", "skip_transcoder", "jumprelu_transcoder",
                    "jumprelu_skip_transcoder")
TRANSCODER_HOOKS = [("blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out"),
                    ("blocks.0.hook_mlp_in", "blocks.0.hook_mlp_out"),
                    ("blocks.0.hook_resid_mid", "blocks.1.hook_attn_out")]
"""(read, write) pairs: the registry's two transcoder inputs, and one writing a later block."""


def tiny_model(seed: int = 0):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32,
                                  n_ctx=16, d_vocab=50, act_fn="gelu", normalization_type="LN",
                                  seed=seed, device="cpu")
    model = HookedTransformer(cfg)
    model.eval()
    return model


def tiny_sae(kind: str, hook: str, d_sae: int = 24, seed: int = 0):
    import sae_lens

    torch.manual_seed(seed)
    classes = {"standard": (sae_lens.StandardSAE, sae_lens.StandardSAEConfig, {}),
               "topk": (sae_lens.TopKSAE, sae_lens.TopKSAEConfig, {"k": 4}),
               "jumprelu": (sae_lens.JumpReLUSAE, sae_lens.JumpReLUSAEConfig, {}),
               "gated": (sae_lens.GatedSAE, sae_lens.GatedSAEConfig, {}),
               "matching_pursuit": (sae_lens.MatchingPursuitSAE, sae_lens.MatchingPursuitSAEConfig,
                                    {"residual_threshold": 0.5, "max_iterations": 4}),
               # attention over the context (d_sae even: 2 heads), top-4 codes
               "temporal": (sae_lens.TemporalSAE, sae_lens.TemporalSAEConfig,
                            {"n_heads": 2, "bottleneck_factor": 1, "sae_diff_type": "topk",
                             "kval_topk": 4, "tied_weights": False})}
    sae_cls, cfg_cls, extra = classes[kind]
    cfg = cfg_cls(d_in=HOOKS[hook], d_sae=d_sae,
                  reshape_activations="hook_z" if hook.endswith("hook_z") else "none", **extra)
    cfg.metadata.hook_name = hook
    return _randomised(sae_cls(cfg))


def _randomised(sae):
    """`sae` with random biases, a small JumpReLU threshold and (a skip transcoder's) a small
    random skip matrix, so that latents fire and every term of its output is exercised."""
    with torch.no_grad():
        for name, p in sae.named_parameters():
            if name.startswith("b_"):
                p.normal_(0, 0.3)
            if name == "threshold":
                p.fill_(0.05)
            if name == "W_skip":
                p.normal_(0, 0.1)
    sae.eval()
    return sae


def tiny_transcoder(kind: str, read: str, write: str, d_sae: int = 24, seed: int = 0):
    """A random sae_lens transcoder of architecture `kind` on the tiny model, reading hook `read`
    and writing `write` (see _randomised)."""
    import sae_lens

    torch.manual_seed(seed)
    classes = {"transcoder": (sae_lens.Transcoder, sae_lens.TranscoderConfig),
               "skip_transcoder": (sae_lens.SkipTranscoder, sae_lens.SkipTranscoderConfig),
               "jumprelu_transcoder": (sae_lens.JumpReLUTranscoder,
                                       sae_lens.JumpReLUTranscoderConfig),
               "jumprelu_skip_transcoder": (sae_lens.JumpReLUSkipTranscoder,
                                            sae_lens.JumpReLUSkipTranscoderConfig)}
    sae_cls, cfg_cls = classes[kind]
    cfg = cfg_cls(d_in=16, d_out=16, d_sae=d_sae, apply_b_dec_to_input=False)
    cfg.metadata.hook_name = read
    cfg.metadata.hook_name_out = write
    return _randomised(sae_cls(cfg))


def cached(model, tokens, hooks):
    """A plain TransformerLens run_with_cache of `hooks` (a name or a list), as a user would
    write it: hook_mlp_in is only called once the model is told to (set_use_hook_mlp_in)."""
    names = [hooks] if isinstance(hooks, str) else list(hooks)
    if any(name.endswith(".hook_mlp_in") for name in names):
        model.set_use_hook_mlp_in(True)
    with torch.no_grad():
        return model.run_with_cache(tokens, names_filter=names)[1]


def tiny_tokens(n_seqs: int = 10, ctx: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, 50, size=(n_seqs, ctx)).astype(np.int32)
    tokens[:, 0] = BOS
    tokens[rng.random((n_seqs, ctx)) < 0.08] = BOS
    return tokens


CASES = [("standard", "blocks.1.hook_resid_pre"), ("topk", "blocks.0.hook_attn_out"),
         ("jumprelu", "blocks.1.hook_mlp_out"), ("gated", "blocks.0.mlp.hook_post"),
         ("standard", "blocks.1.attn.hook_z"), ("temporal", "blocks.1.hook_resid_pre")]
"""(SAE architecture, hook) pairs covering every architecture and hook kind the tool reads."""


def blob_of(page: str) -> dict:
    """The data blob of a prompt or corpus page (generator/site/views.py)."""
    import json
    import re

    raw = re.search(r"<script type=application/json id=fb-prompt>(.*?)</script>", page, re.S)
    assert raw is not None
    return json.loads(raw.group(1))


def r3(x: float) -> float:
    """A number as the pages round it: 3 significant digits."""
    return float(f"{float(x):.3g}")


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("feature-browser: error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


class Lines:
    """A running process's output, read line by line in a thread: a test waits for a line (a
    readiness signal such as a stage's log line) instead of sleeping, and reads the whole text
    once the process is done."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._new = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._new:
                self.lines.append(line)
                self._new.notify_all()
        with self._new:
            self.lines.append("")  # end of output
            self._new.notify_all()

    def wait_for(self, prefix: str, timeout: float) -> bool:
        """True once a line starts with `prefix`; False at the end of the output or the time-out."""
        def seen() -> bool:
            return any(line.startswith(prefix) for line in self.lines) or (
                bool(self.lines) and self.lines[-1] == "")
        with self._new:
            self._new.wait_for(seen, timeout)
            return any(line.startswith(prefix) for line in self.lines)

    def text(self, timeout: float = 60) -> str:
        """Everything the process wrote (call after it ended)."""
        self._thread.join(timeout)
        return "".join(self.lines)


def reseal(store: Path) -> None:
    """Record the store's files as they are now in meta.json's checksums, so that a test that
    damages a file on purpose reaches the reader's own checks behind the checksum check."""
    import orjson

    from generator.store.io import file_sha256

    meta = orjson.loads((store / "meta.json").read_bytes())
    meta["files"] = {name: file_sha256(store / name) for name in meta["files"]}
    (store / "meta.json").write_bytes(orjson.dumps(meta, option=orjson.OPT_SORT_KEYS))


TINY = ["--n-seqs", "16", "--ctx", "32", "--k", "4", "--m", "2", "--no-ablation", "--quiet"]
"""a demo build's options that make it take seconds."""


def digests(*folders: Path) -> list[dict[str, str]]:
    return [tree_digest(f) for f in folders]


def hidden_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))
