"""``python -m inv_widgets_server``: switch the server extension on for this Python environment.

A wheel's install writes the switch itself (``etc/jupyter/jupyter_server_config.d/inv_widgets_server.json``, a
data file); an editable install (``pip install -e .``) leaves data files out, so ``make setup`` and Binder run
this instead, and people can too. ``--prefix DIR`` writes under DIR instead of ``sys.prefix``. The switch it
writes is the repository's ``jupyter-config/inv_widgets_server.json`` (tested equal).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SWITCH = {"ServerApp": {"jpserver_extensions": {"inv_widgets_server": True}}}


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(prog="python -m inv_widgets_server", description=__doc__.splitlines()[0])
    ap.add_argument("--prefix", default=sys.prefix, help="the environment's prefix (default: this Python's)")
    args = ap.parse_args(argv)
    path = Path(args.prefix) / "etc" / "jupyter" / "jupyter_server_config.d" / "inv_widgets_server.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(SWITCH, indent=2) + "\n")
    print(f"inv_widgets_server enabled: {path} (`jupyter server extension disable inv_widgets_server` turns it off)")
    return path


if __name__ == "__main__":
    main()
