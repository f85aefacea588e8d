"""deploy/: the files an operator copies into place."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from calnotify.config import Settings

ENV_FILE = Path(__file__).resolve().parent.parent / "deploy" / "calnotify.env"

# A line that systemd's EnvironmentFile= and a POSIX shell (`set -a; . FILE`) read alike:
# a bare value without shell characters, or one in single quotes.
PORTABLE = re.compile(r"""^CALNOTIFY_[A-Z0-9_]+=(?:[^\s'"\\$`<>|&;()#]*|'[^'\n]*')$""")


def settings_lines() -> list[str]:
    return [
        line
        for line in ENV_FILE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_env_file_reads_the_same_in_a_shell_and_in_systemd() -> None:
    for line in settings_lines():
        assert PORTABLE.match(line), f"quote it in single quotes: {line}"
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh")
    loaded = subprocess.run(
        [sh, "-c", 'set -a; . "$1"; set +a; env', "sh", str(ENV_FILE)],
        env={},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    from_shell = dict(
        line.split("=", 1) for line in loaded.splitlines() if line.startswith("CALNOTIFY_")
    )
    as_written = {
        name: value.removeprefix("'").removesuffix("'")
        for name, value in (line.split("=", 1) for line in settings_lines())
    }
    assert from_shell == as_written
    assert from_shell["CALNOTIFY_EMAIL_FROM"] == "Notifications <notifications@example.com>"


def test_env_file_settings_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (line.split("=", 1) for line in settings_lines()):
        monkeypatch.setenv(name, value.removeprefix("'").removesuffix("'"))
    settings = Settings()
    assert settings.email_from == "Notifications <notifications@example.com>"
    assert settings.database_url.startswith("postgresql://")
