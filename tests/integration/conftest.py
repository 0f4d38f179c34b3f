"""Services for the integration tests: a Redis (from CI, or a private one for the session)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

URL_VARIABLE = "AIOPOSTHOG_TEST_REDIS_URL"
REQUIRE_VARIABLE = "AIOPOSTHOG_REQUIRE_SERVICES"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a Redis to test against (see the module docstring)."""
    url = os.environ.get(URL_VARIABLE)
    if url:
        yield url
        return
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"{REQUIRE_VARIABLE}=1 but {URL_VARIABLE} is not set", pytrace=False)
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(f"no Redis: set {URL_VARIABLE} or install redis-server")
    workdir = tmp_path_factory.mktemp("redis")
    for _attempt in range(3):  # the free port may be taken between the probe and the start
        port = free_port()
        command = [binary, "--port", str(port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(workdir)]
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while server.poll() is None and time.monotonic() < deadline:
            if answers_ping(port):
                break
            time.sleep(0.02)
        if server.poll() is None and answers_ping(port):
            break
        server.kill()
        server.wait()
    else:
        pytest.fail("could not start a private redis-server")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
