"""The calibrated concept test: a concept judged against random concepts tested the same way.

TCAV (Kim et al. 2018) trains a concept activation vector (CAV: a linear SVM's normal between the concept's
examples and random examples, in a layer's activations) and asks how the class's logit changes along it. Run
as a t-test of one concept's runs against random runs, it treats the runs as independent although they share
the concept's examples: the same concept passes or fails in every run, and false positives reach 0.24-0.62 at
alpha 0.05 (``python -m inv_widgets.eval global``). Here **the unit of replication is the concept**:

1. a concept C (n examples) gets ``runs`` CAVs, each against a random set of n examples of the class's own maps
   at the layer (``same_class``) that excludes C's examples; its **score** is the mean over the runs of the mean
   cosine between each scored image's gradient of the class logit and the CAV (a continuous score; the share of
   images with a positive directional derivative, TCAV's sign count, is reported beside it);
2. ``null`` random concepts (default 30), each n random maps of the same pool, are scored in exactly the same
   way (their own random sets, their own scored images);
3. the concept's score is compared with the null scores as a new observation of their distribution (a
   prediction-interval t statistic, N - 1 degrees of freedom): p-value, direction (above or below the random
   concepts) and the t statistic, a continuous measure of how far the concept stands out;
4. the scored images are the class's images that none of the concept's examples comes from (each concept, real
   or random, its own held-out set).

Everything runs in the space of the examples (Gram matrices): each example's activation and each scored
image's gradient are computed once per layer; a CAV is an SVM on a sub-matrix, its scores a product with the
gradients' dot products with the examples. Activations and gradients are read at the session's layer point.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .examples import TCAV_COLUMNS

__all__ = ["ConceptSpace", "CalibratedResult", "holm", "MEANING"]

#: What a significant row means, and what it does not (attached to every result).
MEANING = (
    "A significant row 'above' means: along the direction that separates this label's maps from random maps of "
    "the same class and layer, the class's logit rises on held-out images of the class more than along the "
    "directions of at least (1 - p) of random concepts of the class's own maps of the same size, tested the same "
    "way (Holm-corrected over the rows of the call). 'below': it falls more. It does not mean that the label "
    "names what the maps show, that the part causes the class, or that a row left untested or not significant "
    "is unimportant: with few maps per label or few scored images the test has little power."
)


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and counts for nothing)."""
    p = np.asarray(p, np.float64)
    out = np.full(len(p), np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if not m:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, j in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[j]))
        out[j] = running
    return out


@dataclass
class CalibratedResult:
    """One concept's test: ``score`` (mean cosine over runs and scored images), ``sign`` (TCAV's sign count),
    the null's mean and spread of both, ``t`` and ``p`` (two-sided, unadjusted), ``direction`` and how many
    examples, random concepts and scored images it rests on."""

    score: float
    sign: float
    null_score: float
    null_std: float
    null_sign: float
    t: float
    p: float
    direction: str
    n_examples: int
    n_null: int
    n_scored: int
    cav_accuracy: float
    p_tcav: float = float("nan")  # the published procedure's t-test of the runs, on the same CAVs and images


class ConceptSpace:
    """One class at one layer: the examples' activations and the scored images' gradients, kept as dot
    products.

    Parameters
    ----------
    model : torch.nn.Module
    layer : str
        A layer of ``model`` (read at ``point``).
    target : int
        The class whose logit is differentiated.
    examples : dict
        ``{example id: model input (C, H, W)}``: every example any concept or random set of this class and layer
        may use (the pool and the concepts).
    scored : dict
        ``{image id: model input}``: the images whose gradients are scored.
    sources : dict, optional
        ``{example id: image id}``: the image an example was cut from (a concept's sources are held out of its
        scored images).
    point : str
        ``"activation"`` or ``"conv"`` (``Session.layer_point``).
    """

    def __init__(
        self,
        model,
        layer: str,
        target: int,
        examples: dict,
        scored: dict,
        sources: dict | None = None,
        *,
        point: str = "conv",
        output=None,
        batch_size: int = 32,
        C: float = 1.0,
        seed: int = 0,
    ):
        from ..engine.capture import forward_activations, run_model

        self.ids = list(examples)
        self.index = {e: j for j, e in enumerate(self.ids)}
        self.images = list(scored)
        self.sources = dict(sources or {})
        self.C, self.seed = float(C), int(seed)
        acts = []
        for s in range(0, len(self.ids), batch_size):
            x = torch.stack([examples[e] for e in self.ids[s : s + batch_size]])
            a = forward_activations(model, x, [layer], layer_point=point, output=output)[layer]
            acts.append(a.reshape(len(x), -1).double().cpu())
        X = torch.cat(acts) if acts else torch.zeros(0, 1, dtype=torch.float64)
        grads = []
        for s in range(0, len(self.images), batch_size):
            x = torch.stack([scored[i] for i in self.images[s : s + batch_size]])
            cap = run_model(model, x, [layer], int(target), keep_gradients=True, layer_point=point, output=output)
            grads.append(cap.gradients[layer].reshape(len(x), -1).double().cpu())
        G = torch.cat(grads) if grads else torch.zeros(0, X.shape[1], dtype=torch.float64)
        self.K = (X @ X.T).numpy()
        self.GX = (G @ X.T).numpy()
        self.gnorm = G.norm(dim=1).numpy()
        self._null: dict = {}

    # ---- one CAV and its scores -----------------------------------------------------------------------
    def _cav(self, pos: np.ndarray, neg: np.ndarray, fit_accuracy: bool = False):
        from sklearn.svm import SVC

        idx = np.r_[pos, neg]
        y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        k = self.K[np.ix_(idx, idx)]
        scale = float(np.mean(np.diag(k))) or 1.0
        svm = SVC(kernel="precomputed", C=self.C, class_weight="balanced").fit(k / scale, y)
        beta = np.zeros(len(idx))
        beta[svm.support_] = svm.dual_coef_[0]
        if svm.classes_[1] != 1:  # the normal must point towards the concept
            beta = -beta
        wnorm = float(np.sqrt(max(beta @ k @ beta, 0.0)))
        acc = float("nan")
        if fit_accuracy and min(len(pos), len(neg)) >= 3:
            rng = np.random.default_rng([self.seed, len(pos), int(pos[0])])
            te = np.r_[
                rng.choice(len(pos), max(1, len(pos) // 3), replace=False),
                len(pos) + rng.choice(len(neg), max(1, len(neg) // 3), replace=False),
            ]
            tr = np.setdiff1d(np.arange(len(idx)), te)
            ktr = k[np.ix_(tr, tr)]
            sv = SVC(kernel="precomputed", C=self.C, class_weight="balanced").fit(ktr / scale, y[tr])
            acc = float((sv.predict(k[np.ix_(te, tr)] / scale) == y[te]).mean())
        return idx, beta, wnorm, acc

    def _scores(self, idx, beta, wnorm, keep: np.ndarray) -> tuple[float, float]:
        if wnorm == 0 or not keep.any():
            return float("nan"), float("nan")
        dd = self.GX[np.ix_(keep, idx)] @ beta  # directional derivatives (up to the positive scale of the CAV)
        cos = dd / (np.maximum(self.gnorm[keep], 1e-30) * wnorm)
        return float(cos.mean()), float((dd > 0).mean())

    def _held_out(self, members: np.ndarray) -> np.ndarray:
        src = {self.sources.get(self.ids[j]) for j in members} - {None}
        return np.array([i not in src for i in self.images], bool)

    def concept_score(
        self,
        members: Sequence,
        pool: Sequence,
        runs: int,
        rng: np.random.Generator,
        accuracy: bool = False,
        runs_out: list | None = None,
    ) -> tuple[float, float, float]:
        """(mean cosine, sign count, CAV accuracy) of a concept (example ids) against ``runs`` random sets of its
        size drawn from ``pool`` (example ids) without its own examples; NaN when the pool is too small.
        ``runs_out`` receives the per-run sign counts and those of random-against-random CAVs (the published
        procedure's baseline) on the same scored images."""
        m = np.array([self.index[e] for e in members])
        rest = np.array([self.index[e] for e in pool if e not in set(members)])
        if len(rest) < len(m) or len(m) < 2:
            return float("nan"), float("nan"), float("nan")
        keep = self._held_out(m)
        cos, sign, accs, base = [], [], [], []
        for _ in range(runs):
            neg = rng.choice(rest, len(m), replace=False)
            idx, beta, wn, acc = self._cav(m, neg, fit_accuracy=accuracy)
            c, s = self._scores(idx, beta, wn, keep)
            cos.append(c)
            sign.append(s)
            accs.append(acc)
            if runs_out is not None and len(rest) >= 2 * len(m):
                a, b = np.split(rng.choice(rest, 2 * len(m), replace=False), 2)
                base.append(self._scores(*self._cav(a, b)[:3], keep)[1])
        if runs_out is not None:
            runs_out.extend([sign, base])
        if not np.isfinite(cos).any():
            return float("nan"), float("nan"), float("nan")
        return (
            float(np.nanmean(cos)),
            float(np.nanmean(sign)),
            float(np.nanmean(accs)) if accuracy and np.isfinite(accs).any() else float("nan"),
        )

    def null(self, n: int, pool: Sequence, runs: int, n_null: int, seed) -> np.ndarray:
        """(n_null, 2) scores (mean cosine, sign count) of random concepts of ``n`` examples of ``pool``, each
        tested as a concept is; kept per size."""
        key = (int(n), tuple(pool), int(runs), int(n_null))
        got = self._null.get(key)
        if got is None and len(pool) < 2 * n:  # no room for a random concept and its random sets
            got = self._null[key] = np.full((0, 2), np.nan)
        if got is None:
            rng = np.random.default_rng(seed)
            pool = list(pool)
            out = []
            for _ in range(n_null):
                members = [pool[j] for j in rng.choice(len(pool), n, replace=False)]
                out.append(self.concept_score(members, pool, runs, rng)[:2])
            got = self._null[key] = np.asarray(out, np.float64)
        return got

    def test(
        self,
        members: Sequence,
        pool: Sequence,
        *,
        runs: int = 10,
        n_null: int = 30,
        seed=0,
        null_pool: Sequence | None = None,
    ) -> CalibratedResult:
        """Test a concept (example ids) against ``n_null`` random concepts of its size from ``null_pool`` (default
        ``pool``), each with ``runs`` random sets from ``pool`` (see the module docstring)."""
        from scipy.stats import t as student

        from .captum_tcav import ttest_p

        rng = np.random.default_rng(seed if isinstance(seed, (list, tuple)) else [int(seed), len(members)])
        both: list = []
        score, sign, acc = self.concept_score(members, pool, runs, rng, accuracy=True, runs_out=both)
        p_tcav = float("nan")
        if len(both) == 2 and len(both[1]) >= 2 and np.isfinite(both[0]).all() and np.isfinite(both[1]).all():
            p_tcav = ttest_p(both[0], both[1])
        nul = self.null(
            len(members),
            null_pool if null_pool is not None else pool,
            runs,
            n_null,
            [int(seed if not isinstance(seed, (list, tuple)) else seed[0]), len(members), 7],
        )
        ok = nul[np.isfinite(nul[:, 0])]
        n_eff = len(ok)
        mu = float(ok[:, 0].mean()) if n_eff else float("nan")
        sd = float(ok[:, 0].std(ddof=1)) if n_eff >= 2 else float("nan")
        if n_eff >= 2 and sd > 0 and np.isfinite(score):
            tval = (score - mu) / (sd * np.sqrt(1.0 + 1.0 / n_eff))
            p = float(2 * student.sf(abs(tval), n_eff - 1))
        else:
            tval, p = float("nan"), float("nan")
        keep = self._held_out(np.array([self.index[e] for e in members]))
        return CalibratedResult(
            score=score,
            sign=sign,
            null_score=mu,
            null_std=sd,
            null_sign=float(ok[:, 1].mean()) if n_eff else float("nan"),
            t=float(tval),
            p=p,
            direction="" if not np.isfinite(tval) else ("above" if tval > 0 else "below"),
            n_examples=len(members),
            n_null=n_eff,
            n_scored=int(keep.sum()),
            cav_accuracy=acc,
            p_tcav=p_tcav,
        )


def reveal_inputs(session, keys, step: int, transform: Callable | None = None, fill: str = "black") -> dict:
    """``{MapKey: model input}`` of each key's Deep Reveal image at ``step`` (each image explained once; hidden
    pixels ``fill``: "black" or "mean", the Normalize step's mean colour)."""
    from ..inputs import to_model_input
    from .examples import _reveal

    out: dict = {}
    _reveal(session, set(keys), step, out, fill)
    return {k: to_model_input(v, transform if transform is not None else session.transform) for k, v in out.items()}


#: The columns of a calibrated result (the published procedure's columns, then the calibrated test's own).
CALIBRATED_COLUMNS = [
    *TCAV_COLUMNS,
    "procedure",
    "cosine",
    "null_cosine",
    "null_cosine_std",
    "t",
    "p_raw",
    "direction",
    "n_null",
    "p_tcav",
]


def calibrated_test(
    session,
    ge,
    names,
    layers,
    *,
    n_labels: int,
    labels,
    runs: int,
    n_null: int,
    step: int,
    alpha: float,
    min_examples: int,
    max_examples: int,
    max_images: int,
    scored_images=None,
    seed: int = 0,
    progress: bool = True,
    fill: str = "black",
):
    """The rows of ``concept_test(procedure="calibrated")``; see :func:`inv_widgets.concept_test`."""
    import pandas as pd

    from .examples import _keys, _rng

    maps = ge.maps
    plan = []
    for layer in layers:
        at = maps[maps["layer"] == layer]
        for name in names:
            mine = at[at["class"] == name].sort_values(["image_id", "members"], kind="stable")
            wanted = list(ge.top(name, layer, n_labels)["label"])
            present = set(mine["label"])
            wanted += [lab for lab in (labels or []) if lab in present and lab not in wanted]
            pool = _keys(mine)
            for lab in wanted:
                rows = mine[mine["label"] == lab]
                keys = _keys(rows)
                if len(keys) > max_examples:
                    rng = _rng(seed, "concept", name, layer, lab)
                    pick = np.sort(rng.choice(len(keys), max_examples, replace=False))
                    keys = [keys[p] for p in pick]
                others = [k for k in pool if k not in set(_keys(rows))]
                note = ""
                if len(keys) < min_examples:
                    note = f"{len(keys)} maps carry this label (min_examples={min_examples})"
                elif len(others) < len(keys):
                    note = (
                        f"only {len(others)} maps of this class at this layer carry other labels: too few for "
                        f"random sets of {len(keys)} maps"
                    )
                elif len(pool) < 2 * len(keys):
                    note = (
                        f"the class has {len(pool)} maps at this layer: too few for random concepts of {len(keys)} "
                        "maps and their random sets"
                    )
                plan.append(
                    dict(
                        name=name,
                        layer=layer,
                        label=lab,
                        keys=keys,
                        others=others,
                        pool=pool,
                        note=note,
                        global_score=float(rows["score"].sum()),
                    )
                )
    out = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(plan), desc="concept test", unit="label")
    try:
        for layer in layers:
            for name in names:
                todo = [t for t in plan if t["layer"] == layer and t["name"] == name]
                run = [t for t in todo if not t["note"]]
                space = None
                if run:
                    space = _space(
                        session,
                        ge,
                        name,
                        layer,
                        run[0]["pool"],
                        [k for t in run for k in t["keys"]],
                        step,
                        max_images,
                        scored_images,
                        seed,
                        fill,
                    )
                for t in todo:
                    row = {
                        "class": name,
                        "target": ge.classes.index(name),
                        "layer": layer,
                        "label": t["label"],
                        "global_score": t["global_score"],
                        "n_examples": len(t["keys"]),
                        "n_random": 0,
                        "n_images": 0,
                        "runs": runs,
                        "tcav_score": np.nan,
                        "tcav_std": np.nan,
                        "random_score": np.nan,
                        "random_std": np.nan,
                        "p_value": np.nan,
                        "significant": False,
                        "cav_accuracy": np.nan,
                        "note": t["note"],
                        "procedure": "calibrated",
                        "cosine": np.nan,
                        "null_cosine": np.nan,
                        "null_cosine_std": np.nan,
                        "t": np.nan,
                        "p_raw": np.nan,
                        "direction": "",
                        "n_null": 0,
                        "p_tcav": np.nan,
                    }
                    if space is not None and not t["note"]:
                        r = space.test(
                            t["keys"],
                            t["others"],
                            runs=runs,
                            n_null=n_null,
                            seed=[int(seed), layers.index(layer), names.index(name)],
                            null_pool=t["pool"],
                        )
                        row.update(
                            n_random=len(t["keys"]),
                            n_images=r.n_scored,
                            tcav_score=r.sign,
                            random_score=r.null_sign,
                            p_raw=r.p,
                            cav_accuracy=r.cav_accuracy,
                            cosine=r.score,
                            null_cosine=r.null_score,
                            null_cosine_std=r.null_std,
                            t=r.t,
                            direction=r.direction,
                            n_null=r.n_null,
                            p_tcav=r.p_tcav,
                        )
                        if r.n_scored == 0:
                            row["note"] = "no scored image of the class is held out from this label's maps"
                        elif r.n_null < 2:
                            row["note"] = (
                                f"the class has {len(t['pool'])} maps at this layer: too few for random "
                                f"concepts of {len(t['keys'])} maps and their random sets"
                            )
                        if row["note"]:
                            row.update(p_raw=np.nan, t=np.nan, direction="")
                    out.append(row)
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    df = pd.DataFrame(out, columns=CALIBRATED_COLUMNS)
    df["p_value"] = holm(df["p_raw"].to_numpy(np.float64))
    df["significant"] = (df["p_value"] < alpha).fillna(False).astype(bool)
    return df


def _space(session, ge, name, layer, pool, concept_keys, step, max_images, scored_images, seed, fill="black"):
    """The ConceptSpace of one class at one layer: the reveal images of its maps, the scored images' gradients."""
    from .examples import _rng, model_runner

    keys = list(dict.fromkeys(list(pool) + list(concept_keys)))
    examples = reveal_inputs(session, keys, step, fill=fill)
    sources = {k: session.index_of(k.image_id) for k in keys}
    if scored_images is not None and name in scored_images:
        idx = sorted(int(i) for i in scored_images[name])
    else:
        idx = sorted(session.index_of(i) for i in set(ge.maps.loc[ge.maps["class"] == name, "image_id"]))
    if len(idx) > max_images:
        idx = sorted(_rng(seed, "images", name).choice(idx, max_images, replace=False).tolist())
    scored = {i: session.input(i) for i in idx}
    runner = model_runner(session, "the calibrated concept test")
    return ConceptSpace(
        runner.model,
        layer,
        ge.classes.index(name),
        examples,
        scored,
        sources,
        point=runner.layer_point,
        output=runner.output,
        seed=seed,
    )
