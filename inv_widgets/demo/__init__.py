"""The embedded default: a procedural parts dataset, a small trained CNN and its training script.

    import inv_widgets as inv
    model, data = inv.demo.load()      # offline, a few seconds on a CPU

Works without any download: the images are drawn on the fly and the weights ship with the package.
"""

from __future__ import annotations

from .parts import (
    CLASS_PART_VOCABULARY,
    CLASS_PARTS,
    CLASSES,
    EVAL_SEED,
    MEAN,
    PART_VOCABULARY,
    STD,
    TEST_SEED,
    TRAIN_SEED,
    VAL_SEED,
    PartsDataset,
)

__all__ = [
    "PartsDataset",
    "DemoCNN",
    "load",
    "WEIGHTS_PATH",
    "PART_VOCABULARY",
    "CLASS_PART_VOCABULARY",
    "CLASS_PARTS",
    "CLASSES",
    "MEAN",
    "STD",
    "TRAIN_SEED",
    "VAL_SEED",
    "EVAL_SEED",
    "TEST_SEED",
    "session",
]


def __getattr__(name):
    # DemoCNN needs torch; import it only when asked for, so `import inv_widgets.demo` stays light.
    if name == "DemoCNN":
        from .model import DemoCNN

        return DemoCNN
    if name == "WEIGHTS_PATH":
        from ._load import WEIGHTS_PATH

        return WEIGHTS_PATH
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load(n: int = 200, device="cpu", *, weights=None, seed: int = EVAL_SEED):
    """The trained demo CNN (eval mode) and held-out parts images, offline.

    Parameters
    ----------
    n : int
        Number of images in the returned ``PartsDataset`` (drawn on demand, nothing is stored).
    device : str or torch.device
        Where to put the model.
    weights : path, optional
        A state_dict written by ``python -m inv_widgets.demo.train``; the shipped weights by default.
    seed : int
        Seed of the images; EVAL_SEED (never used in training) by default.

    Returns
    -------
    (model, data) : (DemoCNN, PartsDataset)
    """
    from ._load import load_model

    return load_model(weights, device=device), PartsDataset(n=n, seed=seed)


def session(n: int = 200, device="cpu", *, seed: int = EVAL_SEED, **kwargs):
    """``inv.Session`` over the demo model and ``n`` parts images: a session *factory* for Dask workers,
    e.g. ``inv.explain_dataset(functools.partial(inv.demo.session, n=2000), out=..., client=client)``
    (each worker builds its own, offline, in about a second). ``kwargs`` go to ``Session``."""
    from ..session import Session

    model, data = load(n, device, seed=seed)
    return Session(model, data, **kwargs)
