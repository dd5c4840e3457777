"""The operability endpoint: `/healthz` (the loop is alive), `/readyz` (SQS is reachable), `/metrics`.

`HealthServer` is an aiohttp server in the sentinel's own event loop: if the loop is blocked, the
probes time out, which is what a liveness check should see. `check_health` is the client side for
`kvs-sentinel health`, an ECS container health check that needs no curl in the image (stdlib only).
"""

from __future__ import annotations

import inspect
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from kvs_sentinel.metrics import Metrics

log = structlog.get_logger("kvs_sentinel.health")

Probe = Callable[[], bool | Awaitable[bool]]
DEFAULT_PORT = 8080
DEFAULT_HEALTH_URL = f"http://127.0.0.1:{DEFAULT_PORT}/healthz"


class HealthServer:
    """Serve the probes and the metrics on `host:port` (port 0: any free port, see `port` once started)."""

    def __init__(
        self,
        port: int = DEFAULT_PORT,
        is_alive: Probe = lambda: True,
        is_ready: Probe = lambda: True,
        metrics: Metrics | None = None,
        *,
        host: str = "0.0.0.0",
    ) -> None:
        self.host = host
        self.requested_port = port
        self.is_alive = is_alive
        self.is_ready = is_ready
        self.metrics = metrics
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the health server is not started")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def start(self) -> None:
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.requested_port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("health_server_started", host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _healthz(self, request: web.Request) -> web.Response:
        return await _answer(self.is_alive, "alive", "not alive")

    async def _readyz(self, request: web.Request) -> web.Response:
        return await _answer(self.is_ready, "ready", "not ready")

    async def _metrics(self, request: web.Request) -> web.Response:
        if self.metrics is None:
            return web.Response(status=404, text="metrics are not enabled\n")
        response = web.Response(body=self.metrics.render())
        response.headers["Content-Type"] = self.metrics.content_type
        return response


async def _answer(probe: Probe, good: str, bad: str) -> web.Response:
    try:
        result = probe()
        ok = bool(await result) if inspect.isawaitable(result) else bool(result)
    except Exception as exc:  # a probe that fails answers "no", and says why in the log
        log.error("probe_failed", probe=bad, error=repr(exc))
        ok = False
    return web.Response(status=200 if ok else 503, text=(good if ok else bad) + "\n")


def check_health(
    url: str = DEFAULT_HEALTH_URL, timeout: float = 3.0, report: Callable[[str], None] | None = None
) -> int:
    """0 if `url` answers 200 within `timeout` seconds, else 1; `report` gets a one-line reason."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through HTTP_PROXY
    try:
        with opener.open(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        status, reason = exc.code, f"{url}: HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        status, reason = 0, f"{url}: {getattr(exc, 'reason', exc)}"
    else:
        reason = f"{url}: HTTP {status}"
    if report is not None:
        report(("healthy: " if status == 200 else "unhealthy: ") + reason)
    return 0 if status == 200 else 1
