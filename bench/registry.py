"""sae_lens' pretrained registry, offline: one row per converter x architecture x hook kind, with
how many of the registry's SAEs it covers and whether a release of that kind loads through sae_lens'
own converter, builds on the demo model (the site checks pass) and equals the brute-force reference.

    python bench/registry.py
    python bench/registry.py --only goodfire deepseek_r1   # the rows of these converters

Each tried row writes miniature files in the release's own layout into a synthetic Hugging Face
cache (tests/hubcache.py; sized for the demo model: d_in 128, layers 0-1), switches the hub client
offline, loads `release/id` with generator.inputs.hf.load_named_sae (SAE.from_pretrained and the
converter), checks its site against the demo model, and compares the engine's pass-1 statistics
with brute force. Rows not tried say why. The last line is the share of the registry's SAEs whose
row passed. Takes about a minute.
"""

from __future__ import annotations

import logging
import re
import sys
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

Files = Callable[[str, Path], dict[str, bytes]]
"""(path of the SAE in its repository, scratch folder) -> the repository's files."""


@dataclass
class Row:
    converter: str
    kind: str
    matches: Callable[[str, str, str], bool]
    """(release, sae id, path) -> whether the SAE is of this row."""
    files: Files | None = None
    pick: Callable[[str, str], bool] = lambda sae_id, path: True
    """which SAE of the row to try (the demo model has layers 0 and 1 only)."""
    why_not: str = ""
    release_ok: Callable[[str], bool] = lambda release: True
    """which releases the row's tried SAE may come from (a converter that fixes widths by model)."""
    model: str = "demo"
    """the model the row's SAE is tried on: the demo's, or a family's miniature (MODELS)."""
    variants: tuple[tuple[str, Files], ...] = ()
    """when the registry does not say which layout the files have: every candidate, each tried
    (the row passes when all do)."""
    count: int = 0
    result: str = ""


def _gemma3(kind: str, affine: bool = False) -> Row:
    from tests.hubcache import gemma_3_files

    def matches(release: str, sae_id: str, path: str) -> bool:
        head = path.split("/")[0].removesuffix("_all")
        return head == kind and sae_id.endswith("_affine") == affine

    return Row("gemma_3", kind + (" (affine skip)" if affine else ""), matches,
               lambda path, tmp: gemma_3_files(path, 128, 48, tmp, affine=affine),
               pick=lambda sae_id, path: bool(re.search(r"layer_[01]_", path)))


def _dictionary_learning(dict_class: str, names: tuple[str, ...]) -> Row:
    from tests.hubcache import dictionary_learning_files

    return Row("dictionary_learning_1", dict_class,
               lambda release, sae_id, path: any(n in (release + path).lower() for n in names),
               lambda path, tmp: dictionary_learning_files(path, dict_class, 128, 40, 1, tmp))


def _andyrdt() -> Row:
    """andyrdt's SAEs name no class in the registry (only their config.json does): each of the
    four classes the converter reads is tried under one of their paths."""
    from tests.hubcache import dictionary_learning_files

    def files(dict_class: str) -> Files:
        return lambda path, tmp: dictionary_learning_files(path, dict_class, 128, 40, 1, tmp)

    classes = ("AutoEncoder", "AutoEncoderTopK", "GatedAutoEncoder", "BatchTopKSAE")
    return Row("dictionary_learning_1", "class only in config.json (andyrdt)",
               lambda release, sae_id, path: "andyrdt" in release, files("AutoEncoder"),
               variants=tuple((c, files(c)) for c in classes))


def _llama_scope(sublayer: str, hook: str) -> Row:
    from tests.hubcache import llama_scope_files

    return Row("llama_scope", f"{hook} (lx{sublayer})",
               lambda release, sae_id, path: f"_lx{sublayer}_" in release,
               lambda path, tmp: llama_scope_files(path, 128, 40, f"blocks.1.{hook}", tmp))


def _llama_scope_r1(path: str, tmp: Path) -> dict[str, bytes]:
    from tests.hubcache import llama_scope_r1_files

    return llama_scope_r1_files(path, 128, 1, "blocks.1.hook_resid_post", tmp)


def _connor_rob_hook_z(path: str, tmp: Path) -> dict[str, bytes]:
    from tests.hubcache import connor_rob_hook_z_files

    return connor_rob_hook_z_files(path, 128, 40, "blocks.1.attn.hook_z", tmp)


def _sae_lens_format(path: str, tmp: Path) -> dict[str, bytes]:
    from tests.hubcache import sae_lens_files

    cfg = {"architecture": "standard", "d_in": 128, "d_sae": 40, "dtype": "float32",
           "device": "cpu", "model_name": "demo", "hook_name": "blocks.1.hook_resid_pre",
           "hook_head_index": None, "prepend_bos": True, "dataset_path": "x",
           "context_size": 128, "normalize_activations": "none", "apply_b_dec_to_input": True}
    return sae_lens_files(path, cfg, tmp)


def _width(path: str) -> int:
    return {"width_4k": 4096, "width_16k": 16384}[re.search(r"width_\d+k", path).group(0)]  # type: ignore[union-attr]


def _gemma2(kind: str, d_in: int) -> Row:
    """Gemma Scope on Gemma 2: the converter fixes d_in by model size and d_sae by folder name, so
    the files are full width (made sparse to compress) and the model is a 2-layer Gemma 2 with
    Gemma 2 2B's widths."""
    from tests.hubcache import gemma_2_files

    def matches(release: str, sae_id: str, path: str) -> bool:
        if kind == "embedding":
            return path.startswith("embedding/")
        return f"-{kind}" in release and not path.startswith("embedding/")

    def pick(sae_id: str, path: str) -> bool:
        small = "width_4k" in path if kind == "embedding" else "width_16k" in path
        return small and bool(re.match(r"(layer_[01]/|embedding/)", path))

    return Row("gemma_2", kind, matches, lambda path, tmp: gemma_2_files(path, d_in, _width(path)),
               pick=pick, model="gemma-2-2b", release_ok=lambda release: "-2b-" in release)


def _gemma_2_files(path: str, d_in: int, d_sae: int) -> dict[str, bytes]:
    from tests.hubcache import gemma_2_files

    return gemma_2_files(path, d_in, d_sae)


def _mwhanna(path: str, tmp: Path) -> dict[str, bytes]:
    from tests.hubcache import mwhanna_files

    return mwhanna_files(1, 128, 40, tmp)


def _qwen_scope(path: str, tmp: Path) -> dict[str, bytes]:
    from tests.hubcache import qwen_scope_files

    return qwen_scope_files(path, 2048, 32768, tmp)


def _temporal(path: str, tmp: Path) -> dict[str, bytes]:
    from tests.hubcache import temporal_files

    return temporal_files(path, 32, 4, tmp)


def _linear_pair(enc: str, dec: str) -> Files:
    from tests.hubcache import linear_pair_files

    return lambda path, tmp: linear_pair_files(path, (enc, dec), 4096, 65536, tmp)


NOT_TRIED = {
    "mntss_clt_layer_transcoder": "refused on purpose: the converter sums a latent's decoders to "
                                  "every later layer into one, so its ablation would not be the "
                                  "CLT's",
}


def rows() -> list[Row]:
    dl = _dictionary_learning
    return [
        _gemma3("resid_post"), _gemma3("mlp_out"), _gemma3("attn_out"),
        _gemma3("transcoder"), _gemma3("transcoder", affine=True),
        Row("none", "sae_lens format (cfg.json)", lambda r, s, p: True, _sae_lens_format),
        dl("AutoEncoderTopK", ("topk",)), dl("AutoEncoder", ("vanilla", "standard", "panneal")),
        dl("GatedAutoEncoder", ("gated",)),
        dl("BatchTopKSAE", ("matryoshka", "batch_top_k", "batchtopk")),
        _llama_scope("r", "hook_resid_post"), _llama_scope("a", "hook_attn_out"),
        _llama_scope("m", "hook_mlp_out"),
        Row("llama_scope_r1_distill", "resid", lambda r, s, p: True, _llama_scope_r1),
        Row("connor_rob_hook_z", "attn.hook_z", lambda r, s, p: True, _connor_rob_hook_z),
        _gemma2("res", 2304), _gemma2("embedding", 2304), _gemma2("mlp", 2304),
        _gemma2("att", 2048),
        Row("gemma_2_transcoder", "ln2.hook_normalized -> hook_mlp_out", lambda r, s, p: True,
            lambda path, tmp: _gemma_2_files(path, 2304, _width(path)),
            pick=lambda sae_id, path: path.startswith("layer_0/width_16k"), model="gemma-2-2b"),
        Row("mwhanna_transcoder", "mlp.hook_in -> hook_mlp_out", lambda r, s, p: True,
            _mwhanna, pick=lambda sae_id, path: path == "layer_1.safetensors"),
        Row("qwen_scope", "resid (Qwen 3, Qwen 3 MoE)", lambda r, s, p: "qwen-scope-3-" in r,
            _qwen_scope, pick=lambda sae_id, path: path == "layer0.sae.pt", model="qwen3-1.7b",
            release_ok=lambda release: release.startswith("qwen-scope-3-1.7b")),
        Row("goodfire", "resid (Llama 3.1 8B)", lambda r, s, p: "8b" in r,
            _linear_pair("encoder_linear", "decoder_linear"), model="llama-8b-l19"),
        Row("goodfire", "resid (Llama 3.3 70B)", lambda r, s, p: "70b" in r,
            why_not="not tried: its converter fixes d_in 8,192 at layer 50, and a miniature "
            "reaching layer 50 at that width holds 6.8 B parameters (the 8B row above is the same "
            "converter and code path)"),
        Row("deepseek_r1", "resid (DeepSeek R1 distill Llama 8B)", lambda r, s, p: True,
            _linear_pair("encoder", "decoder"), model="llama-8b-l19"),
        Row("temporal", "resid (Llama 3.1 8B, Gemma 2 2B)", lambda r, s, p: True, _temporal,
            pick=lambda sae_id, path: "layer_15" in path, model="llama-16-layers"),
        Row("qwen_scope", "resid (Qwen 3.5)", lambda r, s, p: "qwen-scope-3.5-" in r,
            why_not="refused: Qwen 3.5's Gated DeltaNet layers have no TransformerLens component"),
        _andyrdt(),
    ] + [Row(conv, "", lambda r, s, p: True, why_not=why) for conv, why in NOT_TRIED.items()]


def classify(table: list[Row]) -> dict[int, tuple[str, str]]:
    """Count the registry's SAEs per row (the first row of their converter that matches); the
    SAE each tried row will load, by row index."""
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    picked: dict[int, tuple[str, str]] = {}
    unmatched: Counter[str] = Counter()
    for release, info in get_pretrained_saes_directory().items():
        conv = info.conversion_func or "none"
        for sae_id, path in info.saes_map.items():
            n = next((n for n, row in enumerate(table) if row.converter == conv
                      and row.matches(release, sae_id, path)), None)
            if n is None:
                unmatched[conv] += 1
                continue
            table[n].count += 1
            if n not in picked and table[n].files and table[n].pick(sae_id, path) \
                    and table[n].release_ok(release):
                picked[n] = (release, sae_id)
    for conv, count in unmatched.items():
        table.append(Row(conv, "(no row)", lambda r, s, p: True, count=count,
                         why_not="no row describes these"))
    return picked


MODELS = {"gemma-2-2b": ("gemma2", "GEMMA_2_2B_WIDTHS"), "qwen3-1.7b": ("qwen3", "QWEN3_1_7B_WIDTHS"),
          "llama-8b-l19": ("llama", "LLAMA_8B_LAYER_19"),
          "llama-16-layers": ("llama", "LLAMA_16_LAYERS")}
"""family miniatures at the widths a converter fixes: (family, widths in tests/checkpoints.py)."""


def load_row_model(name: str, scratch: Path, loaded: dict[str, object]) -> object:
    """The model a row is tried on, made once."""
    if name not in loaded:
        if name == "demo":
            from generator.demo import DEMO_MODEL_DIR
            from generator.inputs.model_folder import load_model_dir

            loaded[name] = load_model_dir(DEMO_MODEL_DIR)
        else:
            import tests.checkpoints as checkpoints
            from generator.inputs.models import load_model

            family, widths = MODELS[name]
            folder = checkpoints.save_checkpoint(scratch / name, family,
                                                 **getattr(checkpoints, widths))
            loaded[name] = load_model(str(folder), "cpu")
    return loaded[name]


def attempt(row: Row, release: str, sae_id: str, model: object) -> str:
    """loads / builds / equals reference, as far as it gets."""
    import huggingface_hub.constants
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    from generator.errors import UserError
    from generator.inputs.hf import load_named_sae
    from generator.inputs.models import prepared
    from generator.inputs.sites import check_compatible, sae_site
    from tests.hubcache import exact_on, write_repo

    assert row.files is not None
    info = get_pretrained_saes_directory()[release]
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "hub"
        write_repo(cache, info.repo_id, row.files(info.saes_map[sae_id], Path(tmp) / "s"))
        huggingface_hub.constants.HF_HUB_CACHE = str(cache)
        huggingface_hub.constants.HF_HUB_OFFLINE = True
        try:
            sae = prepared(load_named_sae(f"{release}/{sae_id}", "cpu"))
        except UserError as err:
            return f"does not load: {err}"
        try:
            site = sae_site(sae)
            check_compatible(model, sae, site)
        except UserError as err:
            return f"loads; refused: {err}"
        try:
            exact_on(model, sae, site)
        except AssertionError:
            return "loads, builds; NOT equal: " + traceback.format_exc().splitlines()[-1]
        label = f"{sae.cfg.architecture()}: {site.name}" + (f" → {site.out_name}"
                                                             if site.out_name else "")
        return f"loads, builds, equals ({label})"


def main() -> int:
    import argparse
    import os

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", default=None, metavar="CONVERTER",
                        help="try only the rows of these converters (the others are counted)")
    only = parser.parse_args().only
    logging.basicConfig(level=logging.WARNING)
    os.environ["HF_HUB_OFFLINE"] = "1"
    scratch = tempfile.TemporaryDirectory(prefix="fb-registry-")
    loaded: dict[str, object] = {}
    table = rows()
    picked = classify(table)
    total = sum(row.count for row in table)
    covered = 0
    print("| converter | kind | SAEs | result |")
    print("|---|---|---|---|")
    for n, row in enumerate(table):
        if n in picked and (only is None or row.converter in only):
            model = load_row_model(row.model, Path(scratch.name), loaded)
            results = [attempt(replace(row, files=files), *picked[n], model)
                       for _, files in row.variants] if row.variants else \
                [attempt(row, *picked[n], model)]
            row.result = f"`{'/'.join(picked[n])}`: " + "; ".join(
                f"{name}: {res}" for (name, _), res in zip(row.variants, results, strict=True)
            ) if row.variants else f"`{'/'.join(picked[n])}`: " + results[0]
            covered += row.count if all("equals" in res for res in results) else 0
        elif n in picked:
            row.result = "not tried in this run (--only)"
        else:
            row.result = row.why_not or "no SAE of this row fits the demo model"
        print(f"| {row.converter} | {row.kind} | {row.count:,} | {row.result} |")
    print(f"\ncovered: {covered:,} of {total:,} SAEs ({covered / total:.1%}) load through their "
          "converter offline, build and equal the reference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
