"""``orrb tune``: a local web page to tune the randomization chain live.

- :mod:`orrb.tune.session`: :class:`TuneSession`, the edited chain, its checks and the render
  loop (latest wins) on a ``LocalRenderer`` or a ``RemoteRenderer`` pool;
- :mod:`orrb.tune.controls`: the page's controls, derived from the components' property
  declarations (slider ranges, hard limits);
- :mod:`orrb.tune.app`: the Starlette app (page, WebSocket, login) serving a session;
- ``static/``: the page itself, plain HTML, CSS and JavaScript.

Needs the ``tune`` extra (``pip install "orrb[tune]"``: Starlette, uvicorn, websockets).
"""

from orrb.tune.session import EditError, Frame, TuneSession

__all__ = ["EditError", "Frame", "TuneSession"]
