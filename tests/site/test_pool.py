"""generator.site.pool: the page workers write the same bytes as one process, and end under a
parent's SIGTERM handler."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
