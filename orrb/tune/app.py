"""The web app of ``orrb tune``: a Starlette app serving the page and one WebSocket.

Routes:

- ``GET /``: the page (``static/index.html``); ``GET /static/NAME``: its script and style
  (only the files shipped in ``orrb/tune/static``; any other name is a 404);
- ``GET /config.json``: the chain being tuned, as a download;
- ``GET|POST /login``: the login form, when the app has a shared secret;
- ``WS /ws``: JSON messages both ways (see :class:`Connection`).

Who may use it: with a shared secret (``ORRB_SECRET`` or ``--secret-file``, required for a
non-loopback bind), every route but the login form needs the session cookie that the
secret buys, given as ``?token=SECRET`` in the address or typed into the form. Bound to a
loopback address, requests must name that address as their ``Host`` (a page elsewhere cannot
reach the app by rebinding a DNS name to 127.0.0.1), and a WebSocket opened by a browser must
come from the app's own page (its ``Origin``).

Limits: a WebSocket message over ``MAX_MESSAGE`` bytes is refused with an error, one over
``MAX_FRAME`` ends that connection (the server's own limit); a login form body over 4 KiB
is refused. Neither stops the app.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import re
import urllib.parse
from typing import Any

from orrb.extras import import_optional
from orrb.tune.controls import describe_types
from orrb.tune.session import MODALITIES, EditError, TuneSession

__all__ = ["MAX_FRAME", "MAX_MESSAGE", "STATIC_DIR", "build_app"]

log = logging.getLogger("orrb.tune")

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
MAX_MESSAGE = 512 * 1024   # bytes of one WebSocket message the app reads (an uploaded config fits)
MAX_FRAME = 1024 * 1024    # the WebSocket server's own limit: larger messages close the connection
_STATIC_NAME = re.compile(r"^[a-z0-9_-]+\.(js|css|html|png)$")
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html; charset=utf-8", ".png": "image/png"}
COOKIE = "orrb_tune"


def _session_cookie(secret: bytes) -> str:
    return hmac.new(secret, b"orrb-tune-session", hashlib.sha256).hexdigest()


def build_app(session: TuneSession, *, secret: bytes | None = None, allowed_hosts: set[str] | None = None):
    """The Starlette app serving ``session``.

    Args:
        session: the started tuning session.
        secret: the shared secret (``None``: no login).
        allowed_hosts: the ``Host`` header values accepted (``None``: any).
    """
    import_optional("starlette", "orrb tune")  # says which extra is missing
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    cookie_value = _session_cookie(secret) if secret else None

    def host_ok(headers) -> bool:
        return allowed_hosts is None or headers.get("host", "") in allowed_hosts

    def authorized(cookies) -> bool:
        return cookie_value is None or hmac.compare_digest(cookies.get(COOKIE, ""), cookie_value)

    def with_cookie(response: Response) -> Response:
        response.set_cookie(COOKIE, cookie_value, httponly=True, samesite="strict")
        return response

    def guard(request: Request) -> Response | None:
        if not host_ok(request.headers):
            return PlainTextResponse("unknown Host: open the address 'orrb tune' printed", status_code=421)
        if not authorized(request.cookies):
            token = request.query_params.get("token")
            if token is not None and hmac.compare_digest(token.encode(), secret):
                return with_cookie(RedirectResponse(request.url.path, status_code=303))
            return RedirectResponse("/login", status_code=303)
        return None

    async def index(request: Request) -> Response:
        refused = guard(request)
        if refused is not None:
            return refused
        with open(os.path.join(STATIC_DIR, "index.html"), encoding="utf-8") as f:
            return HTMLResponse(f.read(), headers={"Cache-Control": "no-store"})

    async def static(request: Request) -> Response:
        refused = guard(request)
        if refused is not None:
            return refused
        name = request.path_params["name"]
        missing = PlainTextResponse(f"no such file: {name[:80]!r}", status_code=404)
        if not _STATIC_NAME.match(name):  # a plain file name: no folder, no dots before the suffix
            return missing
        path = os.path.realpath(os.path.join(STATIC_DIR, name))
        if os.path.dirname(path) != os.path.realpath(STATIC_DIR) or not os.path.isfile(path):
            return missing
        with open(path, "rb") as f:
            return Response(f.read(), media_type=_TYPES[os.path.splitext(path)[1]],
                            headers={"Cache-Control": "no-store"})

    async def config_json(request: Request) -> Response:
        refused = guard(request)
        if refused is not None:
            return refused
        name = os.path.basename(session.save_path or session.source or "renderer_config.json")
        return Response(session.chain.to_json() + "\n", media_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="{_safe_filename(name)}"'})

    async def login(request: Request) -> Response:
        if not host_ok(request.headers):
            return PlainTextResponse("unknown Host: open the address 'orrb tune' printed", status_code=421)
        if cookie_value is None:
            return RedirectResponse("/", status_code=303)
        message = ""
        if request.method == "POST":
            body, size = b"", 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > 1 << 20:
                    break  # the server then drops the connection
                if size <= 4096:
                    body += chunk
            if size > 4096:  # read (up to 1 MiB) and dropped, so the client gets the answer
                return PlainTextResponse("login form too large (at most 4096 bytes)", status_code=413)
            fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
            given = (fields.get("secret") or [""])[0]
            if hmac.compare_digest(given.encode(), secret):
                return with_cookie(RedirectResponse("/", status_code=303))
            message = "<p class=error>wrong secret</p>"
        return HTMLResponse(_LOGIN.format(message=message), status_code=401 if message else 200)

    async def websocket(ws: WebSocket) -> None:
        origin = ws.headers.get("origin")
        host = ws.headers.get("host", "")
        if not host_ok(ws.headers) or not authorized(ws.cookies) or (
                origin is not None and urllib.parse.urlsplit(origin).netloc != host):
            await ws.close(code=1008)
            return
        await ws.accept()
        await Connection(ws, session, run_in_threadpool, WebSocketDisconnect).serve()

    return Starlette(routes=[
        Route("/", index),
        Route("/static/{name:path}", static),
        Route("/config.json", config_json),
        Route("/login", login, methods=["GET", "POST"]),
        WebSocketRoute("/ws", websocket),
    ])


def _safe_filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:100] or "renderer_config.json"


class Connection:
    """One page's WebSocket.

    The page sends ``{"op": ..., "ref": n, ...}``: ``hello``; ``set`` (component, property,
    value); ``path`` (component, path); ``add`` (type, name?); ``remove`` (component);
    ``move`` (component, to); ``view`` (modality?, state?, new_seeds?); ``load`` (text,
    filename); ``save``; ``reset``. The app answers ``hello`` (component types and their
    controls, cameras, modalities, state rows), ``state`` (the chain, its JSON and diff,
    broadcast to every page after each accepted edit), ``frame`` (the grid), ``status``,
    ``banner``, ``error`` (with the ``ref``, component and property it belongs to),
    ``ack``, ``saved`` and ``download``.

    Frames go out latest-wins: a page that reads slowly gets the newest grid, not a backlog.
    """

    def __init__(self, ws, session: TuneSession, run_in_threadpool, disconnect_type):
        self.ws = ws
        self.session = session
        self.run = run_in_threadpool
        self.disconnect_type = disconnect_type
        self.outbox: list[dict[str, Any]] = []
        self.ready = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    def post(self, message: dict[str, Any]) -> None:
        """Queues a message (any thread); a newer frame or status replaces a queued one."""
        def put() -> None:
            if message.get("type") in ("frame", "status", "state"):
                self.outbox[:] = [m for m in self.outbox if m.get("type") != message["type"]]
            self.outbox.append(message)
            self.ready.set()

        try:
            self.loop.call_soon_threadsafe(put)
        except RuntimeError:  # the loop is closed: the page is gone
            pass

    async def serve(self) -> None:
        unsubscribe = self.session.subscribe(self.post)
        sender = asyncio.create_task(self._send_loop())
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                await self._handle(message)
        except self.disconnect_type:
            pass
        finally:
            unsubscribe()
            sender.cancel()

    async def _send_loop(self) -> None:
        try:
            while True:
                await self.ready.wait()
                self.ready.clear()
                batch, self.outbox[:] = list(self.outbox), []
                for message in batch:
                    await self.ws.send_text(json.dumps(message))
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 (the page went away)
            return

    def error(self, message: str, ref: Any = None, component: Any = None, prop: Any = None) -> None:
        self.post({"type": "error", "message": message, "ref": ref if isinstance(ref, int) else None,
                   "component": component if isinstance(component, str) else None,
                   "property": prop if isinstance(prop, str) else None})

    async def _handle(self, raw: dict[str, Any]) -> None:
        text = raw.get("text")
        if text is None:
            self.error("messages must be JSON text, not binary frames")
            return
        if len(text) > MAX_MESSAGE:
            self.error(f"message too large: {len(text)} bytes; at most {MAX_MESSAGE}")
            return
        try:
            message = json.loads(text)
        except ValueError as e:
            self.error(f"malformed JSON: {e}")
            return
        if not isinstance(message, dict) or not isinstance(message.get("op"), str):
            self.error('expected a JSON object with an "op", e.g. {"op": "hello"}')
            return
        op, ref = message["op"], message.get("ref")
        handler = getattr(self, f"op_{op}", None) if re.fullmatch(r"[a-z_]{1,20}", op) else None
        if handler is None:
            self.error(f"unknown op {op[:40]!r}; accepted: {sorted(n[3:] for n in dir(self) if n.startswith('op_'))}",
                       ref)
            return
        try:
            await handler(message)
            if isinstance(ref, int):
                self.post({"type": "ack", "ref": ref, "seq": self.session.seq})
        except EditError as e:
            self.error(str(e), ref, e.component, e.property)
        except Exception as e:  # noqa: BLE001 (a bad message must not end the page)
            log.warning("op %s failed", op, exc_info=True)
            self.error(f"{op}: {type(e).__name__}: {e}", ref, message.get("component"), message.get("property"))

    async def _edit(self, fn, *args) -> None:
        await self.run(fn, *args)
        self.session.publish_state()

    async def op_hello(self, message: dict[str, Any]) -> None:
        s = self.session
        self.post({"type": "hello", "types": describe_types(), "cameras": list(s.config.camera_names),
                   "modalities": list(MODALITIES), "states": len(s.states), "size": s.config.image_width,
                   "save_path": s.save_path, "source": s.source})
        self.post(s.state_message())
        if s.last_frame is not None:
            self.post(s.last_frame.message())
        self.post({"type": "status", "text": s.status, "ok": True})
        for warning in s.warnings:
            self.post({"type": "banner", "message": f"the starting file: {warning}"})

    async def op_set(self, message: dict[str, Any]) -> None:
        prop = message.get("property")
        if not isinstance(prop, str):
            raise EditError(f"set: 'property' must be a property name, got {str(prop)[:40]!r}")
        if prop == "path":
            await self._edit(self.session.set_path, message.get("component"), message.get("value"))
        else:
            await self._edit(self.session.set_property, message.get("component"), prop, message.get("value"))

    async def op_add(self, message: dict[str, Any]) -> None:
        await self._edit(self.session.add_component, message.get("type"), message.get("name"))

    async def op_remove(self, message: dict[str, Any]) -> None:
        await self._edit(self.session.remove_component, message.get("component"))

    async def op_move(self, message: dict[str, Any]) -> None:
        await self._edit(self.session.move_component, message.get("component"), message.get("to"))

    async def op_view(self, message: dict[str, Any]) -> None:
        await self._edit(self.session.set_view, message.get("modality"), message.get("state"),
                         bool(message.get("new_seeds")))

    async def op_load(self, message: dict[str, Any]) -> None:
        await self._edit(self.session.load, message.get("text"), str(message.get("filename") or "uploaded file"))

    async def op_reset(self, message: dict[str, Any]) -> None:
        await self._edit(self.session.reset)

    async def op_save(self, message: dict[str, Any]) -> None:
        if "path" in message or "filename" in message:
            raise EditError("save writes only to the file given with 'orrb tune --out' (or downloads); "
                            "the page cannot choose a path")
        text = await self.run(self.session.save)
        if self.session.save_path:
            self.post({"type": "saved", "path": self.session.save_path})
        else:
            name = _safe_filename(os.path.basename(self.session.source or "renderer_config.json"))
            self.post({"type": "download", "filename": name, "json": text + "\n"})
        self.session.publish_state()


_LOGIN = """<!doctype html><html><head><meta charset="utf-8"><title>orrb tune: log in</title>
<style>body{{font:15px system-ui,sans-serif;margin:4em auto;max-width:26em}}input{{font:inherit}}
.error{{color:#b00020}}</style></head><body><h1>orrb tune</h1>
<p>This page needs the shared secret the app was started with (<code>ORRB_SECRET</code> or
<code>--secret-file</code>).</p>{message}
<form method="post" action="/login"><input type="password" name="secret" autofocus
placeholder="shared secret"> <button type="submit">Log in</button></form></body></html>"""
