"""generator.site.pool: the page workers write the same bytes as one process, end under a
parent's SIGTERM handler, and run with what existed before the job frozen for the collector."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import pytest

from generator.site.pool import chunked, in_parallel
from generator.site.render import render_site
from tests.fake_store import make_scaled_store


def test_parallel_render_is_byte_identical(tmp_path: Path) -> None:
    """Latent pages and corpus pages (several chunks of each) alike."""
    from tests.fake_corpus import with_corpus

    data = with_corpus(make_scaled_store(d_sae=24, n_seqs=300))
    one = render_site(data, tmp_path / "one", quiet=True, workers=1).out
    two = render_site(data, tmp_path / "two", quiet=True, workers=2, chunk=5, view_chunk=7).out
    assert len(list((two / "corpus").glob("*.html"))) > 3 * 7
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    for rel in files:
        assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel


def test_parallel_packed_render_is_byte_identical(tmp_path: Path) -> None:
    """The packed site: its shards, and the search index whose terms each worker numbers in
    its own order."""
    data = make_scaled_store(d_sae=200, n_seqs=300)
    one = render_site(data, tmp_path / "one", quiet=True, workers=1, packed=True).out
    three = render_site(data, tmp_path / "three", quiet=True, workers=3, packed=True).out
    assert len(list((three / "data").glob("*.bin"))) == 4  # 64 latents a shard
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(three) for p in three.rglob("*") if p.is_file())
    for rel in files:
        assert (one / rel).read_bytes() == (three / rel).read_bytes(), rel


@pytest.mark.parametrize("workers", [1, 2])
def test_a_job_runs_with_the_heap_frozen_and_thawed_after(workers: int) -> None:
    """The objects made before the job are outside the collector's walks while it runs (in
    the parent and in forked workers), and back in after; a freeze made by the caller stays."""
    assert gc.get_freeze_count() == 0
    before = [object() for _ in range(100)]  # some of the caller's objects
    counts = list(in_parallel(lambda lo, hi: gc.get_freeze_count(), chunked(4, 1), workers,
                              "test", "chunk", quiet=True))
    assert min(counts) >= len(before) and gc.get_freeze_count() == 0
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        list(in_parallel(lambda lo, hi: None, chunked(4, 1), workers, "test", "chunk", quiet=True))
        assert gc.get_freeze_count() > frozen // 2  # still frozen (some frozen objects die)
    finally:
        gc.unfreeze()


def test_parallel_render_ends_under_a_parent_sigterm_handler(tmp_path: Path) -> None:
    """Forked page workers inherit the parent's signal handlers (a build's SIGTERM clean-up, a
    test runner's). A handler that does not exit used to keep a worker alive through
    Pool.terminate, hanging the render for ever; it must finish, in a child with a deadline."""
    script = f"""
import signal, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
signal.signal(signal.SIGTERM, lambda *args: None)  # a handler that does not exit
from generator.site.render import render_site
from tests.fake_store import make_scaled_store
render_site(make_scaled_store(d_sae=24, n_seqs=300), {str(tmp_path / 'site')!r}, quiet=True,
            workers=2, chunk=5)
print("rendered")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "rendered" in done.stdout
    assert len(list((tmp_path / "site" / "features").glob("*.html"))) == 24
