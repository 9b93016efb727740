"""What `feature-browser explain` costs on a store: requests, characters and tokens per latent, and
the run's time against a local OpenAI-compatible server, then the site with the labels and two
screenshots (a labelled latent page, the index sorted by detection score).

    .venv/bin/python bench/explain_cost.py [--store /tmp/demo_store] [--out bench/out/explain]
        [--latency 0 0.2] [--concurrency 4] [--latents all] [--screens docs/screenshots]

The server is the tests' scripted one (tests/explain/fake_llm.py: a heuristic explainer and
scorer answering at once, or after --latency seconds a request): no model weights can be fetched
here, so the times are this client's overhead (latency 0) and how concurrency hides a model's
latency; the tokens a real model spends are estimated from characters (4 a token, the usual
figure for English BPE; the server reports the same). The store is copied first: the answer log
goes into the copy.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from chromium import CHROMIUM  # noqa: E402

from generator.explain.config import ExplainConfig  # noqa: E402
from generator.explain.labels import read_labels  # noqa: E402
from generator.explain.run import explain  # noqa: E402
from generator.site.render import render_site  # noqa: E402
from generator.store.io import read_meta, read_store  # noqa: E402
from tests.explain.fake_llm import FakeLLM, Reply, heuristic, task_of  # noqa: E402


def run_once(store: Path, latency: float, concurrency: int, latents: str) -> dict[str, float]:
    def script(body: dict, n: int) -> Reply:
        reply = heuristic(body, n)
        reply.delay = latency
        return reply

    server = FakeLLM(script)
    try:
        start = time.perf_counter()
        report = explain(ExplainConfig(store=store, endpoint=server.url, model="scripted",
                                       concurrency=concurrency, latents=latents, quiet=True))
        seconds = time.perf_counter() - start
        bodies = list(server.requests)
    finally:
        server.close()
    prompt = [sum(len(m["content"]) for m in b["messages"]) for b in bodies]
    tasks = Counter(task_of(b) for b in bodies)
    return {"seconds": seconds, "latents": report.latents, "requests": len(bodies),
            "explain": tasks["explain"], "detection": tasks["detection"],
            "fuzzing": tasks["fuzzing"], "prompt_chars": sum(prompt),
            "explain_prompt_median": statistics.median(
                [p for p, b in zip(prompt, bodies, strict=True) if task_of(b) == "explain"]
                or [0]),
            "tokens_reported": report.tokens}


def screenshots(site: Path, out: Path, latent: int) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto((site / f"features/{latent}.html").as_uri())
        page.screenshot(path=str(out / "demo-label.png"))
        page.goto((site / "index.html").as_uri() + "#latents")
        page.click("[data-sort=sd]")
        page.wait_for_function("document.querySelector('#lt th button[data-sort=sd]')"
                               ".parentNode.getAttribute('aria-sort') === 'descending'")
        page.locator("#latents").scroll_into_view_if_needed()
        page.screenshot(path=str(out / "demo-index-by-score.png"))
        browser.close()
    print(out / "demo-label.png", out / "demo-index-by-score.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path("/tmp/demo_store"))
    parser.add_argument("--out", type=Path, default=Path("bench/out/explain"))
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 0.2])
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--latents", default="all", help="as explain's --latents")
    parser.add_argument("--screens", type=Path, default=None)
    args = parser.parse_args()
    for latency in args.latency:
        store = args.out / f"store-{latency:g}"
        shutil.rmtree(store, ignore_errors=True)
        shutil.copytree(args.store, store)
        first = run_once(store, latency, args.concurrency, args.latents)
        again = run_once(store, latency, args.concurrency, args.latents)
        n = first["latents"]
        print(f"latency {latency:g} s, concurrency {args.concurrency}: {n} latents, "
              f"{first['requests']} requests ({first['explain']} explain, "
              f"{first['detection']} detection, {first['fuzzing']} fuzzing) = "
              f"{first['requests'] / n:.2f} a latent; prompts {first['prompt_chars'] / n:,.0f} "
              f"characters a latent (~{first['prompt_chars'] / n / 4:,.0f} tokens at 4 a token; "
              f"the explainer's median {first['explain_prompt_median']:,.0f}); server-reported "
              f"{first['tokens_reported'] / n:,.0f} tokens a latent; "
              f"{first['seconds']:.1f} s ({first['seconds'] / n * 1000:.1f} ms a latent); "
              f"rerun: {again['requests']} requests in {again['seconds']:.2f} s", flush=True)
    labelled = args.out / f"store-{args.latency[0]:g}"
    data = read_store(labelled)
    labels = read_labels(labelled, read_meta(labelled))
    scored = sorted((v.scores.get("detection", 0), i) for i, v in labels.items())
    site = (args.out / "site").resolve()
    render_site(data, site, quiet=True, labels=labels)
    print(f"{len(labels)} labelled, {sum(1 for v in labels.values() if v.scores)} scored; "
          f"median detection {statistics.median(s for s, _ in scored):.2f}; site: {site}")
    if args.screens:
        screenshots(site, args.screens, scored[-1][1])


if __name__ == "__main__":
    main()
