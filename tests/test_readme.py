"""The README's walkthrough, run as a reader would: bash, curl and jq against `calnotify serve`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import start_server

README = Path(__file__).resolve().parent.parent / "README.md"


def walkthrough() -> str:
    text = README.read_text()
    section = text[text.index("## Five minutes with curl") :]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "the walkthrough's shell block is missing"
    return match.group(1)


def test_the_readme_walkthrough_runs_top_to_bottom(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    missing = [tool for tool in ("bash", "curl", "jq") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"README walkthrough skipped: {', '.join(missing)} not installed")
    script = walkthrough()
    assert "source .venv/bin/activate" in script
    assert "http://127.0.0.1:8000" in script
    database_url = f"sqlite:///{tmp_path / 'calnotify.db'}"
    with start_server(database_url) as server:
        script = script.replace(
            "source .venv/bin/activate", f"source {Path(sys.prefix) / 'bin' / 'activate'}"
        ).replace("http://127.0.0.1:8000", server.base_url)
        result = subprocess.run(
            [str(bash), "-e", "-o", "pipefail", "-c", script],
            cwd=tmp_path,
            env={**os.environ, "CALNOTIFY_DATABASE_URL": database_url},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    # Ends with something visible: the booked email in the outbox, the admin's in-app
    # notice, the reminder waiting for its time, the token listed and then revoked.
    assert '"subject": "See you ' in out and '"to": "sam@example.com"' in out
    assert '"title": "Appointment booked: Cleanings"' in out
    assert '"status": "scheduled"' in out
    assert "guest cannot receive sms notifications" in out
    assert '"revoked": true' in out
    assert "null" not in out.replace('"revokedAt": null', "")
