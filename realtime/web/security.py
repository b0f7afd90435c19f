"""What every polyp-live web page shares: the address it binds, the access token, the headers.

A page binds 127.0.0.1 unless told otherwise. Bound to any other address it refuses every request
that does not carry the access token (``--web-token``, or one generated and printed at start): as
``?token=`` on the first page load (which then sets an HttpOnly cookie), the cookie, or an
``Authorization: Bearer`` header. Every response carries a Content-Security-Policy that allows only
the package's own scripts and styles: the suite may have no internet, and a page that loaded a CDN
would be a page that breaks there.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from polyp_live.core.errors import UsageError

COOKIE = "polyp_live_token"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")


@dataclass(frozen=True)
class WebAddress:
    """Where a page listens, and the token it asks for (None on loopback without ``--web-token``)."""

    host: str
    port: int
    token: str | None
    generated: bool = False   # the token was made up at start (print it: nobody else knows it)

    @property
    def url(self) -> str:
        """The address to open, with the token when one is needed."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.host in ("0.0.0.0", "::"):
            host = "HOST"
        query = f"/?token={self.token}" if self.token else "/"
        return f"http://{host}:{self.port}{query}"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_web_address(text: str, token: str | None = None, option: str = "--web") -> WebAddress:
    """``[HOST:]PORT`` (HOST 127.0.0.1 by default) and the token rule for that host.

    Raises:
        UsageError: the text is not ``[HOST:]PORT`` with a port in 1..65535, or the token is too short.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 <= port < 65536:  # 0: any free port (the address printed at start says which)
        raise UsageError(f"{option} {text}: expected [HOST:]PORT with a port from 1 to 65535, e.g. {option} 8080 "
                         f"or {option} 0.0.0.0:8080")
    if token is not None and len(token) < 8:
        raise UsageError("--web-token must be at least 8 characters (or leave it out: one is generated)")
    if token is None and not is_loopback(host):
        return WebAddress(host, port, secrets.token_urlsafe(18), generated=True)
    return WebAddress(host, port, token)


def token_matches(request, token: str | None) -> bool:
    """The request carries ``token`` (query, cookie or bearer header); always True without a token."""
    if token is None:
        return True
    offered = (request.query.get("token") or request.cookies.get(COOKIE) or
               request.headers.get("Authorization", "").removeprefix("Bearer ").strip())
    return bool(offered) and hmac.compare_digest(offered.encode(), token.encode())


def same_origin(request) -> bool:
    """The request comes from this server's own page (or from no page at all: a script or VLC).

    A WebSocket or a WebRTC offer from another site's page would carry that site's Origin; refusing
    it keeps a page the user happens to open elsewhere from driving the view.
    """
    origin = request.headers.get("Origin")
    if not origin:
        return True
    from urllib.parse import urlsplit
    return urlsplit(origin).netloc == request.host


def middlewares(token: str | None) -> list:
    """aiohttp middlewares: the token check on every request, then the security headers on every answer."""
    from aiohttp import web

    @web.middleware
    async def guard(request, handler):
        if not token_matches(request, token):
            response = web.Response(status=403, text="polyp-live: wrong or missing access token; open the address "
                                                     "printed at start (it ends in ?token=...)\n")
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = exc
            if token is not None and request.query.get("token") and isinstance(response, web.StreamResponse) \
                    and not response.prepared:
                response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
        if not response.prepared:
            secure_headers(response.headers)
        return response

    return [guard]


def secure_headers(headers) -> None:
    """Set the Content-Security-Policy and its companions on a response's headers."""
    headers["Content-Security-Policy"] = CSP
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Cache-Control"] = headers.get("Cache-Control", "no-store")


def static_dir() -> Path:
    """The packaged HTML, JavaScript and CSS (no CDN)."""
    return Path(str(files("polyp_live.realtime.web") / "static"))


def static_response(name: str):
    """A packaged file as an aiohttp response (404 when there is no such file)."""
    from aiohttp import web
    path = static_dir() / name
    if "/" in name or not path.is_file():
        raise web.HTTPNotFound(text=f"no such file: {name}\n")
    return web.FileResponse(path)


def add_page_routes(app, page: str) -> None:
    """``/`` serves the packaged ``page``, ``/static/NAME`` its scripts and styles, ``/favicon.ico`` nothing."""
    from aiohttp import web
    app.router.add_get("/", lambda r: static_response(page))
    app.router.add_get("/favicon.ico", lambda r: web.Response(status=204))
    app.router.add_get("/static/{name}", lambda r: static_response(r.match_info["name"]))


async def listen(runner, address: WebAddress, option: str) -> int:
    """Start serving ``runner`` (set up) at ``address``; the port bound (``address.port`` 0: any free one).

    Raises:
        UsageError: the address cannot be bound (in use, not this machine's, not allowed); the runner
            is cleaned up.
    """
    from aiohttp import web
    site = web.TCPSite(runner, address.host, address.port, shutdown_timeout=0.5)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise UsageError(f"{option} {address.host}:{address.port}: cannot listen there ({exc.strerror or exc}); "
                         "choose another port or address") from None
    return site._server.sockets[0].getsockname()[1]


def require_aiohttp(what: str = "--web") -> None:
    """Raise a one-line UsageError naming the extra when aiohttp is not installed."""
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise UsageError(f"{what} needs the web extra: pip install 'polyp-live[web]'") from None
