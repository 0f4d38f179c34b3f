"""What the runner, the workers and the sink share: the event, the sink's HTTP helpers, paths.

Kept free of any client import, so that importing it costs every worker the same (peak RSS
is compared across clients, and a worker must carry only its own client).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any

__all__ = [
    "API_KEY",
    "BENCH_DIR",
    "EVENT_NAME",
    "REPO_DIR",
    "SRC_DIR",
    "USERS",
    "child_env",
    "properties",
    "python",
    "sink_get",
    "sink_post",
]

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
SRC_DIR = Path(os.environ.get("AIOPOSTHOG_BENCH_SRC") or REPO_DIR / "src").resolve()
"""The aioposthog source measured: this checkout's ``src``, or ``$AIOPOSTHOG_BENCH_SRC``
(e.g. an unpacked ``git archive`` of another commit, to compare two versions)."""
# Measure that source even when a script here is started by hand and another aioposthog is
# installed (the runner's children get the same order through PYTHONPATH).
if str(SRC_DIR) not in sys.path:
    sys.path.insert(0, str(SRC_DIR))
API_KEY = "phc_benchmark_local_only"
EVENT_NAME = "order completed"

# 1,000 users, built once: string formatting per event would be a cost common to every client
# that only blurs the differences between them.
USERS = [f"user-{i}" for i in range(1000)]
_PAGES = [
    "https://shop.example.com/",
    "https://shop.example.com/pricing",
    "https://shop.example.com/docs",
    "https://shop.example.com/blog",
    "https://shop.example.com/signup",
    "https://shop.example.com/checkout",
    "https://shop.example.com/account",
]
_PLANS = ["free", "starter", "pro", "enterprise"]


def properties(i: int) -> dict[str, Any]:
    """The 10 properties of event ``i``: a fresh dict per call, as a request handler builds."""
    return {
        "$current_url": _PAGES[i % 7],
        "plan": _PLANS[i % 4],
        "amount": i * 0.25,
        "items": i % 7 + 1,
        "coupon": None if i % 3 else "WELCOME10",
        "ab_bucket": i % 2,
        "returning": i % 5 == 0,
        "country": "NZ",
        "session_seconds": i % 900,
        "referrer": "https://www.example.com/blog/a-post",
    }


# The sink is on loopback; a proxy from the environment must never see the benchmark's traffic.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def sink_get(url: str, path: str, timeout: float = 30.0) -> dict[str, Any]:
    """GET a JSON document from the sink (blocking; workers call it from a thread)."""
    with _NO_PROXY.open(url + path, timeout=timeout) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def sink_post(url: str, path: str, timeout: float = 30.0, payload: Any = None) -> dict[str, Any]:
    """POST to a sink control route (an empty body, or ``payload`` as JSON); its JSON answer."""
    data = b"" if payload is None else json.dumps(payload).encode()
    headers = {} if payload is None else {"Content-Type": "application/json"}
    request = urllib.request.Request(url + path, data=data, headers=headers, method="POST")
    with _NO_PROXY.open(request, timeout=timeout) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def child_env() -> dict[str, str]:
    """The environment of the sink and worker processes.

    `SRC_DIR` comes first on the path, so the benchmark measures this checkout (or the
    source named by ``$AIOPOSTHOG_BENCH_SRC``) even when another aioposthog is installed.
    Proxies are removed and every ``POSTHOG_*`` variable is dropped: a stray
    ``POSTHOG_HOST`` or ``POSTHOG_FLUSH_AT`` in the caller's shell would otherwise change one
    client's configuration and not the others'.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.upper().startswith("POSTHOG_")
        and key.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    paths = [str(SRC_DIR), str(BENCH_DIR)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    # Unbuffered output: the runner reads the sink's first line while it keeps running.
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def python() -> str:
    """The interpreter the runner was started with (children use the same one)."""
    return sys.executable
