"""TCAV (Kim et al. 2018) with captum: are the labels of a global explanation concepts the network uses?

For each (class, layer, label) of a :class:`GlobalExplanation`:

- **concept examples**: the cluster maps of that class and layer whose best label it is, shown as the game
  shows them (Deep Reveal at a fixed step, default 3: the top 13 % of pixels, soft edges);
- **random examples**: revealed maps (same step) of the same layer that carry another label, from images
  that have no map with this label at this layer; ``runs + 1`` random sets R_0 .. R_runs, each as large as
  the largest concept set of that label at that layer (shared by the classes that have the label);
- a CAV (``captum.concept.TCAV``, a linear SVM per experimental set) for [concept, R_k] and for the
  baseline [R_0, R_k], k = 1..runs; the **TCAV score** of a set is the share of the class's images whose
  directional derivative of the class logit along the CAV is positive (captum's ``sign_count``);
- a **two-sided t-test** (Student's, ``scipy.stats.ttest_ind``) of the ``runs`` concept scores against the
  ``runs`` baseline scores; significant when p < ``alpha``.

CAVs are saved by captum under ``save_path`` and reused by a later call with the same examples, seed and
classifier (the concept ids are hashes of their examples). The layer activations captum stores to train
them are deleted once a label's CAVs exist (they take ~130 KB per example at the demo's deepest layers).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
import weakref
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from ..engine import MapKey
from ..engine.runtime import eval_mode
from ..inputs import to_model_input

__all__ = ["concept_test", "TCAVRunner", "RESULT_COLUMNS", "ttest_p"]

RESULT_COLUMNS = ["class", "target", "layer", "label", "global_score", "n_examples", "n_random", "n_images",
                  "runs", "tcav_score", "tcav_std", "random_score", "random_std", "p_value", "significant",
                  "cav_accuracy", "note"]


def ttest_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Student's t-test of ``a`` against ``b``; with no spread in either, 0 when the
    means differ and 1 when they are equal (scipy would give NaN)."""
    from scipy.stats import ttest_ind

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("a t-test needs at least 2 runs on each side")
    if a.std() == 0 and b.std() == 0:
        return 0.0 if a.mean() != b.mean() else 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's precision note when one side has no spread
        return float(ttest_ind(a, b).pvalue)


# ---- captum pieces ---------------------------------------------------------------------------------------
def _classifier(seed: int, C: float, test_split: float):
    """A captum ``Classifier``: a linear SVM (liblinear, seeded), the hinge loss of TCAV's SGD classifier solved
    exactly; a stratified, seeded ``test_split`` is held out for the accuracy in the CAV's stats."""
    from captum.concept._utils.classifier import Classifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.svm import LinearSVC

    class LinearSVMClassifier(Classifier):
        def __init__(self):
            self.lm = None

        def train_and_eval(self, dataloader, **kwargs):
            xs, ys = zip(*[(x, y) for x, y in dataloader])
            x = torch.cat(xs).detach().float().cpu().numpy()
            y = torch.cat(ys).cpu().numpy()
            counts = np.unique(y, return_counts=True)[1]
            acc = float("nan")
            train = slice(None)
            if test_split > 0 and len(counts) == 2 and counts.min() >= 3:
                train, test = train_test_split(np.arange(len(y)), test_size=test_split, stratify=y,
                                               random_state=seed)
            # one scale for all features (the mean example norm): the same hyperplanes as on the raw
            # activations with C scaled, but C means the same at every layer and liblinear converges fast
            scale = float(np.linalg.norm(x[train], axis=1).mean()) or 1.0
            self.lm = LinearSVC(C=C, class_weight="balanced", random_state=seed, max_iter=5000)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)  # a hyperplane all the same
                self.lm.fit(x[train] / scale, y[train])
            if not isinstance(train, slice):
                acc = float(self.lm.score(x[test] / scale, y[test]))
            return {"accs": acc}

        def weights(self):
            w = torch.as_tensor(self.lm.coef_, dtype=torch.float32)  # a direction: the scale does not matter
            return torch.stack([-w[0], w[0]]) if w.shape[0] == 1 else w

        def classes(self):
            return [int(c) for c in self.lm.classes_]  # plain ints: captum's CAV.load reads them back safely

    return LinearSVMClassifier()


def _tcav_class():
    """``captum.concept.TCAV`` with one fix: captum 0.9's ``load_cavs`` asks ``AV.exists(path, model_id, layer,
    identifier)`` with layer and identifier swapped, never finds saved activations, and so recomputes a
    concept's activations for every experimental set it is in (R_0 2 x runs times). The override is captum's
    own method with the arguments in their order."""
    from collections import defaultdict

    from captum._utils.av import AV
    from captum.concept import TCAV
    from captum.concept._core.cav import CAV
    from captum.concept._utils.common import concepts_to_str

    class FixedTCAV(TCAV):
        def load_cavs(self, concepts):
            concepts_key = concepts_to_str(concepts)
            layers, concept_layers = [], defaultdict(list)
            for layer in self.layers:
                cav = CAV.load(self.save_path, self.model_id, concepts, layer)
                if cav is not None:
                    self.cavs[concepts_key][layer] = cav
                if concepts_key not in self.cavs or not self.cavs[concepts_key].get(layer):
                    layers.append(layer)
                    for concept in concepts:
                        if not AV.exists(self.save_path, self.model_id, concept.identifier, layer):
                            concept_layers[concept].append(layer)
            return layers, concept_layers

    return FixedTCAV


class _Images(Dataset):
    """Model inputs of a list of images (uint8 arrays), made on first use: a concept whose CAVs are saved
    already never computes its examples."""

    def __init__(self, fetch: Callable[[], list], transform):
        self._fetch = fetch
        self._transform = transform
        self._items: list | None = None

    def _get(self) -> list:
        if self._items is None:
            self._items = [to_model_input(a, self._transform) for a in self._fetch()]
        return self._items

    def __len__(self):
        return len(self._get())

    def __getitem__(self, i):
        return self._get()[i]

    def release(self):
        self._items = None


class TCAVRunner:
    """captum TCAV on one session, with concepts given as lists of images and CAVs saved under ``save_path``.

    ``runner.concept(identity, fetch)`` makes a ``captum.concept.Concept`` whose id is a hash of ``identity``
    (so a saved CAV is found again only for the same examples), ``runner.test(layer, inputs, target, concept,
    randoms)`` runs the experimental sets [concept, R_k] and [R_0, R_k] and returns the scores. Used by
    :func:`concept_test` and by the ground-truth concepts of ``python -m inv_widgets.eval global``.
    """

    def __init__(self, session, save_path, *, seed: int = 0, C: float = 1.0, test_split: float = 1 / 3,
                 batch_size: int = 64):
        from captum.concept import TCAV  # noqa: F401 - fail early when captum is missing

        self.session = session
        self.save_path = str(save_path)
        self.seed, self.C, self.test_split = int(seed), float(C), float(test_split)
        self.batch_size = int(batch_size)
        self.model_id = f"{session.fingerprint}-svm-C{self.C:g}-split{self.test_split:.3f}-seed{self.seed}"
        self._concepts: dict = {}
        self._tcav: dict = {}
        os.makedirs(self.save_path, exist_ok=True)

    def concept(self, identity: str, fetch: Callable[[], list]):
        """The concept whose examples are ``fetch()`` (uint8 images), one instance per identity."""
        from captum.concept import Concept

        cid = int(hashlib.sha1(identity.encode()).hexdigest()[:15], 16)
        hit = self._concepts.get(cid)
        if hit is not None:
            return hit
        device = self.session.device

        def collate(batch):
            return torch.stack(batch).to(device)

        data = _Images(fetch, self.session.transform)
        c = Concept(cid, "inv", DataLoader(data, batch_size=self.batch_size, collate_fn=collate))
        c._inv_data = data
        self._concepts[cid] = c
        return c

    def _for_layer(self, layer: str):
        t = self._tcav.get(layer)
        if t is None:
            t = _tcav_class()(self.session.model, [layer], model_id=self.model_id,
                     classifier=_classifier(self.seed, self.C, self.test_split), save_path=self.save_path)
            self._tcav[layer] = t
        return t

    def has_cavs(self, layer: str, concept, randoms) -> bool:
        """Whether every CAV of the test is saved already (then no example is computed)."""
        from captum.concept._core.cav import CAV

        sets = [[concept, r] for r in randoms[1:]] + [[randoms[0], r] for r in randoms[1:]]
        return all(os.path.exists(CAV.assemble_save_path(self.save_path, self.model_id, s, layer)) for s in sets)

    def test(self, layer: str, inputs: torch.Tensor, target: int, concept, randoms) -> dict:
        """TCAV scores of [concept, R_k] and [R_0, R_k] for k = 1..len(randoms) - 1 on ``inputs`` (the class's
        images) for the logit of ``target``; ``p_value`` of the two-sided t-test between them."""
        from captum.concept._utils.common import concepts_to_str

        if len(randoms) < 3:
            raise ValueError("TCAV needs at least 2 random runs (3 random sets: R_0 and R_1..R_runs)")
        tcav = self._for_layer(layer)
        sets = [[concept, r] for r in randoms[1:]] + [[randoms[0], r] for r in randoms[1:]]
        model = self.session.model
        with eval_mode(model), torch.enable_grad(), warnings.catch_warnings():
            # captum's CAV.load names numpy.core (deprecated in numpy 2): not ours to fix, and harmless
            warnings.filterwarnings("ignore", message="numpy.core is deprecated", category=DeprecationWarning)
            scores = tcav.interpret(inputs.to(self.session.device), sets, target=int(target))
        runs = len(randoms) - 1
        sign = [float(scores[concepts_to_str(s)][layer]["sign_count"][0]) for s in sets]
        accs = [tcav.cavs[concepts_to_str(s)][layer].stats.get("accs", float("nan")) for s in sets[:runs]]
        accs = [float(a) for a in accs if a is not None]
        return {"concept": sign[:runs], "random": sign[runs:], "p_value": ttest_p(sign[:runs], sign[runs:]),
                "cav_accuracy": float(np.nanmean(accs)) if accs and not np.all(np.isnan(accs)) else float("nan")}

    def forget_activations(self, concepts) -> None:
        """Delete the layer activations captum stored for these concepts (their CAVs stay)."""
        root = os.path.join(self.save_path, "av", self.model_id)
        for c in concepts:
            shutil.rmtree(os.path.join(root, c.identifier), ignore_errors=True)
            c._inv_data.release()


# ---- the public function ---------------------------------------------------------------------------------
def _rng(seed: int, *parts) -> np.random.Generator:
    h = hashlib.sha1("\x1f".join(map(str, (seed,) + parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def _key_text(k: MapKey) -> str:
    return f"{k.image_id}/{k.target}/{k.members_text}"


def _keys(df: pd.DataFrame) -> list[MapKey]:
    return [MapKey(*row) for row in df[["model", "image_id", "target", "layer", "members"]]
            .itertuples(index=False, name=None)]


def _default_save_path(ge) -> str:
    """A temporary folder that lives as long as the GlobalExplanation (a second call reuses its CAVs)."""
    path = getattr(ge, "_tcav_dir", None)
    if path is None or not os.path.isdir(path):
        path = tempfile.mkdtemp(prefix="inv_tcav_")
        ge._tcav_dir = path
        weakref.finalize(ge, shutil.rmtree, path, True)
    return path


def concept_test(session, global_explanation, classes=None, layers=None, n_labels: int = 5, runs: int = 10, *,
                 labels: Sequence[str] | None = None, step: int = 3, alpha: float = 0.05, min_examples: int = 5,
                 max_examples: int = 50, max_images: int = 50, save_path=None, seed: int = 0,
                 progress: bool = True, attach: bool = True) -> pd.DataFrame:
    """Test the labels of a global explanation with TCAV (captum); see the module docstring for the method.

    Parameters
    ----------
    session : Session
        The model and images the labels were given on.
    global_explanation : GlobalExplanation
        Built from this model's labels.
    classes : list of class names or indices, optional
        Default: every class with labels.
    layers : list of layer names or positions, optional
        Default: the two deepest layers of the explanation (where the labels name parts; TCAV at early layers
        costs more and says little). Any layer of the explanation that names a module of the model works.
    n_labels : int
        The top labels tested per class and layer (default 5).
    runs : int
        Random runs (default 10; the t-test needs at least 2, TCAV's authors use 10 or more).
    labels : list of str, optional
        Labels tested as well wherever a class has maps with them (e.g. noise labels).
    step : int
        The Deep Reveal step of the concept and random examples (0..5; default 3, the top 13 % of pixels).
    alpha : float
        Significance level of the two-sided t-test (default 0.05).
    min_examples, max_examples : int
        A label needs at least ``min_examples`` maps to be tested (else its row says why); at most
        ``max_examples`` are used (a seeded sample).
    max_images : int
        At most this many labelled images of the class are scored (a seeded sample).
    save_path : path, optional
        Where captum keeps the CAVs (reused by a later call with the same examples). Default: a temporary
        folder kept as long as the GlobalExplanation.
    seed : int
        Seeds the samples and the classifier.
    progress : bool
        A progress bar (tqdm.auto) over the tests.
    attach : bool
        Attach the result to the GlobalExplanation (``ge.tcav``, ``ge.table``, views update).

    Returns
    -------
    DataFrame, one row per (class, layer, label): global_score (of the global explanation), n_examples,
    n_random (size of each random set), n_images (class images scored), runs, tcav_score and tcav_std (mean and
    spread of the concept's TCAV scores over the runs), random_score and random_std (the same for the
    random baseline), p_value, significant (p < alpha), cav_accuracy (mean held-out accuracy of the concept's
    CAVs), note (why a label was not tested).
    """
    ge = global_explanation
    if ge.maps.empty:
        raise ValueError("the global explanation has no labelled maps: nothing to test")
    other = set(ge.maps["model"]) - {session.fingerprint}
    if other:
        raise ValueError(f"the global explanation has labels of other models ({sorted(other)}) than this "
                         f"session's ({session.fingerprint}); build it with GlobalExplanation.from_labels(df, session)")
    runs, n_labels, step = int(runs), int(n_labels), int(step)
    if runs < 2:
        raise ValueError(f"runs must be at least 2 for a t-test (TCAV uses 10 or more), got {runs}")
    if n_labels < 1:
        raise ValueError(f"n_labels must be at least 1, got {n_labels}")
    if not 0 <= step <= 5:
        raise ValueError(f"step must be a Deep Reveal step 0..5, got {step}")
    if not 0 < float(alpha) < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if int(min_examples) < 2 or int(max_examples) < int(min_examples):
        raise ValueError(f"need 2 <= min_examples <= max_examples, got {min_examples} and {max_examples}")
    names = [ge.class_name(c) for c in (classes if classes is not None else
                                         sorted(set(ge.maps["target"])))]
    layers = [ge.layer_name(x) for x in (layers if layers is not None else ge.layers[-2:])]
    modules = dict(session.model.named_modules())
    missing = [x for x in layers if x not in modules]
    if missing:
        raise ValueError(f"layers {missing} are not modules of the model; TCAV needs module names such as "
                         f"{[n for n in session.layers[-2:]]}")
    if save_path is None:
        save_path = _default_save_path(ge)
    runner = TCAVRunner(session, save_path, seed=seed)

    # ---- the plan: tests per layer, random families per (layer, label) ----
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
                if len(keys) > int(max_examples):
                    pick = np.sort(_rng(seed, "concept", name, layer, lab).choice(len(keys), int(max_examples),
                                                                                  replace=False))
                    keys = [keys[p] for p in pick]
                tests.append(dict(name=name, layer=layer, label=lab, keys=keys,
                                  global_score=float(rows["score"].sum())))
                fam = families.setdefault((layer, lab), {"size": 0})
                if len(keys) >= int(min_examples):
                    fam["size"] = max(fam["size"], len(keys))
    for (layer, lab), fam in families.items():
        at = maps[maps["layer"] == layer]
        with_label = set(at.loc[at["label"] == lab, "image_id"])
        pool = at[(at["label"] != lab) & ~at["image_id"].isin(with_label)].sort_values(
            ["image_id", "target", "members"], kind="stable")
        pool_keys = _keys(pool)
        fam["pool"] = len(pool_keys)
        size = min(fam["size"], len(pool_keys))
        rng = _rng(seed, "random", layer, lab)
        fam["sets"] = [[pool_keys[p] for p in np.sort(rng.choice(len(pool_keys), size, replace=False))]
                       for _ in range(runs + 1)] if size >= int(min_examples) else None

    inputs_of = {}
    for name in names:
        ids = sorted(set(maps.loc[maps["class"] == name, "image_id"]))
        idx = sorted(session.index_of(i) for i in ids)
        if len(idx) > int(max_images):
            idx = sorted(_rng(seed, "images", name).choice(idx, int(max_images), replace=False).tolist())
        inputs_of[name] = idx

    # ---- running: a layer at a time, revealed examples computed only when some CAV is missing ----
    reveals: dict[MapKey, np.ndarray] = {}

    def fetch(keys):
        return lambda: [reveals[k] for k in keys]

    def concept_of(layer, keys):
        ident = f"reveal|{layer}|step{step}|" + ";".join(sorted(_key_text(k) for k in keys))
        return runner.concept(ident, fetch(keys))

    rows_out = []
    for t in tests:
        fam = families[(t["layer"], t["label"])]
        t["note"] = ""
        if len(t["keys"]) < int(min_examples):
            t["note"] = f"{len(t['keys'])} maps carry this label (min_examples={int(min_examples)})"
        elif fam["sets"] is None:
            t["note"] = (f"only {fam['pool']} maps with other labels from other images at this layer "
                         f"(min_examples={int(min_examples)})")
        if not t["note"]:
            t["concept"] = concept_of(t["layer"], t["keys"])
            t["randoms"] = [concept_of(t["layer"], s) for s in fam["sets"]]
    runnable = [t for t in tests if not t["note"]]
    # every image explained once for all layers, and only when some CAV of its maps is not saved yet
    needed = {k for t in runnable if not runner.has_cavs(t["layer"], t["concept"], t["randoms"])
              for k in t["keys"] + [k for s in families[(t["layer"], t["label"])]["sets"] for k in s]}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tests), desc=f"TCAV: revealing {len(needed)} maps" if needed else "TCAV", unit="label")
    try:
        _reveal(session, needed, step, reveals)
        if bar is not None:
            bar.set_description("TCAV")
        for layer in layers:
            class_inputs = {}
            by_label: dict = {}
            for t in tests:
                if t["layer"] == layer:
                    by_label.setdefault(t["label"], []).append(t)
            for lab, group in by_label.items():
                for t in group:
                    row = _row(t, ge, runs, len(inputs_of[t["name"]]))
                    if not t["note"]:
                        if t["name"] not in class_inputs:
                            class_inputs[t["name"]] = torch.stack([session.input(i) for i in inputs_of[t["name"]]])
                        res = runner.test(layer, class_inputs[t["name"]], ge.classes.index(t["name"]),
                                          t["concept"], t["randoms"])
                        row.update(n_random=len(families[(layer, lab)]["sets"][0]),
                                   tcav_score=float(np.mean(res["concept"])), tcav_std=float(np.std(res["concept"])),
                                   random_score=float(np.mean(res["random"])), random_std=float(np.std(res["random"])),
                                   p_value=res["p_value"], significant=bool(res["p_value"] < float(alpha)),
                                   cav_accuracy=res["cav_accuracy"])
                    rows_out.append(row)
                    if bar is not None:
                        bar.update(1)
                runner.forget_activations([c for t in group if not t["note"] for c in [t["concept"], *t["randoms"]]])
    finally:
        reveals.clear()
        if bar is not None:
            bar.close()
    out = pd.DataFrame(rows_out, columns=RESULT_COLUMNS)
    out = out.astype({"target": "int64", "n_examples": "int64", "n_random": "int64", "n_images": "int64",
                      "runs": "int64", "significant": "bool"})
    out.attrs.update(alpha=float(alpha), step=step, save_path=str(save_path), seed=int(seed))
    if attach:
        ge.attach_tcav(out)
    return out


def _row(t: dict, ge, runs: int, n_images: int) -> dict:
    return {"class": t["name"], "target": ge.classes.index(t["name"]), "layer": t["layer"], "label": t["label"],
            "global_score": t["global_score"], "n_examples": len(t["keys"]), "n_random": 0, "n_images": n_images,
            "runs": runs, "tcav_score": np.nan, "tcav_std": np.nan, "random_score": np.nan, "random_std": np.nan,
            "p_value": np.nan, "significant": False, "cav_accuracy": np.nan, "note": t["note"]}


def _reveal(session, keys, step: int, out: dict) -> None:
    """Deep Reveal images (uint8) of ``keys`` at ``step``, each image explained once."""
    from .examples import located

    if not keys:
        return
    ordered = sorted(keys, key=lambda k: (k.target, k.image_id, k.layer, k.members))
    for key, _, cl, j in located(session, ordered):
        if cl is None:
            raise KeyError(f"cluster map {key.members_text!r} at {key.layer!r} is no cluster of its layer's "
                           "dendrogram (a merged map?); TCAV needs maps as the game showed them: aggregate "
                           "without merge=True")
        out[key] = cl.reveal(j, step)
