"""The Jupyter server extension: kernel websockets with TCP_NODELAY (inv_widgets_server)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import inv_widgets_server as ext

REPO = Path(__file__).resolve().parents[2]


class Handler:
    def __init__(self, fail=False):
        self.nodelay, self.fail = None, fail

    def set_nodelay(self, value):
        if self.fail:
            raise RuntimeError("socket closed")
        self.nodelay = value


class Connection:
    """Stands in for jupyter_server's ZMQChannelsWebsocketConnection: what connect() sees."""

    def __init__(self, handler):
        self.websocket_handler = handler
        self.connected_with = "not connected"

    def connect(self):
        self.connected_with = self.websocket_handler.nodelay
        return "future"


def test_a_kernel_websocket_sends_without_delay_before_it_connects():
    cls = ext.nodelay_connection(Connection)
    assert issubclass(cls, Connection) and ext.nodelay_connection(cls) is cls  # wrapped once
    conn = cls(Handler())
    assert conn.connect() == "future" and conn.connected_with is True  # TCP_NODELAY set first
    broken = cls(Handler(fail=True))
    assert broken.connect() == "future"  # a socket option never keeps a kernel from connecting


def test_the_extension_wraps_the_servers_configured_connection_class():
    app = SimpleNamespace(web_app=SimpleNamespace(settings={"kernel_websocket_connection_class": Connection}))
    app.log = logging.getLogger("test")
    ext._load_jupyter_server_extension(app)
    got = app.web_app.settings["kernel_websocket_connection_class"]
    assert issubclass(got, Connection) and got is not Connection
    ext._load_jupyter_server_extension(app)  # loaded twice: still one wrapper
    assert app.web_app.settings["kernel_websocket_connection_class"] is got
    assert ext._jupyter_server_extension_points() == [{"module": "inv_widgets_server"}]


def test_the_extension_imports_nothing_heavy():
    code = "import sys, inv_widgets_server; print(sorted(m for m in ('torch', 'inv_widgets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_the_installed_server_enables_it():
    switch = json.loads((REPO / "jupyter-config" / "inv_widgets_server.json").read_text())
    assert switch == {"ServerApp": {"jpserver_extensions": {"inv_widgets_server": True}}}
    out = subprocess.run(
        [sys.executable, "-m", "jupyter_server", "extension", "list"], capture_output=True, text=True, cwd="/"
    )
    text = out.stdout + out.stderr
    assert "inv_widgets_server" in text and "enabled" in text.split("inv_widgets_server", 1)[1][:40], text


def test_python_m_writes_the_same_switch_as_a_wheels_install(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "inv_widgets_server", "--prefix", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    written = tmp_path / "etc" / "jupyter" / "jupyter_server_config.d" / "inv_widgets_server.json"
    assert str(written) in out.stdout
    shipped = json.loads((REPO / "jupyter-config" / "inv_widgets_server.json").read_text())
    assert json.loads(written.read_text()) == shipped
