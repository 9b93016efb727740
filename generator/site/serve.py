"""Local preview of a rendered site: `feature-browser serve` (http.server on 127.0.0.1 only).

The site also works straight from file://; this exists for people who prefer a URL, and to preview
what GitHub Pages will serve. It binds to the loopback interface so nothing is exposed, and it
serves only what lies inside the site: a symbolic link to a file elsewhere is "not found", as it
would be once published.
"""

from __future__ import annotations

import functools
import logging
import os
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from generator.errors import UserError

log = logging.getLogger(__name__)
HOST = "127.0.0.1"


class _Handler(SimpleHTTPRequestHandler):
    """Static files with request lines sent to logging (debug) instead of stderr."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript",
                      ".svg": "image/svg+xml"}

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def translate_path(self, path: str) -> str:
        """The file for a URL path, or a path that does not exist (a 404) when the file, links
        resolved, lies outside the site."""
        local = super().translate_path(path)
        root = os.path.realpath(self.directory)
        real = os.path.realpath(local)
        if real != root and not real.startswith(root + os.sep):
            return os.path.join(os.devnull, "outside-the-site")  # cannot exist: a 404
        return local


def make_server(root: Path, port: int = 0) -> ThreadingHTTPServer:
    """A server for `root` on 127.0.0.1:`port` (0 = any free port); the caller runs and closes it."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port {port} is not a port number; pass one from 1 to 65535 (e.g. "
                        "--port 8000), or 0 for any free port")
    handler = functools.partial(_Handler, directory=str(root))
    try:
        return ThreadingHTTPServer((HOST, port), handler)
    except OSError as err:
        raise UserError(f"cannot listen on {HOST}:{port} ({err.strerror}); pass another "
                        "--port") from None


def serve(site: Path, port: int = 8000) -> None:
    """Serve `site` at http://127.0.0.1:`port`/ until Ctrl+C."""
    site = Path(site)
    if not (site / "index.html").is_file():
        raise UserError(f"no site at {site} (missing index.html); run `feature-browser render` "
                        "or `build` first, or pass --out of an existing site")
    with make_server(site, port) as server:
        log.info("serving %s at http://%s:%d/ (Ctrl+C to stop)", site, HOST,
                 server.server_address[1])
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            log.info("stopped")
