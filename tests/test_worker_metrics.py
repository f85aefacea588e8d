"""``calnotify worker --metrics-port``: a worker serves the metrics of its own sends, as real
processes scraped over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import httpx

from calnotify.api.metrics_server import metrics_url
from calnotify.config import Settings
from calnotify.ops.summary import startup_summary
from tests.processes import free_port, start_server
from tests.test_processes import book, setup_location, wait_for

TOKEN = "a-metrics-token-of-some-length"
REFUSED = {
    "statusCode": 401,
    "message": "Invalid metrics token: send Authorization: Bearer <CALNOTIFY_METRICS_TOKEN>",
    "error": "Unauthorized",
}


def start_worker(database_url: str, *extra: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "calnotify", "worker", *extra],
        env={**os.environ, **env, "CALNOTIFY_DATABASE_URL": database_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def value(metrics: str, line_start: str) -> float:
    [line] = [line for line in metrics.splitlines() if line.startswith(line_start + " ")]
    return float(line.rsplit(" ", 1)[1])


async def test_a_worker_serves_the_metrics_of_its_sends(database_url: str) -> None:
    env = {"CALNOTIFY_METRICS_TOKEN": TOKEN}
    with start_server(database_url, "--no-worker", env=env) as server:
        client, ids = await setup_location(server)
        port = free_port()
        worker = start_worker(database_url, "--metrics-port", str(port), env=env)
        scraper = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5)
        try:
            async with contextlib.aclosing(client), contextlib.aclosing(scraper):
                await client.post(
                    f"/calendars/{ids['calendar']}/notifications",
                    json=[
                        {
                            "receiverType": "contact",
                            "channel": "email",
                            "notificationType": "booked",
                        }
                    ],
                )

                async def answering() -> bool:
                    with contextlib.suppress(httpx.TransportError):
                        return (await scraper.get("/healthz")).status_code == 200
                    return False

                await wait_for(answering, within=30, step=0.1)
                # The API's token rule, and its answer.
                refused = await scraper.get("/metrics")
                assert refused.status_code == 401
                assert refused.json() == REFUSED
                wrong = await scraper.get("/metrics", headers={"Authorization": "Bearer nope"})
                assert wrong.status_code == 401

                booked = await book(client, ids, datetime.now(UTC) + timedelta(days=1))

                async def sent() -> bool:
                    answer = await client.get("/deliveries", params={"appointmentId": booked["id"]})
                    return [d["status"] for d in answer.json()["deliveries"]] == ["sent"]

                await wait_for(sent, within=10)
                scraped = await scraper.get(
                    "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
                )
                assert scraped.status_code == 200
                assert scraped.headers["content-type"].startswith("text/plain")
                metrics = scraped.text
                assert value(metrics, 'calnotify_sends_total{channel="email",status="sent"}') >= 1
                assert value(metrics, "calnotify_send_lateness_seconds_count") >= 1
                assert value(metrics, "calnotify_claims_total") >= 1
                assert "# TYPE calnotify_queue_depth gauge" in metrics
                # The API process sent nothing: its own counters show no send.
                api = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
                assert "calnotify_sends_total{" not in api.text
                assert value(api.text, "calnotify_send_lateness_seconds_count") == 0
        finally:
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(timeout=30)
        output = worker.stdout.read().decode() if worker.stdout else ""
        assert code == 0, output
        assert "finishing messages in flight" in output
        assert "Traceback" not in output
        assert f"metrics: http://127.0.0.1:{port}/metrics (needs Authorization" in output
        # Stopped with the worker.
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0


async def test_a_taken_metrics_port_stops_the_worker_at_once(database_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = start_worker(database_url, "--metrics-port", str(port), env={})
        code = await asyncio.to_thread(worker.wait, 30)
    output = worker.stdout.read().decode() if worker.stdout else ""
    assert code == 1
    assert f"calnotify: cannot serve metrics on 127.0.0.1:{port}: " in output
    assert "Traceback" not in output


async def test_the_metrics_address_comes_from_the_environment(database_url: str) -> None:
    port = free_port()
    # Any loopback address will do (Linux answers on the whole of 127.0.0.0/8).
    env = {"CALNOTIFY_WORKER_METRICS_PORT": str(port), "CALNOTIFY_WORKER_METRICS_HOST": "127.0.0.2"}
    worker = start_worker(database_url, env=env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.2:{port}", timeout=5) as scraper:

            async def answering() -> bool:
                with contextlib.suppress(httpx.TransportError):
                    return (await scraper.get("/metrics")).status_code == 200
                return False

            await wait_for(answering, within=30, step=0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=30)
    output = worker.stdout.read().decode() if worker.stdout else ""
    assert code == 0, output
    assert f"metrics: http://127.0.0.2:{port}/metrics\n" in output


def test_the_startup_summary_says_where_the_metrics_are() -> None:
    settings = Settings(database_url="sqlite:///./calnotify.db")
    lines = startup_summary(settings, mode="worker", metrics="http://127.0.0.1:9100/metrics")
    assert lines[-2:] == ["mode: worker", "metrics: http://127.0.0.1:9100/metrics"]
    assert not any(line.startswith("metrics") for line in startup_summary(settings, mode="x"))
    assert metrics_url("::1", 9100) == "http://[::1]:9100/metrics"
