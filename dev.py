#!/usr/bin/env python3
"""Set up a local virtualenv and run calnotify or its tests. Needs only Python 3.11+.

    python3 dev.py serve [ARGS...]   install calnotify into .venv and run `calnotify serve ARGS`
    python3 dev.py test [ARGS...]    install calnotify with its test tools and run `pytest ARGS`
    python3 dev.py check             ruff, ruff format --check and mypy --strict on src/
    python3 dev.py setup             only install (with the test tools)
    python3 dev.py lock [--upgrade]  re-resolve requirements.lock and requirements-dev.lock
    python3 dev.py migration "MSG"   autogenerate an Alembic migration from the models

Dependencies are installed from the lock files (exact versions, checked against their
hashes); the project itself is installed in editable mode on top. The virtualenv is
re-installed only when pyproject.toml or a lock file changes, and is marked installed only
after every step succeeded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
RUNTIME_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
COMMANDS = {"serve", "test", "check", "setup", "lock", "migration"}


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs on whatever python3 is
        print("calnotify needs Python 3.11 or newer", file=sys.stderr)
        return 1
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    command, args = argv[0], argv[1:]
    ensure_venv(dev=command != "serve")
    if command == "serve":
        return exec_([str(BIN / "calnotify"), "serve", *args])
    if command == "test":
        return exec_([str(PYTHON), "-m", "pytest", *args])
    if command == "lock":
        return lock(args)
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
    lock_file = DEV_LOCK if dev else RUNTIME_LOCK
    if is_installed(dev=dev):
        return
    stamp.unlink(missing_ok=True)  # written again only once every step below succeeded
    if not PYTHON.exists():
        create_venv()
    print(f"installing {lock_file.name} and calnotify into .venv", file=sys.stderr)
    pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check", "install", "--quiet"]
    check([*pip, "--upgrade", "pip"])
    check([*pip, "--require-hashes", "--requirement", str(lock_file)])
    check([*pip, "--no-deps", "--editable", "."])
    stamp.write_text(fingerprint(lock_file))


def create_venv() -> None:
    """Create .venv with pip, or exit saying what is missing (and leave no .venv behind:
    a half-made one would pass for a virtualenv on the next run)."""
    print("creating .venv", file=sys.stderr)
    try:
        venv.create(VENV, with_pip=True)
    except (subprocess.CalledProcessError, OSError) as exc:
        shutil.rmtree(VENV, ignore_errors=True)
        if isinstance(exc, subprocess.CalledProcessError):
            # ensurepip failed: Debian and Ubuntu ship it in a separate package.
            version = f"{sys.version_info.major}.{sys.version_info.minor}"
            why = (
                "this Python has no ensurepip: install the python3-venv package (Debian/Ubuntu: "
                f"`sudo apt install python3-venv` or python{version}-venv) and run dev.py again"
            )
        else:
            why = f"{exc.strerror or exc}"
        print(f"dev.py: cannot create {VENV}: {why}", file=sys.stderr)
        raise SystemExit(1) from None


def is_installed(*, dev: bool) -> bool:
    """Whether .venv holds what ``dev.py serve`` (or, with ``dev``, the tests) needs.

    The dev lock pins the same versions as the runtime lock, so a test install serves too.
    """
    candidates = [(VENV / ".installed-dev", DEV_LOCK)]
    if not dev:
        candidates.append((VENV / ".installed", RUNTIME_LOCK))
    return any(s.exists() and s.read_text() == fingerprint(lock) for s, lock in candidates)


def fingerprint(lock_file: Path) -> str:
    return hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + lock_file.read_bytes()
    ).hexdigest()


def lock(args: list[str]) -> int:
    """Re-resolve both lock files from pyproject.toml (the runtime one within the dev one).

    Versions already locked are kept unless ``--upgrade`` is given.
    """
    env = {**os.environ, "CUSTOM_COMPILE_COMMAND": "python3 dev.py lock"}
    compile_ = [str(PYTHON), "-m", "piptools", "compile", "--quiet", "--generate-hashes"]
    compile_ += ["--allow-unsafe", "--strip-extras", "--no-emit-index-url", "--no-emit-find-links"]
    compile_ += args
    for extra in (
        ["--extra", "dev", "-o", str(DEV_LOCK)],
        ["-c", str(DEV_LOCK), "-o", str(RUNTIME_LOCK)],
    ):
        if code := subprocess.call([*compile_, *extra, "pyproject.toml"], cwd=ROOT, env=env):
            return code
    return 0


def check(command: list[str]) -> None:
    if code := run(command):
        print(f"dev.py: {' '.join(command[2:5])} … failed (exit {code})", file=sys.stderr)
        raise SystemExit(code)


def run(command: list[str]) -> int:
    return subprocess.call(command, cwd=ROOT)


def exec_(command: list[str]) -> int:
    """Become ``command``: signals sent to dev.py (SIGTERM, Ctrl-C) reach it directly."""
    os.chdir(ROOT)
    if os.name != "nt":
        os.execv(command[0], command)
    # Windows has no exec that keeps the process: run it and pass Ctrl-C/termination on.
    process = subprocess.Popen(command)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda s, _f: process.send_signal(s))
    return process.wait()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
