"""Command line: `feature-browser build | render | explain | export | serve | demo-train`.

The `build` and `explain` options are generated from BuildConfig's and ExplainConfig's fields, so
the CLI and the configs never drift.
Only the standard library is imported at start-up: `--help` must answer in well under a second,
and `import sae_lens` alone takes seconds.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from generator.config import BuildConfig, check_site_url
from generator.explain.config import ExplainConfig
from generator.files.lock import locked

log = logging.getLogger("generator")


def _add_config_options(parser: argparse.ArgumentParser, config: Any = BuildConfig) -> None:
    for f in fields(config):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        help_text = f.metadata.get("help", "")
        if f.type in ("bool", bool, "bool | None"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                                help=help_text)
            continue
        kind: Any = {"int": int, "float": float, "Path": Path,
                     "Path | None": Path}.get(str(f.type), str)
        parser.add_argument(flag, type=kind, default=default, metavar=f.name.upper(),
                            help=help_text if default is None else f"{help_text} (default: {default})")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feature-browser",
        description="Generate a static website with one page per SAE latent.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="run model + SAE over a corpus and write store and site "
                                         "(no arguments: the embedded demo)")
    _add_config_options(build)
    render = sub.add_parser("render", help="store -> site only (no GPU, no torch)")
    render.add_argument("--store", type=Path, default=Path("store"), help="store folder")
    render.add_argument("--out", type=Path, default=Path("site"), help="site folder")
    render.add_argument("--explanations", type=Path, default=None,
                        help="explanations: our jsonl, a Neuronpedia export or a delphi run folder")
    render.add_argument("--quiet", action="store_true", help="no progress bars")
    compact = next(f for f in fields(BuildConfig) if f.name == "compact")
    render.add_argument("--compact", action=argparse.BooleanOptionalAction, default=False,
                        help=compact.metadata["help"])
    corpus_view = next(f for f in fields(BuildConfig) if f.name == "corpus_view")
    render.add_argument("--corpus-view", action=argparse.BooleanOptionalAction, default=None,
                        help=corpus_view.metadata["help"].replace(
                            "; default: on; off with --compact)",
                            "), when the store has it (default: on; off with --compact)"))
    packed = next(f for f in fields(BuildConfig) if f.name == "packed")
    render.add_argument("--packed", action=argparse.BooleanOptionalAction, default=None,
                        help=packed.metadata["help"])
    site_url = next(f for f in fields(BuildConfig) if f.name == "site_url")
    render.add_argument("--site-url", default=None, metavar="SITE_URL",
                        help=site_url.metadata["help"])
    explain = sub.add_parser("explain", help="label latents with an OpenAI-compatible chat model "
                                             "and score the labels (delphi's detection, fuzzing)")
    _add_config_options(explain, ExplainConfig)
    export = sub.add_parser("export", help="store -> another tool's format (Neuronpedia's JSON "
                                           "batches), no torch")
    export.add_argument("--format", default="neuronpedia", metavar="FORMAT",
                        help="neuronpedia: SAEDashboard's batch-N.json layout (default)")
    export.add_argument("--store", type=Path, default=Path("store"), help="store folder")
    export.add_argument("--out", type=Path, default=Path("neuronpedia"),
                        help="export folder (new, empty, or a previous export)")
    export.add_argument("--batch-size", type=int, default=128, metavar="N",
                        help="latents per batch file (default: 128)")
    serve = sub.add_parser("serve", help="preview a site on http://127.0.0.1")
    serve.add_argument("site", type=Path, nargs="?", default=Path("site"))
    serve.add_argument("--port", type=int, default=8000)
    train = sub.add_parser("demo-train", help="retrain the embedded demo model and SAE (CPU)")
    train.add_argument("--out", type=Path, default=Path("demo-artifacts"),
                       help="artifact folder: new, empty or a previous demo-train output "
                            "(default: demo-artifacts; the embedded demo: generator/demo/artifacts)")
    train.add_argument("--lm-minutes", type=float, default=10.0)
    train.add_argument("--sae-minutes", type=float, default=8.0)
    train.add_argument("--quiet", action="store_true")
    return parser


def _config_from(args: argparse.Namespace, config: Any = BuildConfig) -> Any:
    return config(**{f.name: getattr(args, f.name) for f in fields(config)})


def _report(times: Any, out: Path | None) -> None:
    parts = ", ".join(f"{name} {sec:.1f}s" for name, sec in times.seconds.items())
    log.info("done in %.1f s (%s)", sum(times.seconds.values()), parts)
    if out is not None:
        log.info("site: %s", (out / "index.html").resolve())


def _render(args: argparse.Namespace) -> Any:
    """`render`: store -> site, no torch."""
    from generator.explain.delphi import load_imported
    from generator.explain.labels import read_labels
    from generator.files.outputs import check_apart, check_space, disk_full_error, is_disk_full
    from generator.run.pipeline import SITE_MIN_BYTES_PER_LATENT, StageTimes
    from generator.site.render import render_site
    from generator.store.io import read_store

    times = StageTimes()
    site_url = check_site_url(args.site_url) if args.site_url is not None else None
    check_apart(args.out, args.store, "the next build")
    data = times.run("read store", read_store, args.store)
    expl, imported = load_imported(args.explanations)
    labels = read_labels(args.store, data.meta, imported)  # `explain`'s, when it ran on it
    need = data.latents.d_sae * SITE_MIN_BYTES_PER_LATENT
    check_space({"--out": (args.out, need)})
    try:
        times.run("render", render_site, data, args.out, explanations=expl, quiet=args.quiet,
                  compact=args.compact, site_url=site_url, corpus_view=args.corpus_view,
                  packed=args.packed, labels=labels)
    except OSError as err:
        if not is_disk_full(err):
            raise
        raise disk_full_error(err, {"--out": _resolved(args.out)}, need,
                              "the previous site is untouched") from None
    return times


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """The command's work; its exit code (0, or a launched process's failure)."""
    if args.command == "build":
        from generator.compute.distributed import under_torchrun
        from generator.run.build import build

        cfg = _config_from(args)
        if cfg.nproc > 1 and not under_torchrun():
            return _launch(cfg, argv)
        _report(build(cfg), cfg.out)
    elif args.command == "render":
        with locked({"--out": _resolved(args.out)}, {"--store": _resolved(args.store)}):
            _report(_render(args), args.out)
    elif args.command == "explain":
        from generator.explain.run import explain

        cfg = _config_from(args, ExplainConfig)
        with locked({"--store": _resolved(cfg.store)}):
            report = explain(cfg)
        if not cfg.dry_run:
            log.info("explain: %d latents, %d answers (%d failures), %s tokens", report.latents,
                     report.asked, report.failed, f"{report.tokens:,}")
    elif args.command == "export":
        from generator.site.export import export_store

        with locked({"--out": _resolved(args.out)}, {"--store": _resolved(args.store)}):
            export_store(args.format, args.store, args.out, batch_size=args.batch_size)
    elif args.command == "serve":
        from generator.site.serve import serve

        serve(args.site, port=args.port)
    elif args.command == "demo-train":
        from generator.demo import train

        with locked({"--out": _resolved(args.out)}):
            train.train_demo(args.out, lm_minutes=args.lm_minutes, sae_minutes=args.sae_minutes,
                             quiet=args.quiet)
    return 0


def _resolved(path: Path) -> Path:
    return Path(path).expanduser().resolve()


def _launch(cfg: BuildConfig, argv: list[str]) -> int:
    """`build --nproc N`: checked once here (one message, not one per process), then N
    processes, this one holding the outputs' locks for them."""
    from generator.files.lock import LOCKS_HELD
    from generator.files.outputs import check_outputs
    from generator.run.launch import check_devices, launch, without_nproc

    cfg.validate()
    check_devices(cfg.device, cfg.nproc)
    out, store = check_outputs(cfg.out, cfg.store)
    with locked({"--store": store, "--out": out}):
        return launch(without_nproc(argv), cfg.nproc, {LOCKS_HELD: "1"})


def main(argv: list[str] | None = None, exiting: bool = False) -> int:
    """Run the command; its exit code. `exiting`: the process ends right after (the console
    script), so a signal during the interpreter's shutdown must not change the exit code."""
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(message)s" if args.verbose else "%(message)s")
    from generator.errors import UserError
    from generator.files.signals import Interrupted, exit_quietly_on_signal, signals_raise

    outputs = _outputs(args)
    before = {name: _identity(path) for name, path in outputs.items()}
    try:
        with signals_raise():
            code = run(args, sys.argv[1:] if argv is None else argv)
            if exiting:  # no gap: from here a signal ends the process with this code
                exit_quietly_on_signal(code)
    except UserError as err:
        print(f"feature-browser: error: {err}", file=sys.stderr)
        return 2
    except (Interrupted, KeyboardInterrupt) as stop:
        name = stop.name if isinstance(stop, Interrupted) else "SIGINT"
        if args.command == "serve":  # the way a preview server is stopped
            print(f"feature-browser: stopped serving {args.site} ({name})", file=sys.stderr)
            return 0
        replaced = [what for what, path in outputs.items() if _identity(path) != before[what]]
        if replaced:  # the swap was complete when the signal came: the work is done
            print(f"feature-browser: {name} arrived after the new {' and '.join(replaced)} "
                  f"{'were' if len(replaced) > 1 else 'was'} put in place, complete",
                  file=sys.stderr)
            return 0
        print(f"feature-browser: stopped by {name}{_stopped(args, outputs)}", file=sys.stderr)
        return 128 + (stop.signum if isinstance(stop, Interrupted) else 2)
    return code


def entry() -> None:
    """The `feature-browser` console script."""
    sys.exit(main(exiting=True))


def _outputs(args: argparse.Namespace) -> dict[str, Path]:
    """The folders the command replaces, by name in messages."""
    if args.command == "build":
        return {"site": _resolved(args.out), "store": _resolved(args.store)}
    names = {"render": "site", "export": "export", "demo-train": "demo artifacts"}
    return {names[args.command]: _resolved(args.out)} if args.command in names else {}


def _identity(path: Path) -> tuple[int, int] | None:
    """Which folder is at `path` now (device, inode), so that a swap can be seen."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _stopped(args: argparse.Namespace, outputs: dict[str, Path]) -> str:
    """The rest of the line a stopped command prints: what it left, and how to go on."""
    if args.command == "explain":
        from generator.explain.answers import log_path

        return (f"; every answer that arrived is in {log_path(_resolved(args.store))}: run the "
                "same command again to go on")
    if not outputs:
        return ""
    names = list(outputs)
    kept = (f"the previous {' and '.join(names)} {'are' if len(names) > 1 else 'is'} untouched")
    hint = ""
    if args.command == "build":  # a build stopped by a Slurm time limit, say: how to go on
        from generator.compute.checkpoint import resume_hint

        hint = resume_hint(_resolved(args.store))
    return f"; temporary folders removed, {kept}{'; ' + hint if hint else ''}"


if __name__ == "__main__":
    entry()
