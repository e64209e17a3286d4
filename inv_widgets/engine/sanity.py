"""Sanity checks for saliency maps (Adebayo et al. 2018) on any model: does a map change when the model or
the class explained changes?

For a batch of images, each layer's cluster maps of every map type (:mod:`inv_widgets.engine.contrast`) are
made as a Session makes them (one batched pass, ``build_explanations`` and the suggested cut), for the model
as it is and for:

- **cascading randomisation**: the classifier head re-initialised, then each explained layer too, from the
  output back (:func:`model_units`, :func:`randomised`: each part's own ``reset_parameters``, as quantus does);
- **independent randomisation**: one part at a time;
- **a random other class** explained instead of the predicted one.

Each map is compared with the original explanation's map of the same type and layer by Spearman's rank
correlation over the pixels and by SSIM (Wang et al. 2004, :func:`ssim`; scikit-image's default window),
for the heaviest cluster map, the weighted union of the layer's maps, and the layer's Grad-CAM. Two
references give the scale: the map of another image, and an edge map of the image itself (Sobel), which needs
no model at all. A map that passes changes a lot (rho near 0) when the head is randomised or the class changes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from scipy.stats import rankdata

from .runtime import eval_mode

__all__ = [
    "TypeMaps",
    "explain_images",
    "model_units",
    "randomised",
    "union",
    "KINDS",
    "spearman",
    "ssim",
    "edge_map",
    "pointing",
    "sanity_records",
    "sanity_check",
    "session_sanity_check",
    "SanityTable",
    "TESTS",
]

#: The map types compared (``inv_widgets.engine.contrast.MAP_TYPES``), and the layer's Grad-CAM beside them.
KINDS = ("published", "signed", "gradcam", "contrast")

#: The tests of :func:`sanity_records`.
TESTS = ("cascade", "independent", "random class")


@dataclass
class TypeMaps:
    """One layer's cluster maps of one map type for one image, heaviest first."""

    maps: np.ndarray  # (K, H, W) float32 in [0, 1]
    weights: np.ndarray  # (K,) percent (may be negative for the gradient types)
    groups: list  # channel indices per map (the published members, or every channel of the extended group)
    layer: object = field(repr=False, default=None)  # the LayerResult (ablation, Grad-CAM, kept maps)
    cut: object = field(repr=False, default=None)  # the published Clusters the map type starts from

    @property
    def k(self) -> int:
        return len(self.maps)

    def heaviest(self) -> np.ndarray | None:
        return self.maps[0] if self.k else None

    def union(self) -> np.ndarray | None:
        return union(self.maps, self.weights)


def union(maps: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
    """The weighted union of a layer's cluster maps, sum(w_j map_j) / sum(w_j) over the maps of positive weight
    (all zeros when none has)."""
    if not len(maps):
        return None
    w = np.clip(np.asarray(weights, np.float64), 0, None)
    if w.sum() <= 0:
        return np.zeros(maps.shape[1:], np.float32)
    return np.tensordot(w / w.sum(), np.asarray(maps, np.float64), axes=1).astype(np.float32)


def _variant(lr, cl, acts, grads, kind, size) -> TypeMaps:
    from .contrast import variant_cut

    v = variant_cut(acts, grads, lr.kept, cl.assignment, cl.k, kind, size)
    order = np.argsort(-v["weights"], kind="stable")
    groups = [np.flatnonzero(v["groups"] == j) for j in range(cl.k)]
    return TypeMaps(v["maps"][order], v["weights"][order], [groups[j] for j in order], lr, cl)


def explain_images(
    model,
    xs: torch.Tensor,
    images: list,
    targets,
    layers: list[str],
    *,
    point: str = "conv",
    kinds=("published",),
    recipe: str = "fast",
    weighting: str = "guided",
    probes: bool = False,
    fills=None,
    output=None,
    batch_size: int = 16,
) -> list[dict]:
    """For each image: ``{"exp": Explanation, "maps": {layer: {kind: TypeMaps, "_layer": LayerResult}}}`` (the
    published LayerResult under ``"_layer"``). ``targets``: one class per
    image (None, or None in it: the predicted class); ``probes``: attach model probes (ablation, curves) at
    ``point``, with ``fills`` (one per image, or None) for the curves; ``output``: which model output holds the
    logits. "contrast" takes a second pass (score: the target's logit minus the mean logit)."""
    from .ablation import ModelProbe
    from .capture import run_model
    from .explanation import build_explanations

    kinds = tuple(kinds)
    out = []
    for s in range(0, len(xs), batch_size):
        x = xs[s : s + batch_size]
        t = None if targets is None else [None if v is None else int(v) for v in targets[s : s + batch_size]]
        cap = run_model(model, x, layers, t, keep_gradients=True, layer_point=point, output=output)

        def probes_for(c, x=x, s=s):
            if not probes:
                return None
            return [
                ModelProbe(
                    model,
                    x[i],
                    c.targets[i],
                    layer_point=point,
                    output=output,
                    fill=None if fills is None else fills[s + i],
                )
                for i in range(len(x))
            ]

        exps = build_explanations(
            cap, images[s : s + batch_size], recipe=recipe, weighting=weighting, probes=probes_for(cap)
        )
        exps_c = None
        if "contrast" in kinds:
            cap_c = run_model(model, x, layers, cap.targets, layer_point=point, score="contrast", output=output)
            exps_c = build_explanations(
                cap_c, images[s : s + batch_size], recipe=recipe, weighting=weighting, probes=probes_for(cap_c)
            )
        for i, exp in enumerate(exps):
            per = {}
            for name in exp.layers:
                lr = exp.layer(name)
                cl = lr.cut()
                got = {}
                for kind in kinds:
                    if kind == "published":
                        got[kind] = TypeMaps(cl.maps, np.asarray(cl.weights, np.float64), list(cl.members), lr, cl)
                    elif kind == "contrast":
                        lc = exps_c[i].layer(name)
                        cc = lc.cut()
                        got[kind] = TypeMaps(cc.maps, np.asarray(cc.weights, np.float64), list(cc.members), lc, cc)
                    else:
                        got[kind] = _variant(
                            lr,
                            cl,
                            cap.activations[name][i].float().cpu(),
                            cap.gradients[name][i].float().cpu(),
                            kind,
                            exp.input_size,
                        )
                got["_layer"] = lr  # the published LayerResult (the layer's Grad-CAM)
                if any(kind in ("signed", "gradcam") for kind in kinds):  # the tensors the gradient types came from
                    got["_tensors"] = (cap.activations[name][i].float().cpu(), cap.gradients[name][i].float().cpu())
                per[name] = got
            out.append({"exp": exp, "maps": per})
    return out


# ---- model randomisation ----------------------------------------------------------------------------------
def model_units(model, layers: list[str], x: torch.Tensor) -> list[tuple[str, list[str]]]:
    """The model's parameterised parts from the output back (the order of cascading randomisation): each
    explained convolution with the normalisation of its chain (the ``layer_point="activation"`` trace), every
    other module with parameters of its own as one part (the classifier head first). ``[(name, [modules])]``."""
    from .points import trace_points

    named = dict(model.named_modules())
    chains = trace_points(model, x[:1], layers)
    in_chain = {m: layer for layer, p in chains.items() for m in p.chain}
    order: list[str] = []
    handles = [
        m.register_forward_hook(lambda mod, i, o, n=n: order.append(n) if n not in order else None)
        for n, m in named.items()
        if n and any(True for _ in m.parameters(recurse=False))
    ]
    try:
        with eval_mode(model), torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    units: list[tuple[str, list[str]]] = []
    seen: dict[str, int] = {}
    for n in order:
        key = in_chain.get(n, n)
        if key in seen:
            units[seen[key]][1].append(n)
        else:
            seen[key] = len(units)
            units.append((key, [n]))
    return units[::-1]


def randomised(model, modules: list[str], seed: int = 0):
    """A copy of ``model`` (eval mode) with ``modules`` re-initialised by their own ``reset_parameters`` (as
    quantus's model randomisation does: weights and biases, and a BatchNorm's affine parameters and running
    statistics), seeded; the global random state is left as it was."""
    m = copy.deepcopy(model)
    named = dict(m.named_modules())
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(int(seed))
        for name in modules:
            if hasattr(named[name], "reset_parameters"):
                named[name].reset_parameters()
    finally:
        torch.random.set_rng_state(state)
    return m.eval()


# ---- similarity -------------------------------------------------------------------------------------------
def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation over the pixels of two maps (ties get their mean rank); 0 when either map is
    flat (a map with nothing in it keeps nothing of the other)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    ra, rb = rankdata(a) - (len(a) + 1) / 2, rankdata(b) - (len(b) + 1) / 2
    return float((ra @ rb) / np.sqrt((ra @ ra) * (rb @ rb)))


def ssim(a: np.ndarray, b: np.ndarray, *, data_range: float = 1.0, win: int = 7) -> float:
    """The mean structural similarity of two maps (Wang et al. 2004) as scikit-image computes it by default: a
    ``win`` x ``win`` uniform window, sample covariances, K1 = 0.01, K2 = 0.03, the border of ``win // 2`` pixels
    left out of the mean."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    n = win * win
    cov = n / (n - 1.0)
    ux, uy = ndimage.uniform_filter(a, win), ndimage.uniform_filter(b, win)
    vx = cov * (ndimage.uniform_filter(a * a, win) - ux * ux)
    vy = cov * (ndimage.uniform_filter(b * b, win) - uy * uy)
    vxy = cov * (ndimage.uniform_filter(a * b, win) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    p = win // 2
    return float(s[p:-p, p:-p].mean())


def edge_map(image: np.ndarray) -> np.ndarray:
    """The Sobel gradient magnitude of an image's grey levels, min-max scaled to [0, 1]: a 'saliency map' that
    needs no model (the sanity checks' edge-detector reference)."""
    g = np.asarray(image, np.float64)
    g = g.mean(2) if g.ndim == 3 else g
    m = np.hypot(ndimage.sobel(g, 0), ndimage.sobel(g, 1))
    return ((m - m.min()) / (np.ptp(m) or 1.0)).astype(np.float32)


def pointing(saliency: np.ndarray, mask: np.ndarray) -> bool:
    """The pointing game (Zhang et al. 2016, as quantus's PointingGame): whether the map's maximum lies inside
    ``mask``. A flat map points nowhere (False)."""
    s = np.asarray(saliency)
    if np.ptp(s) == 0:
        return False
    return bool(np.asarray(mask, bool).ravel()[int(np.argmax(s))])


# ---- the checks -----------------------------------------------------------------------------------------
def _maps_of(rec, layer, kind):
    if kind == "Grad-CAM":
        return {"map": rec["maps"][layer]["_layer"].gradcam()}
    lm = rec["maps"][layer][kind]
    return {"heaviest": lm.heaviest(), "union": lm.union()}


def sanity_records(
    model,
    xs: torch.Tensor,
    images: list,
    layers: list[str],
    *,
    point: str = "conv",
    kinds=("published",),
    targets=None,
    explain_layers: list[str] | None = None,
    tests=TESTS,
    seed: int = 0,
    output=None,
    progress=None,
    recipe: str = "fast",
    weighting: str = "guided",
    originals: list | None = None,
) -> pd.DataFrame:
    """One row per (image, map type, layer, map, test, step) with ``rho`` and ``ssim`` against the original
    explanation; tests "cascade", "independent", "random class" and the references "other image" and "edge".
    ``layers``: the layers whose maps are compared; ``explain_layers``: the model's explained layers (the parts
    randomised; default ``layers``); ``targets``: the classes explained (default the predicted ones); ``originals``:
    a list that receives the original explanations (:func:`explain_images`' records); ``recipe`` and ``weighting``
    as the session's."""
    kinds = tuple(kinds)
    names = kinds + ("Grad-CAM",)
    how = dict(recipe=recipe, weighting=weighting)
    n = len(xs)
    orig = explain_images(model, xs, images, targets, layers, point=point, kinds=kinds, output=output, **how)
    t0 = [r["exp"].target for r in orig]
    n_classes = len(orig[0]["exp"].probabilities)
    rows = []

    def compare(recs, test, step):
        for i, (o, r) in enumerate(zip(orig, recs)):
            for layer in layers:
                for kind in names:
                    a, b = _maps_of(o, layer, kind), _maps_of(r, layer, kind)
                    for which, m in a.items():
                        if m is None:
                            continue
                        # no map at all after the change (nothing kept): nothing of the original is left
                        other = b[which] if b[which] is not None else np.zeros_like(m)
                        rows.append(
                            dict(
                                image=i,
                                kind=kind,
                                layer=layer,
                                map=which,
                                test=test,
                                step=step,
                                rho=spearman(m, other),
                                ssim=ssim(m, other),
                            )
                        )

    units = model_units(model, list(explain_layers or layers), xs[:1])
    todo = []
    if "cascade" in tests:
        todo += [("cascade", name, [m for _, ms in units[: j + 1] for m in ms]) for j, (name, _) in enumerate(units)]
    if "independent" in tests:
        todo += [("independent", name, ms) for name, ms in units]
    total = len(todo) + ("random class" in tests)
    for j, (test, step, modules) in enumerate(todo):
        m = randomised(model, modules, seed=seed + 1000 * (test == "independent") + j)
        compare(explain_images(m, xs, images, t0, layers, point=point, kinds=kinds, output=output, **how), test, step)
        if progress:
            progress(j + 1, total, f"{test}: {step}")
    if "random class" in tests and n_classes > 1:
        rng = np.random.default_rng(seed)
        other = [int((t + rng.integers(1, n_classes)) % n_classes) for t in t0]
        compare(
            explain_images(model, xs, images, other, layers, point=point, kinds=kinds, output=output, **how),
            "random class",
            "other class",
        )
        if progress:
            progress(total, total, "random class")
    for i, o in enumerate(orig):  # references: another image's map, and the image's own edges
        for layer in layers:
            for kind in names:
                a = _maps_of(o, layer, kind)
                b = _maps_of(orig[(i + 1) % n], layer, kind) if n > 1 else None
                edges = edge_map(images[i])
                for which, m in a.items():
                    if m is None:
                        continue
                    if b is not None and b[which] is not None:
                        rows.append(
                            dict(
                                image=i,
                                kind=kind,
                                layer=layer,
                                map=which,
                                test="other image",
                                step="reference",
                                rho=spearman(m, b[which]),
                                ssim=ssim(m, b[which]),
                            )
                        )
                    rows.append(
                        dict(
                            image=i,
                            kind=kind,
                            layer=layer,
                            map=which,
                            test="edge",
                            step="reference",
                            rho=spearman(m, edges),
                            ssim=ssim(m, edges),
                        )
                    )
    out = pd.DataFrame(rows)
    out.attrs["units"] = [u for u, _ in units]
    if originals is not None:
        originals.extend(orig)
    return out


class SanityTable(pd.DataFrame):
    """A sanity-check summary (a DataFrame) whose :meth:`plot` draws Spearman's rho along the cascading
    randomisation, one line per map type and map, with the random class beside it (plotly)."""

    _metadata = ["records"]

    @property
    def _constructor(self):
        return SanityTable

    def plot(self, layer: str | None = None):  # noqa: D102 - a plotly figure, not pandas' matplotlib plot
        import plotly.graph_objects as go

        t = pd.DataFrame(self)
        layer = layer or t["layer"].iloc[-1]
        t = t[t["layer"] == layer]
        fig = go.Figure()
        for (kind, which), g in t.groupby(["kind", "map"], sort=False):
            steps = g[g["test"].isin(["cascade", "random class"])]
            fig.add_trace(
                go.Scatter(
                    x=[f"{s}" if te == "cascade" else "random class" for te, s in zip(steps["test"], steps["step"])],
                    y=steps["rho"],
                    mode="lines+markers",
                    name=f"{kind} ({which})",
                    error_y=dict(
                        type="data",
                        symmetric=False,
                        array=steps["rho_hi"] - steps["rho"],
                        arrayminus=steps["rho"] - steps["rho_lo"],
                    ),
                )
            )
        fig.update_layout(
            title=f"Sanity checks at {layer}: rank correlation with the original map",
            xaxis_title="re-initialised from the output back (cascading), or another class",
            yaxis_title="Spearman rho (95 % CI)",
            yaxis_range=[-0.3, 1.05],
            height=380,
            margin=dict(l=50, r=20, t=50, b=50),
        )
        return fig


def summarise(records: pd.DataFrame, *, seed: int = 0) -> SanityTable:
    """Mean rho and SSIM per (map type, layer, map, test, step), each with a bootstrap 95 % CI over images."""
    from .stats import ci

    rows = []
    for key, g in records.groupby(["kind", "layer", "map", "test", "step"], sort=False):
        r, s = ci(g["rho"], seed=seed), ci(g["ssim"], seed=seed)
        rows.append(
            dict(
                zip(["kind", "layer", "map", "test", "step"], key),
                rho=r.value,
                rho_lo=r.lo,
                rho_hi=r.hi,
                ssim=s.value,
                ssim_lo=s.lo,
                ssim_hi=s.hi,
                images=r.n,
            )
        )
    return SanityTable(rows)


def sanity_check(
    model,
    xs: torch.Tensor,
    images: list,
    layers: list[str],
    *,
    point: str = "conv",
    kinds=("published",),
    targets=None,
    explain_layers=None,
    tests=TESTS,
    seed: int = 0,
    output=None,
    progress=None,
    recipe: str = "fast",
    weighting: str = "guided",
) -> SanityTable:
    """:func:`sanity_records` summarised (:func:`summarise`): one row per (map type, layer, map, test, step) with
    rho and SSIM, each with its 95 % CI over the images. ``.plot()`` draws the cascade."""
    recs = sanity_records(
        model,
        xs,
        images,
        layers,
        point=point,
        kinds=kinds,
        targets=targets,
        explain_layers=explain_layers,
        tests=tests,
        seed=seed,
        output=output,
        progress=progress,
        recipe=recipe,
        weighting=weighting,
    )
    out = summarise(recs, seed=seed)
    out.attrs.update(
        units=recs.attrs["units"],
        point=point,
        kinds=list(kinds),
        meaning=(
            "rho and ssim compare each map with the original explanation's map of the same type and layer. A map that "
            "depends on the model and the class changes a lot (rho near 0) once the head is re-initialised (cascade, "
            "first step) or another class is explained; 'other image' and 'edge' are references: the similarity of "
            "two unrelated images' maps, and of the map with an edge detector that needs no model."
        ),
    )
    return out


def session_sanity_check(
    session,
    images=None,
    *,
    layers=None,
    maps=("published",),
    tests=("cascade", "random class"),
    seed: int = 0,
    progress: bool = True,
) -> SanityTable:
    """:func:`sanity_check` on a Session's own model, images and settings (recipe, weighting, layer point,
    output): ``Session.sanity_check``. ``images``: indices or pictures (default the first 8; of one size);
    ``layers``: the layers compared (default the deepest); ``maps``: map types
    (:data:`inv_widgets.engine.contrast.MAP_TYPES`; the layer's Grad-CAM is always beside them); ``tests``: any of
    "cascade" (re-initialise from the head back), "independent" (one part at a time) and "random class"."""
    from .contrast import check_maps

    kinds = tuple(check_maps(m) for m in ([maps] if isinstance(maps, str) else maps))
    tests = tuple([tests] if isinstance(tests, str) else tests)
    bad = [t for t in tests if t not in TESTS]
    if bad:
        raise ValueError(f"unknown sanity tests {bad}; choose from {list(TESTS)}")
    items = list(range(min(8, len(session)))) if images is None else list(images)
    if len(items) < 2:
        raise ValueError("a sanity check needs at least 2 images (the other-image reference compares them)")
    resolved = [session.image_set.resolve(im) for im in items]
    shapes = {tuple(x.shape) for x, _, _ in resolved}
    if len(shapes) > 1:
        raise ValueError(f"the images of one sanity check must have one size, got {sorted(shapes)}")
    xs = torch.stack([x for x, _, _ in resolved]).to(session.device)
    shown = [session.image_set.shown(i, x) for x, _, i in resolved]
    names = session.layers
    layers = [names[-1]] if layers is None else [layers] if isinstance(layers, str) else list(layers)
    unknown = [n for n in layers if n not in names]
    if unknown:
        raise ValueError(f"layers {unknown} are not explained by this session; its layers are {names}")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="sanity check", unit="model")

    def step(done, total, message):
        if bar is not None:
            bar.total, bar.n = total, done
            bar.set_postfix_str(message)

    try:
        with session.runner.lock:
            return sanity_check(
                session.model,
                xs,
                shown,
                layers,
                point=session.layer_point,
                kinds=kinds,
                tests=tests,
                explain_layers=names,
                seed=seed,
                output=session.output,
                progress=step,
                recipe=session.recipe,
                weighting=session.weighting,
            )
    finally:
        if bar is not None:
            bar.close()
