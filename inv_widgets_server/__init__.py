"""A Jupyter server extension of inv-widgets: kernel websockets that send each message at once.

The Explorer answers a key in a few milliseconds, but when keys follow each other the answer sat in the Jupyter
server for about 40 ms: the server's kernel websocket (tornado) leaves Nagle's algorithm on, so a message
written while an earlier one is not yet acknowledged waits for the browser's delayed acknowledgement. This
extension turns it off (``TCP_NODELAY``) on each kernel websocket when it connects, as tornado's documentation
advises for interactive use; every widget of every kernel benefits, nothing else changes. Measured with
``benchmarks/bench_hops.py`` (demo, keys back to back): key -> gallery median 55 ms with the server as it is,
27 ms with the extension.

It is enabled when inv-widgets is installed (``etc/jupyter/jupyter_server_config.d/inv_widgets_server.json``);
``jupyter server extension disable inv_widgets_server`` turns it off. It wraps whatever kernel websocket
connection class the server is configured with, and imports nothing of inv-widgets (no torch in the server).
"""

from __future__ import annotations

__all__ = ["nodelay_connection"]

_MARK = "_inv_widgets_nodelay"


def _jupyter_server_extension_points():
    return [{"module": "inv_widgets_server"}]


def nodelay_connection(base: type) -> type:
    """A subclass of the kernel websocket connection class ``base`` whose ``connect`` first sets ``TCP_NODELAY``
    on its websocket (``base`` itself when it already does)."""
    if getattr(base, _MARK, False):
        return base

    class NoDelayConnection(base):
        def connect(self):
            try:
                self.websocket_handler.set_nodelay(True)
            except Exception:  # never keep a kernel from connecting over a socket option
                pass
            return super().connect()

    setattr(NoDelayConnection, _MARK, True)
    NoDelayConnection.__name__ = NoDelayConnection.__qualname__ = f"NoDelay{base.__name__}"
    return NoDelayConnection


def _load_jupyter_server_extension(serverapp) -> None:
    settings = serverapp.web_app.settings
    base = settings.get("kernel_websocket_connection_class")
    if base is None:
        serverapp.log.info("inv-widgets: no kernel websocket connection class to wrap; left as it is")
        return
    settings["kernel_websocket_connection_class"] = nodelay_connection(base)
    serverapp.log.info("inv-widgets: kernel websockets send each message at once (TCP_NODELAY)")
