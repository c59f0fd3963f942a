"""Real HTTP servers on 127.0.0.1 ephemeral ports, each on its own thread and event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from aiohttp import web


@contextlib.contextmanager
def serve(app: web.Application) -> Iterator[str]:
    """Yields the base URL; the server stops when the block ends."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def start() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"] = runner
        holder["port"] = runner.addresses[0][1]
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop)
    if not ready.wait(10):
        raise RuntimeError("test server did not start")
    try:
        yield f"http://127.0.0.1:{holder['port']}"
    finally:
        runner = holder["runner"]
        assert isinstance(runner, web.AppRunner)
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def stock_app() -> web.Application:
    """A dependency answering `GET /stock/{sku}`: what the tap's tests and benchmark put behind the tap."""

    async def stock(request: web.Request) -> web.Response:
        return web.json_response({"sku": request.match_info["sku"], "stock": 3})

    app = web.Application()
    app.router.add_get("/stock/{sku}", stock)
    return app
