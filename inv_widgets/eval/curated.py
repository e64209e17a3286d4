"""An oracle control for the concept test: curated part images as the concept examples (``eval global``).

The controls of ``python -m inv_widgets.eval global`` test concepts made of Deep Reveal images of cluster maps
whose true part is known. When such a concept has little power, is it the examples (a revealed map is a blurred
top-k% window, not a clean part) or the test and the model? TCAV's own setting answers the first: curated
concept images. Here a **curated image** of part p of image i is image i with every pixel outside p's mask
replaced by the image's object-free background (``PartsDataset.background``): the part alone on its own
background. Per class and layer, with the same scored images, calibrated test and parameters as the other
controls:

- the class's **curated pool**: one curated image per (labelled image of the class, visible part with at least
  30 pixels); the labelled images are ``range(n_images)``, disjoint from the fresh scored images;
- **curated important / unimportant part**: the pool's images of one part of the class, split by the same
  occlusion importance (median of the class's parts) as the map controls;
- **curated absent part**: curated images of a part the class does not have, from other classes' labelled
  images (each on its own background), ``absent`` parts drawn at random per class and layer;
- **curated random subset**: random subsets of the pool (a null).

Random concepts and CAV random sets are drawn from the class's curated pool. Own seeded generator: the map
controls' random draws, and so their figures, do not change. Both draw their concepts with
:func:`drawn_concepts` (the map controls of ``eval global`` from revealed maps, these from curated images).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "CURATED_FAMILIES",
    "drawn_concepts",
    "curated_image",
    "curated_examples",
    "curated_tests",
    "curated_families",
    "curated_checks",
]

#: The curated families, in the order the report lists them.
CURATED_FAMILIES = (
    "curated random subset",
    "curated absent part",
    "curated important part",
    "curated unimportant part",
)


def curated_image(data, i: int, part: str, mask: np.ndarray | None = None) -> np.ndarray:
    """Image ``i`` with every pixel outside ``part``'s mask replaced by the image's object-free background,
    uint8 (H, W, 3)."""
    m = data.part_masks(i)[part] if mask is None else mask
    return np.where(m[..., None], data.array(i), data.background(i))


def curated_examples(data, indices, min_pixels: int = 30) -> dict:
    """``{(i, part): curated image as model input}`` for every image in ``indices`` and every visible part with
    at least ``min_pixels`` pixels."""
    out = {}
    for i in indices:
        i = int(i)
        masks = {p: m for p, m in data.part_masks(i).items() if m.sum() >= min_pixels}
        if not masks:
            continue
        img, bg = data.array(i), data.background(i)
        for p, m in masks.items():
            out[(i, p)] = data.to_tensor(np.where(m[..., None], img, bg))
    return out


def drawn_concepts(
    name, pool, by_part, imp, rng, *, cap: int, min_examples: int, controls: int, absent: int, prefix: str = ""
) -> list:
    """The control concepts of class ``name`` drawn from its examples ``pool`` (``by_part``: ``{(class, part):
    examples}`` over every class), as ``(family, concept, examples, importance)`` in this order, ``rng`` drawn
    in it: ``controls`` random subsets of the pool, each part of the class with at least ``min_examples``
    examples (important at or above the median of ``imp``, the parts' occlusion importance, else unimportant),
    and ``absent`` parts the class does not have, drawn among those with enough examples. Concepts hold at most
    ``cap`` examples; ``prefix`` names the families (``"curated "``)."""
    from ..demo import CLASS_PARTS

    concepts = []
    size = int(min(cap, max(min_examples, len(pool) // 4)))
    for r in range(controls):
        pick = rng.choice(len(pool), size, replace=False)
        concepts.append((prefix + "random subset", f"random {r}", [pool[j] for j in pick], None))
    med = float(np.median(list(imp.values()))) if imp else float("nan")
    for part in CLASS_PARTS[name]:
        keys = by_part.get((name, part), [])
        if len(keys) >= min_examples and part in imp:
            fam = "important part" if imp[part] >= med else "unimportant part"
            concepts.append((prefix + fam, part, keys[:cap], imp[part]))
    others: dict = {}
    for (c, p), ks in by_part.items():
        if c != name and p is not None and p not in CLASS_PARTS[name]:
            others.setdefault(p, []).extend(ks)
    candidates = sorted(p for p, ks in others.items() if len(ks) >= min_examples)
    for part in [candidates[j] for j in np.sort(rng.permutation(len(candidates))[:absent])]:
        keys = others[part]
        pick = np.sort(rng.choice(len(keys), min(len(keys), cap), replace=False))
        concepts.append((prefix + "absent part", part, [keys[j] for j in pick], None))
    return concepts


def curated_tests(
    session,
    data,
    layers,
    labelled,
    scored,
    importance,
    *,
    runs: int,
    null: int,
    min_examples: int,
    max_examples: int,
    controls: int,
    seed: int,
    absent: int = 3,
    progress: bool = True,
) -> list[tuple]:
    """``(class, layer, family, concept, n, importance, CalibratedResult)`` per curated concept.

    ``labelled``: the images curated examples come from; ``scored``: ``{class: scored image indices}``;
    ``importance``: ``{class: {part: occlusion drop}}`` (``occlusion_importance``)."""
    from tqdm.auto import tqdm

    from ..concepts.calibrated import ConceptSpace

    classes = session.classes
    examples = curated_examples(data, labelled)
    cls_of = {i: classes[data.label(i)] for i in {i for i, _ in examples}}
    by_class: dict = {}
    by_part: dict = {}  # (class, part) -> keys
    for k in examples:
        by_class.setdefault(cls_of[k[0]], []).append(k)
        by_part.setdefault((cls_of[k[0]], k[1]), []).append(k)
    rng = np.random.default_rng([seed, 20, 1])  # not the map controls' generator: their draws stay the same
    out = []
    bar = tqdm(total=len(layers) * len(classes), desc="curated controls", unit="class", disable=not progress)
    for li, layer in enumerate(layers):
        for ci_, name in enumerate(classes):
            pool = by_class.get(name, [])
            if len(pool) < 2 * min_examples or name not in scored:
                bar.update(1)
                continue
            cap = min(max_examples, len(pool) // 2)
            concepts = drawn_concepts(
                name,
                pool,
                by_part,
                importance.get(name, {}),
                rng,
                cap=cap,
                min_examples=min_examples,
                controls=controls,
                absent=absent,
                prefix="curated ",
            )
            used = list(dict.fromkeys(list(pool) + [k for _, _, ks, _ in concepts for k in ks]))
            space = ConceptSpace(
                session.model,
                layer,
                classes.index(name),
                {k: examples[k] for k in used},
                {i: session.input(i) for i in scored[name]},
                {k: k[0] for k in used},
                point=session.layer_point,
                seed=seed,
            )
            for fam, cname, keys, imp_v in concepts:
                r = space.test(keys, pool, runs=runs, n_null=null, seed=[seed, li, ci_], null_pool=pool)
                out.append((name, layer, fam, cname, len(keys), imp_v, r))
            bar.update(1)
    bar.close()
    return out


def curated_families(ctl) -> tuple:
    """The curated families when ``ctl`` (control rows) holds any, else none."""
    return CURATED_FAMILIES if ctl["family"].str.startswith("curated").any() else ()


def curated_checks(s, ctl, seed: int = 0) -> list[tuple[str, bool, str]]:
    """The oracle control (curated part images, ``inv_widgets.eval.curated``) against issue 20's figures: its
    null near alpha, its important parts significant above >= 0.5, and the AUROC of its part concepts' t
    against its random subsets' t and against the noise-label controls' t (of the map controls).

    ``s``: ``global_.summary``'s table; ``ctl``: the control rows."""
    from .stats import auroc

    if not len(ctl) or not curated_families(ctl):
        return []
    s = s.set_index("family")
    out = []
    if s.loc["control: curated random subset", "n"]:
        f = s.loc["control: curated random subset", "significant"]
        out.append(
            ("curated random subsets significant <= 0.05 (CI upper <= 0.10)", f.value <= 0.05 and f.hi <= 0.1, str(f))
        )
    fam = "control: curated important part"
    if s.loc[fam, "n"]:
        f, fh, ft = (s.loc[fam, c] for c in ("above", "above_holm", "tcav_significant"))
        out.append(
            (
                "curated important parts significant-above >= 0.5 (unadjusted / Holm; published t-test sig)",
                f.value >= 0.5,
                f"{f} / {fh}; published t-test {ft}",
            )
        )
    t = {f: ctl.loc[ctl["family"] == f, "t"] for f in ("curated random subset", "noise label")}
    for what, fams in (
        ("important", ("curated important part",)),
        ("every", ("curated important part", "curated unimportant part")),
    ):
        pos = ctl.loc[ctl["family"].isin(fams), "t"]
        for vs, neg in (
            ("curated random subsets", t["curated random subset"]),
            ("noise-label controls", t["noise label"]),
        ):
            a = auroc(pos, neg, seed=seed)
            out.append(
                (
                    f"curated part concepts ({what} part) vs {vs} AUROC of t >= 0.8",
                    bool(a.value >= 0.8),
                    f"{a} ({len(pos)} vs {len(neg)})",
                )
            )
    out += _ranking(ctl, seed)
    return out


def _ranking(ctl, seed: int, importance: dict | None = None) -> list[tuple[str, bool, str]]:
    """Why the median split caps the important family: random concepts of the class's own examples are a mix of
    its parts, so the test ranks a part against the class's average part. Per example kind (maps, curated): the
    share of each class's most important part (by occlusion; every part is in the curated families) significant
    above, and the AUROC of the t of important against unimportant parts. Figures, not targets.

    Without curated rows, ``importance`` (``{class: {part: occlusion importance}}``, every part measured) names
    each class's most important part, and only the maps' row is given."""
    from ..engine.stats import ci
    from .stats import auroc

    cur = ctl[ctl["family"].str.startswith("curated") & ctl["importance"].notna()]
    kinds = (("maps", ""), ("curated", "curated "))
    if len(cur):
        top = cur.groupby("cls")["importance"].max()
    elif importance:
        top, kinds = pd.Series({c: max(parts.values()) for c, parts in importance.items() if parts}), kinds[:1]
    else:
        return []
    out = []
    for kind, pre in kinds:
        g = ctl[ctl["family"].isin([pre + "important part", pre + "unimportant part"])]
        is_top = g["importance"].to_numpy() == g["cls"].map(top).to_numpy()
        up = ((g["p"] < 0.05) & (g["direction"] == "above")).to_numpy()
        f = ci(up[is_top], seed=seed) if is_top.any() else None
        a = auroc(
            g.loc[g["family"] == pre + "important part", "t"], g.loc[g["family"] == pre + "unimportant part", "t"]
        )
        out.append(
            (
                f"{kind}: each class's most important part significant above >= 0.5",
                f is not None and f.value >= 0.5,
                f"{f} ({int(is_top.sum())} concepts); AUROC of t, important vs unimportant parts {a}",
            )
        )
    return out
