"""Start and stop JupyterLab / Notebook 7 / Voila on 127.0.0.1 for real-browser tests.

Every server gets a free port, a random token, its own temporary root, config, runtime, settings and
workspace directories (no user state leaks in), and is stopped (kernels included) at the end.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def have_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@dataclass
class Server:
    kind: str  # "lab", "notebook" or "voila"
    root: Path
    port: int
    token: str
    proc: subprocess.Popen
    log_path: Path
    home: Path
    extra: dict = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "", **query) -> str:
        q = {"token": self.token, **query}
        qs = "&".join(f"{k}={v}" if v is not None else k for k, v in q.items())
        return f"{self.base}/{path.lstrip('/')}?{qs}"

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def kernel_pids(self) -> list[int]:
        """PIDs of the kernels this server started (children of the server process)."""
        import psutil

        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return []
        return [p.pid for p in kids if any("ipykernel" in part for part in _cmdline(p))]


def _cmdline(p) -> list[str]:
    try:
        return p.cmdline()
    except Exception:
        return []


def _env(home: Path) -> dict:
    env = dict(os.environ)
    for var, sub in (
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("JUPYTERLAB_SETTINGS_DIR", "lab-settings"),
        ("JUPYTERLAB_WORKSPACES_DIR", "lab-workspaces"),
        ("IPYTHONDIR", "ipython"),
    ):
        d = home / sub
        d.mkdir(parents=True, exist_ok=True)
        env[var] = str(d)
    # No news / update toasts over the notebook.
    notif = home / "lab-settings" / "@jupyterlab" / "apputils-extension"
    notif.mkdir(parents=True, exist_ok=True)
    (notif / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    # Cells record their execution timing in their metadata (benchmarks read it).
    nbext = home / "lab-settings" / "@jupyterlab" / "notebook-extension"
    nbext.mkdir(parents=True, exist_ok=True)
    (nbext / "tracker.jupyterlab-settings").write_text(json.dumps({"recordTiming": True}))
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("MPLBACKEND", "Agg")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _wait_http(url: str | None, proc: subprocess.Popen, timeout: float, log_path: Path, port: int) -> None:
    """Wait until ``url`` answers 200 (or, with no url, until the port accepts connections)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited with code {proc.returncode}:\n{log_path.read_text(errors='replace')[-4000:]}"
            )
        try:
            if url is None:
                with socket.create_connection(("127.0.0.1", port), timeout=2):
                    return
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            last = e
        time.sleep(0.5)
    raise TimeoutError(
        f"server did not answer {url} within {timeout:.0f} s ({last}):\n{log_path.read_text(errors='replace')[-4000:]}"
    )


def copy_notebooks(root: Path, names) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(NOTEBOOKS / name, root / name)


def start(
    kind: str,
    root: Path,
    home: Path,
    *,
    notebook: str | None = None,
    timeout: float = 120.0,
    env_extra: dict | None = None,
) -> Server:
    """Start a server of ``kind`` ("lab", "notebook", "voila") serving ``root`` on 127.0.0.1."""
    port = free_port()
    token = secrets.token_hex(16)
    env = _env(home)
    env.update(env_extra or {})
    common = [
        "--no-browser",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        common.append("--allow-root")
    if kind == "lab":
        cmd = [sys.executable, "-m", "jupyterlab", *common, "--LabApp.expose_app_in_browser=True"]
        probe = f"http://127.0.0.1:{port}/api/status?token={token}"
    elif kind == "notebook":
        cmd = [sys.executable, "-m", "notebook", *common, "--JupyterNotebookApp.expose_app_in_browser=True"]
        probe = f"http://127.0.0.1:{port}/api/status?token={token}"
    elif kind == "voila":
        if notebook is None:
            raise ValueError("voila needs the notebook to serve")
        cmd = [
            sys.executable,
            "-m",
            "voila",
            str(root / notebook),
            "--no-browser",
            f"--port={port}",
            "--Voila.ip=127.0.0.1",
            "--Voila.port_retries=0",
            f"--token={token}",
            "--show_tracebacks=True",
            f"--Voila.root_dir={root}",
        ]
        probe = None  # Voila has no status API; asking for the page would run the notebook
    else:
        raise ValueError(f"unknown server kind {kind!r}")
    log_path = home / f"{kind}-{port}.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(kind, root, port, token, proc, log_path, home)
    try:
        _wait_http(probe, proc, timeout, log_path, port)
    except BaseException:
        stop(server)
        raise
    return server


def stop(server: Server, timeout: float = 20.0) -> None:
    """Shut the server down (its kernels with it): REST shutdown first, then SIGTERM/SIGKILL to its group."""
    proc = server.proc
    if proc.poll() is None and server.kind in ("lab", "notebook"):
        with contextlib.suppress(Exception):
            req = urllib.request.Request(server.url("api/shutdown"), method="POST", data=b"")
            urllib.request.urlopen(req, timeout=5).close()
            proc.wait(timeout=timeout)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the group we created with start_new_session
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
