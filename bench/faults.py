"""The faults of issue 16, tried as a user would, against a real pair built here; one row each:
the fault, the exit code, the line the tool printed, whether the previous site and store are
byte-identical (or what was meant to change did), and what was left beside them.

    python bench/faults.py [--keep DIR]

Takes about 3 minutes on 2 cores (a few builds of the demo at 16 sequences). The signal faults
at every stage boundary are in tests/files/test_faults.py (pytest -m slow).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

FB = [sys.executable, "-m", "generator.cli"]
TINY = ["--n-seqs", "16", "--ctx", "32", "--k", "4", "--m", "2", "--no-ablation", "--quiet"]


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return h.hexdigest()[:12]


def run(*args: str, timeout: float = 300) -> tuple[int, str]:
    done = subprocess.run([*FB, *args], capture_output=True, text=True, timeout=timeout)
    said = [line for line in done.stderr.splitlines() if line.startswith("feature-browser:")]
    return done.returncode, said[-1] if said else "(no line)"


class Bench:
    def __init__(self, root: Path):
        self.root = root
        self.rows: list[tuple[str, int, str, str, str]] = []

    def pair(self) -> tuple[Path, Path]:
        return self.root / "site", self.root / "store"

    def fault(self, name: str, action: Callable[[], tuple[int, str]],
              expect: Callable[[], bool] | None = None) -> None:
        site, store = self.pair()
        before = (digest(site), digest(store))
        code, line = action()
        kept = "yes" if (digest(site), digest(store)) == before else "changed"
        if expect is not None:
            kept = "as meant" if expect() else "NOT as meant"
        left = sorted(p.name for p in self.root.iterdir() if p.name.startswith(".")
                      and p.name != ".store.checkpoint")
        self.rows.append((name, code, line[:150], kept, ", ".join(left) or "nothing"))

    def print(self) -> None:
        print("| fault | exit | what the tool said | old pair | left beside |")
        print("|---|---|---|---|---|")
        for name, code, line, kept, left in self.rows:
            print(f"| {name} | {code} | {line.replace('|', '/')} | {kept} | {left} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, default=None, help="work in DIR and keep it")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="faults-"))
    root.mkdir(parents=True, exist_ok=True)
    os.chdir(root)
    site, store = root / "site", root / "store"
    out = ["--out", str(site), "--store", str(store)]
    assert run("build", *TINY, *out)[0] == 0
    b = Bench(root)

    (site / "CNAME").write_text("example.org\n")
    b.fault("`echo example.org > site/CNAME; render`", lambda: run("render", "--quiet"),
            lambda: (site / "CNAME").read_text() == "example.org\n")
    (store / "my_notes.txt").write_text("notes")
    b.fault("`store/my_notes.txt; build`", lambda: run("build", *TINY, *out),
            lambda: (store / "my_notes.txt").read_text() == "notes")
    b.fault("`render --out store/site`", lambda: run("render", "--out", str(store / "site")))
    mine = root / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("x")
    b.fault("`demo-train --out DIR` (a user's folder)", lambda: run("demo-train", "--out", str(mine)))
    b.fault("`demo-train --out .`", lambda: run("demo-train", "--out", "."))
    b.fault("`demo-train --lm-minutes -1`", lambda: run("demo-train", "--out", "new",
                                                        "--lm-minutes", "-1"))
    damaged = root / "damaged"
    shutil.copytree(store, damaged)
    raw = bytearray((damaged / "examples.parquet").read_bytes())
    mid = len(raw) // 2
    raw[mid:mid + 4000] = os.urandom(len(raw[mid:mid + 4000]))
    (damaged / "examples.parquet").write_bytes(bytes(raw))
    b.fault("4,000 random bytes into examples.parquet; `render`",
            lambda: run("render", "--store", str(damaged), "--out", str(root / "s2")))
    b.fault("the same; `export`",
            lambda: run("export", "--store", str(damaged), "--out", str(root / "np")))
    b.fault("`build --n-bins 1000000`", lambda: run("build", *TINY, "--n-bins", "1000000", *out))
    b.fault("`build --nproc 64` on 2 cores", lambda: run("build", *TINY, "--nproc", "64",
                                                         "--device", "cpu", *out))
    prompts = root / "many.txt"
    prompts.write_text("x\n" * 10_000)
    b.fault("`build --prompts` with 10,000 prompts", lambda: run("build", *TINY, "--prompts",
                                                                 str(prompts), *out))
    fifo = root / "pipe.txt"
    os.mkfifo(fifo)
    b.fault("`build --corpus FIFO`", lambda: run("build", *TINY, "--corpus", str(fifo), *out))
    b.fault("`build --corpus /dev/zero`", lambda: run("build", *TINY, "--corpus", "/dev/zero", *out))
    weights = root / "w.safetensors"
    weights.write_bytes(b"\0" * 8)
    b.fault("`build --model FILE`", lambda: run("build", *TINY, "--model", str(weights), *out))
    b.fault("`build --sae FILE`", lambda: run("build", *TINY, "--sae", str(weights), *out))
    jsonl = root / "c.jsonl"
    jsonl.write_text('{"text": 12345}\n')
    b.fault('`build --corpus` with `{"text": 12345}`',
            lambda: run("build", *TINY, "--corpus", str(jsonl), *out))
    loop = root / "loop"
    os.symlink(loop, loop)
    b.fault("`build --corpus LOOP` (a symlink loop)",
            lambda: run("build", *TINY, "--corpus", str(loop), *out))
    b.fault("`serve --port 99999`", lambda: run("serve", "--port", "99999"))
    b.fault("a second build while one runs", lambda: _second_build(out))
    b.fault("`timeout -s TERM` to the group while rendering", lambda: _group_term(out, root))
    for name in ("mine", "damaged", "many.txt", "pipe.txt", "w.safetensors", "c.jsonl", "loop"):
        path = root / name
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    b.print()
    if args.keep is None:
        shutil.rmtree(root)


def _second_build(out: list[str]) -> tuple[int, str]:
    first = subprocess.Popen([*FB, "build", *TINY, *out], stderr=subprocess.DEVNULL)
    lock = Path(out[-1]).parent / ".store.lock"
    while not lock.exists() and first.poll() is None:
        time.sleep(0.05)
    result = run("build", *TINY, *out)
    first.wait()
    return result


def _group_term(out: list[str], root: Path) -> tuple[int, str]:
    proc = subprocess.Popen([*FB, "build", *TINY, *out], stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    while not list(root.glob(".site.tmp-*/.site.tmp-*/features")) and proc.poll() is None:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    said = [line for line in err.splitlines() if line.startswith("feature-browser:")]
    return proc.returncode, said[-1] if said else "(no line)"


if __name__ == "__main__":
    main()
