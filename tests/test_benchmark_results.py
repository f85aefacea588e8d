"""The send path's benchmarks carry the commit they measured (bench/RESULTS.md), and that
commit is the send path as it is: a change to the code that sends, without the drain, the
soak, the kill drill and the hostile templates measured again, fails here."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
MARKER = re.compile(r"send path measured at commit `([0-9a-f]{7,40})`")

#: The code a message goes through from its claim to its record.
SEND_PATH = (
    "src/calnotify/dispatch",
    "src/calnotify/deliveries/lifecycle",
    "src/calnotify/compose",
    "src/calnotify/channels",
    "src/calnotify/hooks/channel.py",
    "src/calnotify/hooks/prepare.py",
    "src/calnotify/actions/links.py",
    "src/calnotify/actions/tokens.py",
    "src/calnotify/actions/keys.py",
    "src/calnotify/templates/render.py",
    "src/calnotify/templates/liquid.py",
    "src/calnotify/db/engine.py",
    "src/calnotify/db/gate.py",
    "src/calnotify/db/group.py",
    "src/calnotify/db/sqlite_driver.py",
    "src/calnotify/db/statements.py",
    "src/calnotify/db/tx.py",
)


GIT = shutil.which("git")


def git(*args: str) -> subprocess.CompletedProcess[str]:
    assert GIT is not None
    return subprocess.run(
        [GIT, *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=60
    )


def test_the_send_path_was_measured_as_it_is() -> None:
    found = MARKER.search(RESULTS.read_text(encoding="utf-8"))
    assert found, "bench/RESULTS.md must say which commit its send path figures measured"
    measured = found.group(1)
    if GIT is None or git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout: the measured commit cannot be compared")
    if git("cat-file", "-e", f"{measured}^{{commit}}").returncode != 0:
        pytest.skip(f"commit {measured} is not in this clone's history (a shallow clone)")
    changed = git("diff", "--name-only", measured, "HEAD", "--", *SEND_PATH).stdout.split()
    assert changed == [], (
        f"the send path changed since {measured}, where bench/RESULTS.md measured it: re-run "
        "bench/drain.py, bench/soak.py, bench/drills/kill_worker.py and "
        "bench/drills/hostile_templates.py and update the figures and the commit "
        f"(changed: {', '.join(changed)})"
    )
