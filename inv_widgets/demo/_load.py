"""Loading the shipped demo weights (kept apart so that importing inv_widgets.demo stays light)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .model import DEFAULT_WIDTHS, DemoCNN
from .parts import CLASSES

WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "demo_cnn.pt"


def load_model(weights=None, device="cpu") -> DemoCNN:
    """A DemoCNN in eval mode with the weights from ``weights`` (default: the shipped file)."""
    path = Path(weights) if weights is not None else WEIGHTS_PATH
    if not path.is_file():
        raise FileNotFoundError(
            f"demo CNN weights not found at {path}. Train them with "
            f"`python -m inv_widgets.demo.train --out {path}` (about 25 minutes on a 2-core CPU)"
            + ("" if weights is not None else ", or reinstall inv-widgets, which ships this file")
            + "."
        )
    widths = DEFAULT_WIDTHS
    meta = path.with_suffix(".json")
    if meta.is_file():
        widths = tuple(json.loads(meta.read_text()).get("widths", DEFAULT_WIDTHS))
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = DemoCNN(num_classes=len(CLASSES), widths=widths)
    model.load_state_dict(state)
    return model.to(device).eval()
