"""What a writer does: describe a session for a new run, and explain one shard of images into the store.

Used alike by the single-process loop and by Dask workers (runs/workers.py); nothing here knows which.
"""

from __future__ import annotations

import threading
import time
from contextlib import nullcontext

import numpy as np
import pandas as pd
import torch

from ..engine.cut import cut_batch, scaled_lowres
from ..engine.records import maps_frame
from ..engine.request import check_layers
from ..engine.runtime import limited_threads
from ..inputs import tensor_id
from .store import CUT_COLUMNS, STORAGE_COLUMNS, RunStore

__all__ = [
    "build_session",
    "describe",
    "process_shard",
    "load_shard",
    "compute_shard",
    "shard_meta",
    "resolve_ward",
    "WARD_BACKENDS",
    "image_ids",
    "output_name",
]

#: How a run links the fast recipe's dendrograms: "scipy" (the engine's recipes on the CPU), "torch" (the batched
#: Ward kernel on the model's device), "auto" (torch on a CUDA device, scipy otherwise).
WARD_BACKENDS = ("auto", "scipy", "torch")


def build_session(factory):
    """Call the factory and check that it made a Session (or a (model, data) pair, made into one)."""
    from ..session import Session

    made = factory()
    if isinstance(made, tuple) and len(made) == 2:
        made = Session(*made)
    if not isinstance(made, Session):
        raise TypeError(
            f"the session factory returned a {type(made).__name__}; it must return an "
            "inv_widgets.Session (or a (model, data) pair)"
        )
    return made


def output_name(output) -> str | int | None:
    """How a run records the session's ``output`` (which of the model's outputs holds the logits)."""
    if output is None or isinstance(output, (int, str)):
        return output
    return f"callable {getattr(output, '__module__', '?')}.{getattr(output, '__qualname__', type(output).__name__)}"


def image_ids(session, indices) -> list[str]:
    """The ids (``MapKey.image_id``) of the session's images ``indices``, read as a run reads them."""
    return [tensor_id(session.item(int(i))[0]) for i in indices]


def describe(session, index: int, layers=None) -> dict:
    """What a run records about the session: model fingerprint, layer order and shapes, classes, sizes.

    Runs the model once (forward and backward) on image ``index`` to learn the order in which the layers
    fire and their shapes.
    """
    names = check_layers(layers, session.layers, owner="the session")
    x, shown, _ = session.item(index)
    cap = session.runner.capture(x[None], names, weighting=session.weighting)
    classes = [str(c) for c in session.classes]
    if len(classes) != cap.logits.shape[1]:
        raise ValueError(f"the model has {cap.logits.shape[1]} outputs but the session has {len(classes)} class names")
    weighting = session.weighting
    return {
        "model": session.fingerprint,
        "layers": list(cap.order),
        "channels": {n: int(cap.activations[n].shape[1]) for n in cap.order},
        "shapes": {n: [int(s) for s in cap.activations[n].shape[2:]] for n in cap.order},
        "classes": classes,
        "n_images": len(session),
        "input_size": [int(shown.shape[0]), int(shown.shape[1])],
        "weighting": weighting,
        "output": output_name(session.output),
        "layer_point": session.layer_point,
        "maps": session.maps,
        "session_recipe": session.recipe,
    }


def shard_meta(meta: dict, s: int, only=None) -> dict:
    """What a writer needs of the run's description for shard ``s`` (a few hundred bytes: this is what
    travels with each Dask task, not the run's whole index list). ``only``: the offsets (0..shard size - 1)
    of the shard's images to explain, when not all (a retry of a failed shard, image by image)."""
    if "shard_indices" in meta:
        if only is None:
            return meta
        meta = {
            **meta,
            "shard_indices": [meta["shard_indices"][o] for o in only],
            "shard_offsets": [meta.get("shard_offsets", range(len(meta["shard_indices"])))[o] for o in only],
        }
        return meta
    size = int(meta["shard_size"])
    indices = meta["indices"][s * size : (s + 1) * size]
    if not indices:
        raise IndexError(f"shard {s} is outside the run ({len(meta['indices'])} images, {size} per shard)")
    keep = ("model", "layers", "shapes", "recipe", "k", "target", "shard_size", "weighting", "layer_point", "maps")
    out = {
        **{key: meta[key] for key in keep if key in meta},
        "n_classes": len(meta["classes"]),
        "shard_indices": list(indices),
    }
    if only is not None:
        out["shard_offsets"] = [int(o) for o in only]
        out["shard_indices"] = [indices[int(o)] for o in only]
    return out


def resolve_ward(ward: str, device: torch.device, recipe: str) -> str:
    """``"auto"``: the torch kernel on a CUDA device for the fast recipe, scipy otherwise."""
    if ward == "auto":
        return "torch" if device.type == "cuda" and recipe == "fast" else "scipy"
    return ward


def _targets(spec, labels: list, n_classes: int):
    """Per-image targets for run_model: None (predicted), an int, or a list with None where unknown."""
    if spec is None:
        return None
    if spec == "label":
        return [int(y) if y is not None and 0 <= int(y) < n_classes else None for y in labels]
    return int(spec)


def process_shard(
    session,
    store: RunStore,
    meta: dict,
    s: int,
    *,
    batch_size: int,
    ward: str = "auto",
    lock: threading.Lock | None = None,
    only=None,
    write: bool = True,
    replace: bool = False,
) -> dict:
    """Explain the images of shard ``s`` and commit them; a no-op when the shard is committed already.

    ``only``: the offsets of the shard's images to explain (a shard holding only those is committed);
    ``write=False`` explains them and stores nothing (a retry that finds which image fails);
    ``replace``: a committed shard ``s`` is replaced (it was damaged, or held only some of its images).
    Returns a small summary: ``{"shard", "images", "maps", "committed", "seconds"}``.
    """
    t0 = time.perf_counter()
    if write and not replace and store.is_committed(s):  # finished by an earlier attempt (or another writer)
        return {
            "shard": s,
            "images": len(shard_meta(meta, s, only)["shard_indices"]),
            "maps": 0,
            "committed": False,
            "seconds": 0.0,
        }
    maps, images, arrays = compute_shard(session, meta, s, batch_size=batch_size, ward=ward, lock=lock, only=only)
    if not write:
        return {
            "shard": s,
            "images": len(images),
            "maps": len(maps),
            "committed": False,
            "seconds": time.perf_counter() - t0,
        }
    committed = store.write_shard(s, maps, images, arrays, replace=replace)
    return {
        "shard": s,
        "images": len(images),
        "maps": len(maps),
        "committed": committed,
        "seconds": time.perf_counter() - t0,
    }


def load_shard(session, meta: dict, s: int, only=None) -> dict:
    """Read shard ``s``'s images from the session: model inputs, what a person sees, labels, image ids."""
    indices = shard_meta(meta, s, only)["shard_indices"]
    items = [session.item(i) for i in indices]
    xs = [it[0] for it in items]
    shapes = {tuple(x.shape) for x in xs}
    if len(shapes) > 1:
        raise ValueError(
            f"images of one run must have the same shape, got {sorted(shapes)} in images "
            f"{indices[0]}..{indices[-1]}; resize them in the transform"
        )
    return {
        "shard": s,
        "xs": xs,
        "shown": np.stack([it[1] for it in items]),
        "labels": [it[2] for it in items],
        "ids": [tensor_id(x) for x in xs],
    }


def compute_shard(
    session,
    meta: dict,
    s: int,
    *,
    batch_size: int,
    ward: str = "auto",
    lock: threading.Lock | None = None,
    loaded: dict | None = None,
    after_pass=None,
    only=None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """The tables and arrays of shard ``s`` (nothing written); ``loaded``: its images, read already;
    ``after_pass``: called after each batch's model pass, before its clustering; ``only``: the offsets of the
    shard's images to explain (default: all)."""
    if session.fingerprint != meta["model"]:
        raise ValueError(
            f"this session's model ({session.fingerprint}) is not the run's ({meta['model']}): the "
            "factory builds another model or other weights than the ones the run was started with"
        )
    meta = shard_meta(meta, s, only)
    size = int(meta["shard_size"])
    indices = meta["shard_indices"]
    layers = list(meta["layers"])
    n_classes = int(meta["n_classes"])
    ward = resolve_ward(ward, session.device, meta["recipe"])
    if ward == "torch" and meta["recipe"] != "fast":
        raise ValueError(
            f"the torch Ward kernel builds the 'fast' recipe's dendrograms, not {meta['recipe']!r}; "
            "use ward='scipy' for other recipes"
        )
    loaded = loaded if loaded is not None else load_shard(session, meta, s)
    offsets = list(meta.get("shard_offsets", range(len(indices))))
    xs, labels, ids = loaded["xs"], loaded["labels"], loaded["ids"]
    targets = _targets(meta["target"], labels, n_classes)
    logits, chosen, cuts = [], [], []
    bs = max(1, min(int(batch_size), size))
    for start in range(0, len(indices), bs):
        with limited_threads(1):  # a copy: threads would wait for each other more than work (on a busy CPU)
            x = torch.stack(xs[start : start + bs]).to(session.device)
        t = targets if targets is None or isinstance(targets, int) else targets[start : start + bs]
        with lock or nullcontext():
            maps = meta.get("maps", "published")
            weighting = None if maps == "gradcam" else meta.get("weighting", "guided")  # gradcam: G x A as well
            cap = session.runner.capture(
                x, layers, t, weighting=weighting, score="contrast" if maps == "contrast" else "logit"
            )
            if after_pass is not None:
                after_pass()
            # after the model's pass: many small steps per image and layer, which extra threads only slow
            # down (on a busy CPU by several times); one big pass on a GPU does not care
            with limited_threads(1):
                batch = cut_batch(
                    cap,
                    recipe=meta["recipe"],
                    k=meta["k"],
                    weighting=meta.get("weighting", "guided"),
                    device_ward=ward == "torch",
                    maps=maps,
                )
        if list(cap.order) != layers:
            raise RuntimeError(
                f"the model's layers fired in the order {list(cap.order)}, not {layers} as when the "
                "run began; the model's forward pass changed"
            )
        logits.append(cap.logits.float().cpu().numpy())
        chosen.extend(cap.targets)
        cuts.extend(batch)
        del cap
    del xs
    with limited_threads(1):  # many small copies
        return _assemble(meta, s, indices, ids, labels, loaded["shown"], np.concatenate(logits), chosen, cuts, offsets)


def _assemble(
    meta: dict,
    s: int,
    indices: list[int],
    ids: list[str],
    labels: list,
    shown: np.ndarray,
    logits: np.ndarray,
    targets: list[int],
    cuts: list,
    offsets: list[int] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The shard's two tables and its arrays, from each image's layers (``(LayerMaps, LayerCut)``, image order);
    ``offsets``: each image's place in the shard (default 0, 1, ...)."""
    size = int(meta["shard_size"])
    layers = list(meta["layers"])
    logits = logits.astype(np.float32)
    targets = np.asarray(targets, dtype=np.int64)
    z = logits.astype(np.float64) - logits.max(1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    predicted = logits.argmax(1)
    b = len(indices)
    offsets = list(range(b)) if offsets is None else [int(o) for o in offsets]
    images = pd.DataFrame(
        {
            "position": np.asarray([s * size + o for o in offsets], dtype=np.int64),
            "image": np.asarray(indices, dtype=np.int64),
            "image_id": ids,
            "label": pd.array([None if y is None else int(y) for y in labels], dtype="Int64"),
            "predicted": predicted.astype(np.int64),
            "target": targets,
            "probability": prob[np.arange(b), targets],
            "shard": np.full(b, s, dtype=np.int64),
            "row": np.arange(b, dtype=np.int64),
        }
    )
    arrays: dict[str, np.ndarray] = {"images": np.ascontiguousarray(shown, dtype=np.uint8), "logits": logits}
    rows: list[dict] = []
    model = meta["model"]
    for li, name in enumerate(layers):
        per = [cuts[i][name] for i in range(b)]
        arrays[f"channel_weights/{li}"] = np.stack([lm.percent.numpy() for lm, _ in per]).astype(np.float32)
        arrays[f"gradcam/{li}"] = scaled_lowres(torch.stack([lm.gradcam for lm, _ in per])).astype(np.float16)
        row = 0
        for img, (_, cut) in enumerate(per):
            for j in range(cut.k):
                rows.append(
                    {
                        "model": model,
                        "image_id": ids[img],
                        "target": int(targets[img]),
                        "layer": name,
                        "members": cut.members_text(j),
                        "image": int(indices[img]),
                        "layer_index": li,
                        "map": j,
                        "weight": float(cut.weights[j]),
                        "size": len(cut.members[j]),
                        "k": cut.k,
                        "predicted": int(predicted[img]),
                        "threshold": cut.threshold,
                        "k_cut": cut.k_cut,
                        "position": s * size + offsets[img],
                        "shard": s,
                        "row": row + j,
                    }
                )
            row += cut.k
        h, w = meta["shapes"][name]
        stored = [cut.maps_lowres for _, cut in per if cut.k]
        arrays[f"maps/{li}"] = np.concatenate(stored).astype(np.float16) if stored else np.zeros((0, h, w), np.float16)
    maps = maps_frame(rows, extra=CUT_COLUMNS + STORAGE_COLUMNS)
    maps["threshold"] = maps["threshold"].astype(np.float64)
    for c in ["k_cut"] + STORAGE_COLUMNS:
        maps[c] = maps[c].astype(np.int64)
    maps = maps.sort_values(["position", "layer_index", "map"], kind="stable", ignore_index=True)
    return maps, images, arrays
