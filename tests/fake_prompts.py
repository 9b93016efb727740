"""Hand-made prompt-view data for render and browser tests (no model): prompts over the hostile
vocabulary of tests/fake_store.py, with texts that try to break out of the page."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from generator.store.schema import Prompts, StoreData

HOSTILE_PROMPTS = [
    "</script><script>alert(1)</script> the cat sat",
    "<img src=x onerror=alert(1)> on the mat",
    "\u202eevil RTL override\u202c and \x00 NUL",
    "def f(self):\n    return None\n",
]


def make_prompts(d_sae: int, vocab_size: int, bos_id: int, dead: tuple[int, ...] = (11,),
                 seed: int = 5) -> Prompts:
    """Four prompts over the hostile vocabulary (ids 1..5 are `</script>`, `<img onerror>`, a
    quote, the RTL override and NUL), with random sparse activations (none for `dead` latents)
    and Δloss, and the per-latent totals computed from them as generator/compute/promptview.py does."""
    rng = np.random.default_rng(seed)
    tokens = [np.array([bos_id, 1, 2, 3, 4, 5, 17, 18, 19], dtype=np.int32),
              np.array([bos_id, 2, 16, 17, 18, 19, 20, 21], dtype=np.int32),
              np.array([bos_id, 4, 5, 8, 9, 6, 7, 13, 10, 11], dtype=np.int32),
              np.array([bos_id, 21, 22, 23, 10, 14, 30, 31, 10, bos_id, 24, 25], dtype=np.int32)]
    live = np.array([i for i in range(d_sae) if i not in dead])
    cols: dict[str, list] = {k: [] for k in ("prompt", "pos", "latent", "act", "dloss")}
    summ: dict[str, list] = {k: [] for k in ("prompt", "latent", "n", "max", "sum", "abs")}
    losses = []
    for n, tk in enumerate(tokens):
        length = len(tk)
        acts = np.zeros((length, d_sae), dtype=np.float32)
        for p in range(length):
            if tk[p] != bos_id:
                chosen = rng.choice(live, size=rng.integers(1, min(len(live), 12) + 1),
                                    replace=False)
                acts[p, chosen] = rng.uniform(0.05, 4.0, size=len(chosen)).astype(np.float32)
        ok = np.append(tk[1:] != bos_id, False)  # a prediction is scored
        loss = np.where(ok, rng.uniform(0.5, 5, length), np.nan).astype(np.float32)
        losses.append(loss)
        for i in np.flatnonzero(acts.max(0) > 0):
            first = int(np.flatnonzero(acts[:, i] > 0)[0])
            dl = np.where(np.arange(length) >= first, rng.normal(0, 0.3, length), 0.0)
            dl = np.where(ok, dl, np.nan).astype(np.float32)
            for p in np.flatnonzero(acts[:, i] > 0):
                cols["prompt"].append(n)
                cols["pos"].append(p)
                cols["latent"].append(i)
                cols["act"].append(acts[p, i])
                cols["dloss"].append(dl[p])
            summ["prompt"].append(n)
            summ["latent"].append(i)
            summ["n"].append(int((acts[:, i] > 0).sum()))
            summ["max"].append(acts[:, i].max())
            summ["sum"].append(acts[:, i].astype(np.float64).sum())
            summ["abs"].append(np.nansum(np.abs(dl), dtype=np.float64))
    order = np.lexsort((cols["latent"], cols["pos"], cols["prompt"]))

    def col(name: str, dtype: type) -> np.ndarray:
        return np.asarray(cols[name], dtype=dtype)[order]

    return Prompts(
        text=list(HOSTILE_PROMPTS), tokens=tokens, truncated=np.array([0, 0, 1, 0], dtype=bool),
        loss=losses, prompt=col("prompt", np.int32), pos=col("pos", np.int32),
        latent=col("latent", np.int32), act=col("act", np.float32),
        dloss=col("dloss", np.float32), s_prompt=np.array(summ["prompt"], np.int32),
        s_latent=np.array(summ["latent"], np.int32), s_n_active=np.array(summ["n"], np.int32),
        s_max_act=np.array(summ["max"], np.float32), s_sum_act=np.array(summ["sum"], np.float64),
        s_sum_abs_dloss=np.array(summ["abs"], np.float64))


def with_prompts(data: StoreData) -> StoreData:
    """The store with the hostile prompts added."""
    return replace(data, prompts=make_prompts(data.latents.d_sae, len(data.vocab),
                                              data.meta.bos_id))
