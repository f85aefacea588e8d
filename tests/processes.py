"""Running calnotify's commands and its server as processes of their own."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest


def calnotify(database_url: str, *args: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-m", "calnotify", *args],
        env={**os.environ, "CALNOTIFY_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    parsed: dict[str, object] = json.loads(result.stdout)
    return parsed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    base_url: str
    database_url: str


@contextmanager
def start_server(
    database_url: str, *extra: str, env: dict[str, str] | None = None
) -> Iterator[Server]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "calnotify", "serve", "--port", str(port), *extra],
        env={**os.environ, **(env or {}), "CALNOTIFY_DATABASE_URL": database_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"calnotify serve did not start:\n{output}")
            time.sleep(0.1)
        yield Server(base_url=base_url, database_url=database_url)
    finally:
        process.terminate()
        process.wait(timeout=10)
