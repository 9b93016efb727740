"""generator.site.serve: the local preview serves the site and nothing outside it, refuses a port
that is not one in one line, and stopping it with Ctrl-C says that it stopped serving (not what
a stopped build leaves)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from generator.cli import main
from generator.site.serve import make_server
from tests.helpers import Lines, assert_one_line_error

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A tiny site with a link to a file outside it, served on a free port."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<p>index</p>")
    (site / "page.html").write_text("<p>page</p>")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the web")
    (site / "leak.txt").symlink_to(secret)
    (site / "inside.html").symlink_to(site / "page.html")
    (site / "up").symlink_to(tmp_path)
    server = make_server(site, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", site
    server.shutdown()
    server.server_close()


def status(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, b""


def test_serves_the_site_and_links_inside_it(served: tuple[str, Path]) -> None:
    base, _ = served
    assert status(f"{base}/page.html") == (200, b"<p>page</p>")
    assert status(f"{base}/inside.html") == (200, b"<p>page</p>")


def test_links_to_files_outside_the_site_are_not_found(served: tuple[str, Path]) -> None:
    base, _ = served
    assert status(f"{base}/leak.txt")[0] == 404
    assert status(f"{base}/up/secret.txt")[0] == 404
    assert status(f"{base}/../secret.txt")[0] == 404


@pytest.mark.parametrize("port", ["99999", "-5", "65536"])
def test_a_port_that_is_not_one_is_refused_in_one_line(capsys: pytest.CaptureFixture[str],
                                                       tmp_path: Path, port: str) -> None:
    (tmp_path / "index.html").write_text("<p>index</p>")
    code = main(["serve", str(tmp_path), "--port", port])
    assert_one_line_error(code, capsys.readouterr().err, f"--port {port} is not a port number",
                          "65535")


def test_ctrl_c_says_it_stopped_serving(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<p>index</p>")
    proc = subprocess.Popen([sys.executable, "-m", "generator.cli", "serve", str(tmp_path),
                             "--port", "0"], stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stderr is not None
    output = Lines(proc.stderr)
    assert output.wait_for("serving ", timeout=60), output.text()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    err = output.text()
    assert f"feature-browser: stopped serving {tmp_path} (SIGINT)" in err, err
    assert "store" not in err and "Traceback" not in err, err
