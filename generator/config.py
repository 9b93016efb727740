"""The build configuration: one frozen dataclass, documented field by field.

The CLI is generated from these fields (see cli.py), and the config is passed down explicitly to
every stage. `None` for model / sae / corpus means "use the embedded demo".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from generator.errors import UserError

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _opt(help: str, **kw: Any) -> Any:
    return field(metadata={"help": help, **kw.pop("meta", {})}, **kw)


@dataclass(frozen=True)
class BuildConfig:
    model: str | None = _opt(
        "TransformerLens model name or local model directory (default: embedded demo model)",
        default=None,
    )
    sae: str | None = _opt(
        "sae_lens 'release/id' or local sae_lens directory with cfg.json + sae_weights.safetensors "
        "(default: embedded demo SAE)",
        default=None,
    )
    corpus: str | None = _opt(
        "corpus: .txt, .jsonl (text field), .parquet (text or tokens column), a folder of them, or a "
        "Hugging Face dataset name when online (default: the Python standard library's sources)",
        default=None,
    )
    text_field: str | None = _opt(
        "the text field of a .jsonl / column of a .parquet corpus (or a hub dataset) "
        "(default: text; for parquet tokens, input_ids, text, content, the first present)",
        default=None,
    )
    out: Path = _opt("output folder for the site", default=Path("site"))
    store: Path = _opt("folder for the data store (parquet + json)", default=Path("store"))
    n_seqs: int = _opt("number of sequences to analyse", default=2048)
    ctx: int = _opt("tokens per sequence, BOS included", default=128)
    one_doc_per_seq: bool = _opt(
        "each sequence is BOS + the first ctx-1 tokens of one document, padded with BOS "
        "(excluded everywhere), instead of documents concatenated with BOS between them and cut "
        "into sequences (default: concatenated: every token is used, as sae_lens trains)",
        default=False,
    )
    max_norm_multiple: float = _opt(
        "exclude from every statistic the positions whose activation norm at the SAE's hook is "
        "over this multiple of the median of their sequence (attention sinks: Gemma's, Qwen's "
        "first tokens); 0 keeps every non-BOS position",
        default=10.0,
    )
    """An ordinary token's norm lies within a few times the median; a sink's is tens to hundreds
    of times it. Excluded positions count nowhere (density, examples, ablation, quality), like
    BOS; the index says how many there were (StoreMeta.n_high_norm)."""
    batch_size: int = _opt("sequences per forward pass (0 = choose from free memory)", default=0)
    device: str = _opt("torch device: auto, cpu, cuda, cuda:1, ...", default="auto")
    dtype: str = _opt(
        "the model's weights and activations: float32 (exact), or bfloat16 / float16 (half the "
        "memory: Gemma 3 27B or Qwen 3 30B-A3B on one 80 GB GPU; numbers then differ at that "
        "precision). The SAE keeps its own dtype",
        default="float32",
    )
    k: int = _opt("top examples per latent", default=20)
    n_bins: int = _opt("activation histogram bins", default=50)
    n_intervals: int = _opt("interval-sample intervals", default=10)
    m: int = _opt("sequences sampled per interval", default=5)
    seed: int = _opt("seed for interval sampling and corpus selection", default=0)
    n_logits: int = _opt("top positive/negative logit tokens shown", default=10)
    logit_bins: int = _opt("bins of the logit-effect histogram", default=50)
    ablation: bool = _opt("compute per-token ablation (Δloss) for shown examples (the prompt view "
                          "ablates the latents active on its prompts either way)", default=True)
    explanations: Path | None = _opt(
        "explanations to show: our jsonl, a Neuronpedia export or a delphi run folder",
        default=None)
    explain_endpoint: str | None = _opt(
        "after the build, label the latents with the chat model at this OpenAI-compatible API "
        "base URL (with --explain-model; the options of `feature-browser explain` at their "
        "defaults), then render with the labels", default=None)
    explain_model: str | None = _opt("the chat model for --explain-endpoint", default=None)
    prompts: Path | None = _opt(
        "prompts for the prompt view: .txt (one prompt per line) or .jsonl (a \"text\" field "
        "per line); each gets a page prompts/<n>.html with every token's top latents and their "
        "ablation Δloss (default: the demo's prompts with the demo model, else none)",
        default=None,
    )
    """Read and checked in validate(), before anything is loaded; computed by
    generator/compute/promptview.py (the definitions and the memory formula are in its docstring)."""
    corpus_view: bool = _opt(
        "give every sequence the site shows as an example a page corpus/<seq>.html, like a "
        "prompt's: each token's most active latents, and the latents most active over the "
        "sequence (about 30 KB per sequence; default: on; off with --compact)",
        default=True,
    )
    """Computed by generator/compute/corpusview.py after the statistics (one more forward pass over the
    kept sequences, no ablation)."""
    compact: bool = _opt(
        "ship less per latent so that 131,072 latents fit GitHub Pages' 1 GB: top 10 examples, "
        "1 sample per interval, shorter windows, 5 logit tokens, no embed files, no corpus view "
        "(README, Site size)",
        default=False,
    )
    packed: bool | None = _opt(
        "write the packed site: one viewer page (latent.html#<id>) drawing any latent from "
        "compressed shards, for SAEs whose page-per-latent site would not fit GitHub Pages' 1 GB; "
        "served over HTTP (GitHub Pages, feature-browser serve), not from file:// (default: "
        "chosen by width, above 66,666 latents or 131,578 with --compact)",
        default=None,
    )
    """generator/site/packed.py; None: render_site decides (and logs it)."""
    site_url: str | None = _opt(
        "the site's public address, e.g. https://user.github.io/repo/: pages then carry og:url, a "
        "canonical link and a 1200x630 link-card image (cards/<id>.png) as absolute URLs "
        "(default: none, and nothing absolute is written)",
        default=None,
    )
    """With it, link previews (Slack, X, blogs) show a card per latent; see docs/PUBLISHING.md."""
    nproc: int = _opt(
        "processes on this machine, each with a share of the sequences (one per GPU; gloo on "
        "CPU); the result is byte-identical to one process. Several machines: torchrun (README)",
        default=1,
    )
    checkpoint_minutes: float = _opt(
        "minutes between checkpoints (beside the store, in .STORE.checkpoint/): a build killed "
        "and started again with the same arguments resumes from the last one; 0 = after every "
        "batch",
        default=5.0,
    )
    quiet: bool = _opt("no progress bars", default=False)

    def validate(self) -> None:
        """Refuse option values that cannot work, with the fix, before anything is loaded (a
        negative batch size would loop forever, a zero bin count divide by zero hours later)."""
        minimum = {"n_seqs": 1, "ctx": 2, "batch_size": 0, "k": 1, "n_bins": 1, "n_intervals": 1,
                   "m": 1, "seed": 0, "n_logits": 1, "logit_bins": 1, "nproc": 1,
                   "checkpoint_minutes": 0, "max_norm_multiple": 0}
        helps = {f.name: f.metadata["help"] for f in fields(self)}
        for name, low in minimum.items():
            value = getattr(self, name)
            flag = "--" + name.replace("_", "-")
            if not value >= low:  # NaN too
                raise UserError(f"{flag} {value} is out of range ({helps[name]}); pass {flag} {low} "
                                "or more")
            if value > MAXIMUM.get(name, float("inf")):
                raise UserError(f"{flag} {value} is more than this tool shows or can hold "
                                f"({helps[name]}: at most {MAXIMUM[name]:,}, {WHY_MAXIMUM[name]}); "
                                f"pass {flag} {MAXIMUM[name]} or less")
        if self.dtype not in DTYPES:
            raise UserError(f"--dtype {self.dtype} is not one of {', '.join(DTYPES)}; pass "
                            "--dtype float32 (the default) or bfloat16")
        if 0 < self.max_norm_multiple <= 1:
            raise UserError(f"--max-norm-multiple {self.max_norm_multiple} would exclude at "
                            "least half of every sequence's positions; pass 0 (off) or a multiple "
                            "over 1 (default 10)")
        if self.n_intervals * self.m > MAXIMUM["k"]:
            raise UserError(f"--n-intervals {self.n_intervals} x --m {self.m} = "
                            f"{self.n_intervals * self.m:,} interval samples per latent, more than "
                            f"the {MAXIMUM['k']:,} the examples stage holds; pass fewer")
        if self.site_url is not None:
            check_site_url(self.site_url)
        if (self.explain_endpoint is None) != (self.explain_model is None):
            raise UserError("--explain-endpoint and --explain-model go together; pass both (or "
                            "neither)")
        if self.explain_endpoint is not None:
            check_endpoint(self.explain_endpoint, "--explain-endpoint")
        self._check_input_paths()
        if self.prompts is not None:
            from generator.inputs.prompts import read_prompts

            read_prompts(self.prompts)
        if not _DEVICE.match(self.device):
            raise UserError(f"--device {self.device} is not a device this tool runs on; use auto, "
                            "cpu, cuda, cuda:N or mps")

    def _check_input_paths(self) -> None:
        """A FIFO, a device or a symbolic link loop given as an input: named in one line now,
        not read (which may block or never end) or called missing after the model loads."""
        from generator.inputs.paths import check_input_path

        for flag, value in (("--model", self.model), ("--sae", self.sae),
                            ("--corpus", self.corpus), ("--explanations", self.explanations)):
            if value is not None:
                check_input_path(flag, Path(value), "pass a regular file or folder")

    def settings(self) -> dict[str, Any]:
        """The statistics settings recorded in the store (everything that changes the numbers)."""
        keys = ("n_seqs", "ctx", "k", "n_bins", "n_intervals", "m", "seed", "n_logits",
                "logit_bins", "ablation", "one_doc_per_seq", "max_norm_multiple", "dtype")
        return {key: getattr(self, key) for key in keys}


DTYPES = ("float32", "bfloat16", "float16")
"""--dtype's choices: the model's weights and activations."""

MAXIMUM = {"k": 1_000, "n_bins": 1_000, "logit_bins": 1_000, "n_logits": 1_000,
           "n_intervals": 1_000, "m": 1_000, "ctx": 1_048_576, "nproc": 1_024,
           "checkpoint_minutes": 10_000}
"""option ceilings, checked before anything is loaded: memory or disk grows with each (a latent's
examples hold k x ctx tokens; the histograms d_sae x n_bins counts, 8 GB at 1,000,000 bins on
1,024 latents), and nothing on a page shows more than these."""
WHY_MAXIMUM = {
    "k": "the examples' memory is d_sae x k x ctx x 4 bytes",
    "n_bins": "the histograms hold d_sae x n_bins counts",
    "logit_bins": "a histogram of more bins shows nothing more",
    "n_logits": "a page lists that many tokens",
    "n_intervals": "the examples' memory grows with n_intervals x m",
    "m": "the examples' memory grows with n_intervals x m",
    "ctx": "no model reads longer sequences",
    "nproc": "one process per CPU core or GPU",
    "checkpoint_minutes": "a week",
}


def check_site_url(url: str) -> str:
    """`--site-url` as the site root, ending in "/"; refused unless an absolute http(s) URL
    without query or fragment (it goes into every page's absolute links)."""
    parts = urlsplit(url.strip())
    bad = (parts.scheme not in ("http", "https") or not parts.netloc or parts.query
           or parts.fragment or any(c.isspace() or c in '"<>\\`' for c in url.strip()))
    if bad:
        raise UserError(f"--site-url {url!r} is not the address of a site; pass an absolute "
                        "http(s) URL such as https://user.github.io/repo/")
    return parts._replace(path=parts.path.rstrip("/") + "/").geturl()


def check_endpoint(url: str, flag: str = "--endpoint") -> str:
    """An OpenAI-compatible API's base URL (before /chat/completions), refused unless http(s)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserError(f"{flag} {url!r} is not an http(s) URL; pass the API's base, e.g. "
                        "http://127.0.0.1:8000/v1")
    return url
