#!/usr/bin/env python3
"""Set up a local virtualenv and run calnotify or its tests. Needs only Python 3.11+.

    python3 dev.py serve [ARGS...]   install calnotify into .venv and run `calnotify serve ARGS`
    python3 dev.py test [ARGS...]    install calnotify with its test tools and run `pytest ARGS`
    python3 dev.py check             ruff, ruff format --check and mypy --strict on src/
    python3 dev.py setup             only install (with the test tools)
    python3 dev.py migration "MSG"   autogenerate an Alembic migration from the models

The virtualenv is re-installed only when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):
        print("calnotify needs Python 3.11 or newer", file=sys.stderr)
        return 1
    if not argv or argv[0] not in {"serve", "test", "check", "setup", "migration"}:
        print(__doc__, file=sys.stderr)
        return 2
    command, args = argv[0], argv[1:]
    ensure_venv(dev=command != "serve")
    if command == "serve":
        return run([str(BIN / "calnotify"), "serve", *args])
    if command == "test":
        return run([str(PYTHON), "-m", "pytest", *args])
    if command == "migration":
        if len(args) != 1:
            print('usage: python3 dev.py migration "what changed"', file=sys.stderr)
            return 2
        return run([str(PYTHON), "-c", MIGRATION_SCRIPT, args[0]])
    if command == "check":
        for step in (
            ["ruff", "check", "src", "tests", "bench"],
            ["ruff", "format", "--check", "src", "tests", "bench"],
            ["mypy", "src"],
        ):
            step = [s for s in step if s != "bench" or (ROOT / "bench").exists()]
            if code := run([str(PYTHON), "-m", *step]):
                return code
    return 0


MIGRATION_SCRIPT = """
import sys, tempfile, pathlib
from alembic import command
from calnotify.db.migrate import alembic_config
with tempfile.TemporaryDirectory() as tmp:
    config = alembic_config(f"sqlite:///{pathlib.Path(tmp) / 'scratch.db'}")
    command.upgrade(config, "head")
    command.revision(config, message=sys.argv[1], autogenerate=True)
"""


def ensure_venv(*, dev: bool) -> None:
    stamp = VENV / (".installed-dev" if dev else ".installed")
    fingerprint = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    # A test install is also good enough to serve from.
    candidates = [stamp] if dev else [stamp, VENV / ".installed-dev"]
    if any(c.exists() and c.read_text() == fingerprint for c in candidates):
        return
    if not PYTHON.exists():
        print("creating .venv", file=sys.stderr)
        venv.create(VENV, with_pip=True)
    target = ".[dev]" if dev else "."
    print(f"installing {target} into .venv", file=sys.stderr)
    pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    check(pip + ["--upgrade", "pip"])
    check(pip + ["--editable", target])
    stamp.write_text(fingerprint)


def check(command: list[str]) -> None:
    if code := run(command):
        raise SystemExit(code)


def run(command: list[str]) -> int:
    return subprocess.call(command, cwd=ROOT)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
