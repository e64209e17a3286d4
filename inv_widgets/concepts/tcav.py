"""Are the labels of a global explanation concepts the network uses? :func:`concept_test`.

By default the calibrated concept test (``procedure="calibrated"``, :mod:`inv_widgets.concepts.calibrated`): a
label's maps are one concept, judged against random concepts of the class's own maps of the same size, tested
the same way. One argument away, ``procedure="tcav"``, the published TCAV procedure (Kim et al. 2018) with
captum, as follows. For each (class, layer, label) of a :class:`GlobalExplanation`:

- **concept examples**: the cluster maps of that class and layer whose best label it is, shown as the game
  shows them (Deep Reveal at a fixed step, default 3: the top 13 % of pixels, soft edges);
- **random examples**: revealed maps (same step) of the same layer that carry another label, from images
  that have no map with this label at this layer; ``runs + 1`` random sets R_0 .. R_runs, each as large as
  the largest concept set of that label at that layer but at most half the pool (so that the sets differ),
  shared by the classes that have the label. With ``random="same_class"``, the class's own maps at that layer
  with another label instead;
- a CAV (``captum.concept.TCAV``, a linear SVM per experimental set) for [concept, R_k] and for the
  baseline [R_k, R_k-1], k = 1..runs (neighbouring random sets, so that no one random set leans every baseline
  CAV its way); the **TCAV score** of a set is the share of the class's images whose
  directional derivative of the class logit along the CAV is positive (captum's ``sign_count``);
- a **two-sided t-test** (Student's, ``scipy.stats.ttest_ind``) of the ``runs`` concept scores against the
  ``runs`` baseline scores; significant when p < ``alpha``.

CAVs are saved by captum under ``save_path`` and reused by a later call with the same examples, seed and
classifier (the concept ids are hashes of their examples); a CAV takes 2 x (the layer's features) numbers, 256 KB
at the demo's deepest layers. The layer activations captum stores to train them (~130 KB per example there) are
deleted as soon as the CAVs are trained; each example's activation is computed once per call and kept in memory
for the layer being tested.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import weakref
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from ..engine import MapKey
from ..engine.runtime import limited_threads
from .captum_tcav import TCAVRunner, ttest_p
from .examples import TCAV_COLUMNS, _keys, _order, _reveal, _rng, fill_colour, model_runner

__all__ = ["concept_test", "TCAVRunner", "RESULT_COLUMNS", "random_sets", "ttest_p"]

RESULT_COLUMNS = TCAV_COLUMNS


# ---- the public function ---------------------------------------------------------------------------------
def _default_save_path(ge) -> str:
    """A temporary folder that lives as long as the GlobalExplanation (a second call reuses its CAVs)."""
    path = getattr(ge, "_tcav_dir", None)
    if path is None or not os.path.isdir(path):
        path = tempfile.mkdtemp(prefix="inv_tcav_")
        ge._tcav_dir = path
        weakref.finalize(ge, shutil.rmtree, path, True)
    return path


def concept_test(
    session,
    global_explanation,
    classes=None,
    layers=None,
    n_labels: int = 5,
    runs: int = 10,
    *,
    labels: Sequence[str] | None = None,
    procedure: str = "calibrated",
    random: str | None = None,
    null: int = 30,
    step: int = 3,
    fill: str = "black",
    alpha: float = 0.05,
    min_examples: int = 10,
    max_examples: int = 50,
    max_images: int = 50,
    scored_images=None,
    save_path=None,
    seed: int = 0,
    threads: int = 1,
    progress: bool = True,
    attach: bool = True,
) -> pd.DataFrame:
    """Test the labels of a global explanation: are they concepts the class's logit reads?

    ``procedure="calibrated"`` (default, ``inv_widgets.concepts.calibrated``): each label's maps are one concept,
    judged against ``null`` random concepts of the class's own maps of the same size tested the same way (the
    concept, not a run, is the unit of replication); a continuous score (the mean cosine between the class's
    gradients and the CAV) beside TCAV's sign count; the direction (above or below the random concepts); Holm's
    correction over the rows of the call; scored images held out from the images the concept's maps come from.
    ``procedure="tcav"``: the published TCAV procedure (Kim et al. 2018, captum): a two-sided t-test of the
    concept's ``runs`` TCAV scores against random runs (its false-positive rate is far above alpha: see
    ``python -m inv_widgets.eval global``); see the module docstring.

    Parameters
    ----------
    session : Session
        The model and images the labels were given on (activations and gradients are read at its
        ``layer_point``; the published procedure reads the layer module's own output, as captum does). The model
        is called through its ``runner`` (``Session(output=...)`` holds); a stored Run, which has no model, is
        refused with a ``TypeError`` (the global explanation may come from the run).
    global_explanation : GlobalExplanation
        Built from this model's labels.
    classes : list of class names or indices, optional
        Default: every class with labels.
    layers : list of layer names or positions, optional
        Default: the two deepest layers of the explanation (where the labels name parts).
    n_labels : int
        The top labels tested per class and layer (default 5).
    runs : int
        CAVs per concept, each against another random set (default 10).
    labels : list of str, optional
        Labels tested as well wherever a class has maps with them (e.g. noise labels).
    procedure : {"calibrated", "tcav"}
        The calibrated test (default) or the published TCAV procedure.
    random : {"same_class", "other_labels"}, optional
        Where random examples come from: the same class's maps at the layer with other labels ("same_class",
        the calibrated test's only choice and its default), or revealed maps of other labels from images without
        this label, any class ("other_labels", the published procedure's default: a significant result then
        mostly says "this is the class").
    null : int
        Random concepts per (class, layer, concept size) of the calibrated test (default 30).
    step : int
        The Deep Reveal step of the concept and random examples (0..5; default 3, the top 13 % of pixels).
    fill : {"black", "mean"}
        What the examples' hidden pixels show: black (default, the game's view) or the mean colour of the
        session's Normalize step (model input 0).
    alpha : float
        Significance level (default 0.05; after Holm's correction for the calibrated test).
    min_examples, max_examples : int
        A label needs at least ``min_examples`` maps to be tested (default 10; else its row says why); at most
        ``max_examples`` are used (a seeded sample).
    max_images : int
        At most this many images of the class are scored (a seeded sample).
    scored_images : dict, optional
        ``{class name: [image indices]}``: the images scored for a class (calibrated test; default the class's
        labelled images, each concept's own source images left out).
    save_path : path, optional
        Where captum keeps the CAVs of the published procedure. Default: a temporary folder kept as long as the
        GlobalExplanation.
    seed : int
        Seeds the samples and the classifier.
    threads : int
        torch and BLAS threads while testing (default 1).
    progress : bool
        A progress bar (tqdm.auto) over the tests.
    attach : bool
        Attach the result to the GlobalExplanation (``ge.tcav``, ``ge.table``, views update).

    Returns
    -------
    DataFrame, one row per (class, layer, label) asked for, tested or not: global_score, n_examples, n_random
    (size of each random set), n_images (images scored), runs, tcav_score (TCAV's sign count: the share of scored
    images whose logit rises along the CAV) and random_score (the same for the random concepts / runs), p_value,
    significant, cav_accuracy, note (why a label was not tested; empty when it was), procedure, direction
    ("above" or "below" the random concepts), and for the calibrated test cosine and null_cosine (mean cosine of
    the concept and of the random concepts), t, p_raw (before Holm's correction), n_null. ``attrs["meaning"]`` says
    what a significant row means and what it does not; ``attrs["untested"]`` lists the untested rows.
    """
    import warnings

    from .calibrated import MEANING, calibrated_test

    model_runner(session, "concept_test")  # a stored run has no model: said before anything else
    ge = global_explanation
    if ge.maps.empty:
        raise ValueError("the global explanation has no labelled maps: nothing to test")
    other = set(ge.maps["model"]) - {session.fingerprint}
    if other:
        raise ValueError(
            f"the global explanation has labels of other models ({sorted(other)}) than this "
            f"session's ({session.fingerprint}); build it with GlobalExplanation.from_labels(df, session)"
        )
    if procedure not in ("calibrated", "tcav"):
        raise ValueError(
            f"procedure must be 'calibrated' (the default) or 'tcav' (the published TCAV procedure), got {procedure!r}"
        )
    random = random or ("same_class" if procedure == "calibrated" else "other_labels")
    if random not in ("other_labels", "same_class"):
        raise ValueError(f"random must be 'other_labels' or 'same_class', got {random!r}")
    if procedure == "calibrated" and random != "same_class":
        raise ValueError(
            "the calibrated test draws its random concepts from the class's own maps (random="
            "'same_class'); random='other_labels' belongs to the published procedure: procedure='tcav'"
        )
    runs, n_labels, step, null = int(runs), int(n_labels), int(step), int(null)
    if runs < 2:
        raise ValueError(f"runs must be at least 2 for a t-test (TCAV uses 10 or more), got {runs}")
    if n_labels < 1:
        raise ValueError(f"n_labels must be at least 1, got {n_labels}")
    if not 0 <= step <= 5:
        raise ValueError(f"step must be a Deep Reveal step 0..5, got {step}")
    fill_colour(session, fill)  # an unknown fill is refused before anything runs
    if not 0 < float(alpha) < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if int(min_examples) < 2 or int(max_examples) < int(min_examples):
        raise ValueError(f"need 2 <= min_examples <= max_examples, got {min_examples} and {max_examples}")
    if procedure == "calibrated" and null < 3:
        raise ValueError(f"null must be at least 3 random concepts (30 or more to mean something), got {null}")
    few = [
        f"{what}={v} (at least {lo})"
        for what, v, lo in (
            ("min_examples", int(min_examples), 10),
            ("runs", runs, 10),
            ("null", null if procedure == "calibrated" else 30, 30),
        )
        if v < lo
    ]
    if few:
        warnings.warn(
            f"concept_test: {', '.join(few)} are too few for a significant result to mean anything: tiny "
            "concepts and few runs or random concepts give CAVs that separate noise and p-values that do "
            "not hold their level; read such rows as a smoke test, not evidence",
            UserWarning,
            stacklevel=2,
        )
    names = [ge.class_name(c) for c in (classes if classes is not None else sorted(set(ge.maps["target"])))]
    layers = [ge.layer_name(x) for x in (layers if layers is not None else ge.layers[-2:])]
    modules = dict(session.runner.model.named_modules())
    missing = [x for x in layers if x not in modules]
    if missing:
        raise ValueError(
            f"layers {missing} are not modules of the model; TCAV needs module names such as "
            f"{[n for n in session.layers[-2:]]}"
        )
    if procedure == "calibrated":
        from threadpoolctl import threadpool_limits

        with limited_threads(threads), threadpool_limits(int(threads)):
            out = calibrated_test(
                session,
                ge,
                names,
                layers,
                n_labels=n_labels,
                labels=labels,
                runs=runs,
                n_null=null,
                step=step,
                alpha=float(alpha),
                min_examples=int(min_examples),
                max_examples=int(max_examples),
                max_images=int(max_images),
                scored_images=scored_images,
                seed=int(seed),
                progress=progress,
                fill=fill,
            )
        out.attrs.update(
            alpha=float(alpha),
            step=step,
            fill=fill,
            random=random,
            procedure=procedure,
            seed=int(seed),
            null=null,
            correction="holm",
        )
        return _finish(out, ge, attach, MEANING)
    if save_path is None:
        save_path = _default_save_path(ge)
    runner = TCAVRunner(session, save_path, seed=seed)
    tests, families = _plan(
        ge, names, layers, n_labels, labels, int(min_examples), int(max_examples), runs, seed, random
    )
    inputs_of = {}
    for name in names:
        idx = sorted(session.index_of(i) for i in set(ge.maps.loc[ge.maps["class"] == name, "image_id"]))
        if len(idx) > int(max_images):
            idx = sorted(_rng(seed, "images", name).choice(idx, int(max_images), replace=False).tolist())
        inputs_of[name] = idx

    reveals: dict[MapKey, np.ndarray] = {}
    suffix = "" if fill == "black" else f"|{fill}"  # CAVs saved under one fill are not another's

    def load(keys):
        return [reveals[k] for k in keys]

    for t in tests:
        fam = families[t["family"]]
        if len(t["keys"]) < int(min_examples):
            t["note"] = f"{len(t['keys'])} maps carry this label (min_examples={int(min_examples)})"
        elif fam["sets"] is None:
            where = "of this class" if random == "same_class" else "from other images"
            t["note"] = (
                f"only {fam['pool']} maps with other labels {where} at this layer: too few for {runs + 1} "
                f"different random sets (min_examples={int(min_examples)})"
            )
        else:
            t["note"] = ""
            t["concept"] = runner.concept(t["keys"], load, tag=f"reveal|{t['layer']}|step{step}{suffix}")
            t["randoms"] = [runner.concept(r, load, tag=f"reveal|{t['layer']}|step{step}{suffix}") for r in fam["sets"]]
    # the maps whose Deep Reveal images are needed: those of tests with a CAV not saved yet
    needed = {
        k
        for t in tests
        if not t["note"] and not runner.has_cavs(t["layer"], t["concept"], t["randoms"])
        for k in t["keys"] + [k for r in families[t["family"]]["sets"] for k in r]
    }

    rows = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tests), desc=f"TCAV: revealing {len(needed)} maps" if needed else "TCAV", unit="label")
    try:
        from threadpoolctl import threadpool_limits  # the BLAS under numpy (the SVM's Gram matrices)

        with limited_threads(threads), threadpool_limits(int(threads)):
            _reveal(session, needed, step, reveals, fill)  # each image explained once, for every layer
            if bar is not None:
                bar.set_description("TCAV")
            for layer in layers:
                # every example of the layer through the model once, in full batches, before captum asks
                runner.prefetch(layer, sorted((k for k in needed if k.layer == layer), key=_order), load)
                todo = [t for t in tests if t["layer"] == layer]
                for name in dict.fromkeys(t["name"] for t in todo):
                    mine = [t for t in todo if t["name"] == name]
                    run = [t for t in mine if not t["note"]]
                    results = []
                    if run:
                        inputs = torch.stack([session.input(i) for i in inputs_of[name]])
                        results = runner.test_many(
                            layer, inputs, ge.classes.index(name), [(t["concept"], t["randoms"]) for t in run]
                        )
                    found = dict(zip(map(id, run), results))
                    for t in mine:
                        row = _row(t, ge, runs, len(inputs_of[name]))
                        res = found.get(id(t))
                        if res is not None:
                            row.update(
                                n_random=len(t["randoms"][0]._inv_examples),
                                tcav_score=float(np.mean(res["concept"])),
                                tcav_std=float(np.std(res["concept"])),
                                random_score=float(np.mean(res["random"])),
                                random_std=float(np.std(res["random"])),
                                p_value=res["p_value"],
                                significant=bool(res["p_value"] < float(alpha)),
                                cav_accuracy=res["cav_accuracy"],
                            )
                        rows.append(row)
                        if bar is not None:
                            bar.update(1)
                runner.forget_activations(layer=layer)
    finally:
        reveals.clear()
        if bar is not None:
            bar.close()
    out = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    out = out.astype(
        {
            "target": "int64",
            "n_examples": "int64",
            "n_random": "int64",
            "n_images": "int64",
            "runs": "int64",
            "significant": "bool",
        }
    )
    out["procedure"] = "tcav"
    out["direction"] = np.where(
        out["tcav_score"] > out["random_score"], "above", np.where(out["tcav_score"] < out["random_score"], "below", "")
    )
    out.attrs.update(
        alpha=float(alpha),
        step=step,
        random=random,
        save_path=str(save_path),
        seed=int(seed),
        procedure=procedure,
        correction="none",
    )
    return _finish(out, ge, attach, TCAV_MEANING)


#: What a significant row of the published procedure means.
TCAV_MEANING = (
    "The published TCAV procedure: a significant row means the concept's TCAV scores over the runs differ from "
    "the random runs' in a two-sided t-test. The runs share the concept's examples, so they are not independent: "
    "noise labels and random subsets of a class's maps come out significant far more often than alpha (python -m "
    "inv_widgets.eval global). It does not mean the label names what the maps show."
)


def _finish(out: pd.DataFrame, ge, attach: bool, meaning: str) -> pd.DataFrame:
    """Say what the rows mean and which were not tested; attach to the global explanation."""
    import warnings

    untested = out[out["note"] != ""]
    out.attrs["meaning"] = meaning
    out.attrs["untested"] = [f"{r['class']} / {r['layer']} / {r['label']}: {r['note']}" for _, r in untested.iterrows()]
    if len(untested):
        warnings.warn(
            f"concept_test: {len(untested)} of {len(out)} labels were not tested (see the 'note' column and "
            f"attrs['untested']), e.g. {out.attrs['untested'][0]}",
            UserWarning,
            stacklevel=3,
        )
    if attach:
        ge.attach_tcav(out)
    return out


def _plan(ge, names, layers, n_labels, labels, min_examples, max_examples, runs, seed, random):
    """The tests (class, layer, label, concept keys) and their random families: per (layer, label), shared by the
    classes with that label, revealed maps of other labels from images without it (``random="other_labels"``);
    or per (class, layer, label), the class's maps at that layer with another label (``"same_class"``)."""
    maps = ge.maps
    tests, families = [], {}
    for layer in layers:
        at = maps[maps["layer"] == layer]
        for name in names:
            wanted = list(ge.top(name, layer, n_labels)["label"])
            present = set(at.loc[at["class"] == name, "label"])
            wanted += [lab for lab in (labels or []) if lab in present and lab not in wanted]
            for lab in wanted:
                rows = ge.maps_of(name, layer, lab).sort_values(["image_id", "members"], kind="stable")
                keys = _keys(rows)
                if len(keys) > max_examples:
                    pick = np.sort(
                        _rng(seed, "concept", name, layer, lab).choice(len(keys), max_examples, replace=False)
                    )
                    keys = [keys[p] for p in pick]
                family = (layer, lab, name if random == "same_class" else None)
                tests.append(
                    dict(
                        name=name,
                        layer=layer,
                        label=lab,
                        keys=keys,
                        family=family,
                        global_score=float(rows["score"].sum()),
                    )
                )
                fam = families.setdefault(family, {"size": 0})
                if len(keys) >= min_examples:
                    fam["size"] = max(fam["size"], len(keys))
    for (layer, lab, name), fam in families.items():
        at = maps[maps["layer"] == layer]
        if name is None:
            with_label = set(at.loc[at["label"] == lab, "image_id"])
            pool = at[(at["label"] != lab) & ~at["image_id"].isin(with_label)]
        else:
            pool = at[(at["label"] != lab) & (at["class"] == name)]
        pool = _keys(pool.sort_values(["image_id", "target", "members"], kind="stable"))
        fam["pool"] = len(pool)
        # as large as the largest concept set, yet at most half the pool (so that the random sets differ)
        size = min(fam["size"], max(min_examples, len(pool) // 2), len(pool))
        picks = (
            random_sets(len(pool), size, runs + 1, _rng(seed, "random", random, layer, lab, name))
            if size >= min_examples
            else None
        )
        fam["sets"] = None if picks is None else [[pool[p] for p in pick] for pick in picks]
    return tests, families


def random_sets(n_pool: int, size: int, n_sets: int, rng: np.random.Generator) -> list[list[int]] | None:
    """``n_sets`` different random sets: sorted samples of ``size`` positions of ``range(n_pool)`` (each without
    replacement), drawn in turn with ``rng`` and a repeat drawn again; None when there are fewer than ``n_sets``
    different samples (two equal random sets would make a baseline CAV between one concept and itself)."""
    if not 1 <= size <= n_pool or math.comb(n_pool, size) < n_sets:
        return None
    out, seen = [], set()
    while len(out) < n_sets:
        pick = tuple(np.sort(rng.choice(n_pool, size, replace=False)).tolist())
        if pick not in seen:
            seen.add(pick)
            out.append(list(pick))
    return out


def _row(t: dict, ge, runs: int, n_images: int) -> dict:
    return {
        "class": t["name"],
        "target": ge.classes.index(t["name"]),
        "layer": t["layer"],
        "label": t["label"],
        "global_score": t["global_score"],
        "n_examples": len(t["keys"]),
        "n_random": 0,
        "n_images": n_images,
        "runs": runs,
        "tcav_score": np.nan,
        "tcav_std": np.nan,
        "random_score": np.nan,
        "random_std": np.nan,
        "p_value": np.nan,
        "significant": False,
        "cav_accuracy": np.nan,
        "note": t["note"],
    }
