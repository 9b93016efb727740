"""The site's resources: the templates and static files shipped in the package, the Jinja
environment (autoescape on, every URL through the relative-link filter `|url`), and the static
files copied with a content hash in their names.
"""

from __future__ import annotations

import functools
import hashlib
import posixpath
from pathlib import Path

import jinja2

import generator
from generator.errors import UserError


def resource_dir(name: str) -> Path:
    """`templates` or `static`: inside the package (wheel) or beside it (source checkout)."""
    package = Path(generator.__file__).resolve().parent
    for candidate in (package / name, package.parent / name):
        if candidate.is_dir():
            return candidate
    raise UserError(f"cannot find the {name}/ folder of feature-browser next to {package}; "
                    "reinstall the package")


def relative_url(target: str, page: str) -> str:
    """The link from site page `page` to site path `target` (both relative to the site root)."""
    if target.startswith("#"):
        return target
    path, _, anchor = target.partition("#")
    return _relative_path(path or page, posixpath.dirname(page)) + (f"#{anchor}" if anchor else "")


@functools.lru_cache(maxsize=1 << 16)
def _relative_path(path: str, folder: str) -> str:
    """Cached: a render links the same latents from the pages of a few folders thousands of
    times, and relpath (two abspath calls, each asking the OS for the working folder) was a
    tenth of the page time."""
    rel = posixpath.relpath(path, folder or ".")
    return rel + "/" if path.endswith("/") and not rel.endswith("/") else rel


@jinja2.pass_context
def _url_filter(context: jinja2.runtime.Context, target: str) -> str:
    return relative_url(target, context["page_path"])


def latent_path(i: int, packed: bool = False) -> str:
    """The permalink of latent i, relative to the site root: its page, or on a packed site
    (generator/site/packed.py) the viewer's anchor (static/util.js latentHref does the same)."""
    return f"latent.html#{i}" if packed else f"features/{i}.html"


def make_env(assets: dict[str, str], packed: bool = False) -> jinja2.Environment:
    """Jinja with autoescape ON for every template (HTML and SVG partials alike); `packed`:
    latent links go to the packed site's viewer."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(resource_dir("templates")),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["url"] = _url_filter
    env.globals["asset"] = lambda name: assets[name]
    env.globals["latent_path"] = lambda i: latent_path(int(i), packed)
    return env


def copy_static(source: Path, target: Path) -> dict[str, str]:
    """Copy static files with a content hash in the name; returns name -> site path."""
    target.mkdir(parents=True, exist_ok=True)
    assets = {}
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()[:10]
        rel = path.relative_to(source).as_posix()
        stem, dot, ext = rel.rpartition(".")
        hashed = f"{stem}.{digest}.{ext}" if dot else f"{rel}.{digest}"
        (target / hashed).parent.mkdir(parents=True, exist_ok=True)
        (target / hashed).write_bytes(data)
        assets[rel] = f"static/{hashed}"
    return assets
