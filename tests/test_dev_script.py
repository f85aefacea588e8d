"""``python3 dev.py serve``, the README's first command, as a process."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.processes import free_port

ROOT = Path(__file__).resolve().parent.parent


def load_dev_script() -> object:
    spec = importlib.util.spec_from_file_location("dev_script", ROOT / "dev.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sigterm_to_dev_py_serve_stops_calnotify(tmp_path: Path) -> None:
    dev = load_dev_script()
    if not dev.is_installed(dev=False):  # type: ignore[attr-defined]
        pytest.skip("dev.py serve test skipped: .venv is not installed by dev.py")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "dev.py"), "serve", "--port", str(port)],
        env={**os.environ, "CALNOTIFY_DATABASE_URL": f"sqlite:///{tmp_path / 'cal.db'}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "dev.py serve exited before answering"
            assert time.monotonic() < deadline, "dev.py serve did not answer within 30 s"
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) is not None
    finally:
        if process.poll() is None:
            process.kill()
    # The signal reached calnotify itself: nothing is left holding the port.
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the port still answers after SIGTERM"


def test_a_python_without_ensurepip_leaves_no_half_made_venv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dev = load_dev_script()
    target = tmp_path / ".venv"

    def create_without_pip(path: Path, *, with_pip: bool) -> None:
        # What venv.create does on Debian without python3-venv: the folder, then ensurepip fails.
        (path / "bin").mkdir(parents=True)
        (path / "bin" / "python").touch()
        raise subprocess.CalledProcessError(1, ["python", "-m", "ensurepip"])

    monkeypatch.setattr(dev, "VENV", target)
    monkeypatch.setattr(dev.venv, "create", create_without_pip)  # type: ignore[attr-defined]
    with pytest.raises(SystemExit) as exited:
        dev.create_venv()  # type: ignore[attr-defined]
    assert exited.value.code == 1
    assert not target.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "creating .venv"
    assert len(err) == 2 and "install the python3-venv package" in err[1]
