"""A Starlette (or FastAPI) app: one client for the app's lifetime, a context per request.

    uvicorn examples.starlette_app:app

Each request opens a PostHog context: captures inside it use the request's user without passing
it around, and carry the route as a tag. Flags are evaluated locally once per request.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aioposthog import AsyncPostHog, identify_context, new_context, tag

posthog = AsyncPostHog(
    os.environ.get("POSTHOG_API_KEY", "phc_example"),
    host=os.environ.get("POSTHOG_HOST", "http://127.0.0.1:8010"),
    overflow="drop_newest",  # never make a request wait for analytics
)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with posthog:  # starts the sender; on shutdown, delivers what is queued (10 s)
        yield


class PostHogContext(BaseHTTPMiddleware):
    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        with new_context():
            user = request.headers.get("x-user-id")
            if user:
                identify_context(user)
            tag("route", request.url.path)
            return await call_next(request)


async def checkout(request: Request) -> JSONResponse:
    user = request.headers.get("x-user-id", "anonymous")
    flags = await posthog.evaluate_flags(user)
    one_page = flags.get_flag("checkout-experiment") == "one-page"
    await posthog.capture("checkout started", flags=flags)  # the context supplies the user
    return JSONResponse({"one_page": one_page})


app = Starlette(routes=[Route("/checkout", checkout)], lifespan=lifespan)
app.add_middleware(PostHogContext)
