#!/usr/bin/env python3
"""Install calnotify as a user would and drive it once: the CI step that catches what a
developer's environment hides (a runtime dependency only the test tools bring, a migration or
static file left out of the wheel, a server that outlives SIGTERM).

    python3 .ci/smoke_install.py

Builds the wheel, installs it into a new virtualenv from requirements.lock (hash-checked, no
extras), starts `calnotify serve` on a free port from an empty folder, books an appointment
through the API, waits for its booked email in the outbox, then stops the server with SIGTERM
and checks that the port is free again. Only the standard library is used here.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="calnotify-smoke-") as tmp:
        work = Path(tmp)
        wheel = build_wheel(work / "dist")
        check_wheel_contents(wheel)
        bin_dir = install(wheel, work / "venv")
        version = run([str(bin_dir / "calnotify"), "--version"], cwd=work).strip()
        step(f"installed {version} from {wheel.name}")
        serve_and_book(bin_dir, work)
    step("ok")
    return 0


def step(text: str) -> None:
    print(f"smoke: {text}", flush=True)


def run(command: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode != 0:
        raise SystemExit(
            f"smoke: {' '.join(command)} failed ({result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )
    return result.stdout


def build_wheel(out: Path) -> Path:
    step("building the wheel")
    python = ROOT / ".venv" / "bin" / "python"
    run([str(python), "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)], cwd=ROOT)
    (wheel,) = out.glob("calnotify-*.whl")
    return wheel


def check_wheel_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = ROOT / "src"
    expected = [
        path.relative_to(sources).as_posix()
        for pattern in (
            "calnotify/db/migrations/**/*",
            "calnotify/**/static/**/*",
            "calnotify/console/templates/*",
            "calnotify/actions/templates/*",
        )
        for path in sources.glob(pattern)
        if path.is_file() and "__pycache__" not in path.parts
    ]
    missing = [name for name in expected if name not in names]
    if missing:
        raise SystemExit(f"smoke: the wheel lacks {len(missing)} files, e.g. {missing[:5]}")
    step(f"wheel holds the {len(expected)} migration, template and static files")


def install(wheel: Path, target: Path) -> Path:
    step("installing requirements.lock and the wheel into a new virtualenv (no extras)")
    venv.create(target, with_pip=True)
    bin_dir = target / "bin"
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet"]
    pip.append("--disable-pip-version-check")
    run([*pip, "--require-hashes", "-r", str(ROOT / "requirements.lock")], cwd=target)
    run([*pip, "--no-deps", str(wheel)], cwd=target)
    return bin_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Api:
    def __init__(self, base: str, token: str = "") -> None:
        self.base = base
        self.token = token

    def call(self, method: str, path: str, body: object = None) -> object:
        headers = {"Version": "2021-04-15", "Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise SystemExit(f"smoke: {method} {path} → {exc.code}: {exc.read()!r}") from exc


def serve_and_book(bin_dir: Path, work: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALNOTIFY_")}
    env["CALNOTIFY_DATABASE_URL"] = f"sqlite:///{work / 'smoke.db'}"
    calnotify = str(bin_dir / "calnotify")
    log = (work / "serve.log").open("w")
    server = subprocess.Popen(
        [calnotify, "serve", "--port", str(port)], cwd=work, env=env, stdout=log, stderr=log
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, server, work / "serve.log")
        step(f"calnotify serve answers on port {port}")

        def admin(*args: str) -> dict[str, str]:
            parsed: dict[str, str] = json.loads(run([calnotify, *args], cwd=work, env=env))
            return parsed

        location = admin("locations", "create", "--name", "Smoke Dental", "--timezone", "UTC")
        token = admin("tokens", "create", "--location", location["id"])["token"]
        api = Api(base, token)
        calendar: dict[str, dict[str, str]] = api.call(  # type: ignore[assignment]
            "POST", "/calendars/", {"locationId": location["id"], "name": "Cleanings"}
        )
        calendar_id = calendar["calendar"]["id"]
        api.call(
            "POST",
            f"/calendars/{calendar_id}/notifications",
            [
                {
                    "receiverType": "contact",
                    "channel": "email",
                    "notificationType": "booked",
                    "subject": "Booked, {{contact.first_name}}",
                }
            ],
        )
        contact: dict[str, dict[str, str]] = api.call(  # type: ignore[assignment]
            "POST",
            "/contacts/",
            {"locationId": location["id"], "firstName": "Sam", "email": "sam@example.com"},
        )
        start = time.time() + 86400
        api.call(
            "POST",
            "/calendars/events/appointments",
            {
                "calendarId": calendar_id,
                "locationId": location["id"],
                "contactId": contact["contact"]["id"],
                "startTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
            },
        )
        step("booked an appointment through the API")
        deadline = time.monotonic() + 20
        while True:
            outbox: dict[str, list[dict[str, str]]] = api.call("GET", "/outbox")  # type: ignore[assignment]
            subjects = [m.get("subject") for m in outbox.get("messages", [])]
            if "Booked, Sam" in subjects:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"smoke: no booked email in the outbox after 20 s: {outbox}")
            time.sleep(0.2)
        step("the booked email is in the outbox")
        for path, marker in (
            ("/console/sign-in", b"Access token"),
            ("/console/static/htmx-2.0.11.min.js", b"htmx"),
        ):
            with urllib.request.urlopen(api.base + path, timeout=10) as page:  # noqa: S310
                if marker not in page.read():
                    raise SystemExit(f"smoke: {path} does not show {marker!r}")
        step("the console's sign-in page and its script are served")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            raise SystemExit("smoke: calnotify serve did not stop within 30 s of SIGTERM") from None
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            raise SystemExit(f"smoke: port {port} still answers after the server stopped")
    step(f"SIGTERM stopped the server (exit {server.returncode}); port {port} is free")


def wait_healthy(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"smoke: calnotify serve did not start:\n{log.read_text()}")
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
