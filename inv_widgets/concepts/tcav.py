"""TCAV (Kim et al. 2018) with captum: are the labels of a global explanation concepts the network uses?

For each (class, layer, label) of a :class:`GlobalExplanation`:

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

import hashlib
import math
import os
import shutil
import tempfile
import warnings
import weakref
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from ..engine import MapKey
from ..engine.runtime import eval_mode, limited_threads
from ..inputs import to_model_input
from .extras import require_concepts

__all__ = ["concept_test", "TCAVRunner", "RESULT_COLUMNS", "random_sets", "ttest_p"]

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
    """A captum ``Classifier``: a linear soft-margin SVM (the hinge loss of TCAV's SGD classifier), solved exactly
    in its dual by libsvm on the Gram matrix of the examples. Concepts have tens of examples and a layer tens of
    thousands of features, so one n x n product replaces liblinear's passes over the features (7x faster here,
    the same kind of hyperplane). The activations are divided by their root mean squared norm, so that ``C`` means the same at
    every layer (a direction does not change with the scale). A stratified, seeded ``test_split`` is held out for
    the accuracy kept in the CAV's stats; the CAV is the SVM of the rest."""
    from captum.concept._utils.classifier import Classifier
    from sklearn.model_selection import train_test_split
    from sklearn.svm import SVC

    class LinearSVMClassifier(Classifier):
        def __init__(self):
            self.w = None
            self.labels = None

        def train_and_eval(self, dataloader, **kwargs):
            xs, ys = zip(*[(x, y) for x, y in dataloader])
            x = torch.cat(xs).detach().float().cpu().numpy()
            y = torch.cat(ys).cpu().numpy()
            labels, counts = np.unique(y, return_counts=True)
            if len(labels) != 2:
                raise ValueError(f"a CAV separates two concepts; got examples of {len(labels)}")
            train, test = np.arange(len(y)), None
            if test_split > 0 and counts.min() >= 3:
                train, test = train_test_split(train, test_size=test_split, stratify=y, random_state=seed)
            xt = x[train]
            gram = (xt @ xt.T).astype(np.float64)
            scale2 = float(np.mean(np.diag(gram))) or 1.0  # (mean squared norm): features / its root
            svm = SVC(kernel="precomputed", C=C, class_weight="balanced")
            svm.fit(gram / scale2, y[train])
            self.labels = [int(c) for c in svm.classes_]  # plain ints: captum's CAV.load reads them back safely
            # the hyperplane's normal in the scaled features, towards classes_[1]
            self.w = (svm.dual_coef_[0] @ xt[svm.support_]) / np.sqrt(scale2)
            acc = float("nan")
            if test is not None:
                side = (x[test] @ self.w) / np.sqrt(scale2) + float(svm.intercept_[0]) > 0
                acc = float((np.where(side, self.labels[1], self.labels[0]) == y[test]).mean())
            return {"accs": acc}

        def weights(self):
            w = torch.as_tensor(self.w, dtype=torch.float32)
            return torch.stack([-w, w])

        def classes(self):
            return self.labels

    return LinearSVMClassifier()


def _tcav_class():
    """``captum.concept.TCAV`` with three changes, none to what is computed:

    - captum 0.9's ``load_cavs`` asks ``AV.exists(path, model_id, layer, identifier)`` with layer and identifier
      swapped, never finds saved activations, and so recomputes a concept's activations for every experimental
      set it is in; here the arguments are in their order (otherwise captum's own method);
    - ``generate_activation`` gets each example's activation from the runner, which computes it once (captum's
      ``LayerActivation``, batched) however many concepts share the example, and saves the concept's stack with
      captum's ``AV.save`` where captum would;
    - ``interpret`` stacks the CAVs of the experimental sets as one tensor, where captum 0.9 turns each CAV into
      a Python list and the lists back into a tensor (most of a call's time once the CAVs are trained); the
      gradients (captum's layer attribution method) and the scores (captum's ``_tcav_sub_computation``) are
      captum's own, and so the results, to the bit (``tests/test_tcav.py`` compares them with captum's method).
    """
    from collections import defaultdict

    from captum._utils.av import AV
    from captum._utils.common import _format_tensor_into_tuples, _get_module_from_name
    from captum.concept import TCAV
    from captum.concept._core.cav import CAV
    from captum.concept._utils.common import concepts_to_str

    class InvTCAV(TCAV):
        runner: "TCAVRunner"

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

        def generate_activation(self, layers, concept):
            for layer in [layers] if isinstance(layers, str) else layers:
                acts = self.runner.activations(layer, concept._inv_examples, concept._inv_load)
                AV.save(self.save_path, self.model_id, concept.identifier, layer, acts, "0")

        def interpret(self, inputs, experimental_sets, target=None, additional_forward_args=None, processes=None,
                      **kwargs):
            assert "attribute_to_layer_input" not in kwargs, "set attribute_to_layer_input on the TCAV object"
            self.compute_cavs(experimental_sets, processes=processes)
            scores = defaultdict(lambda: defaultdict())
            by_size: dict = {}  # captum scores sets of the same number of concepts together
            for concepts in experimental_sets:
                by_size.setdefault(len(concepts), []).append(concepts)
            for layer in self.layers:
                self.layer_attr_method.layer = _get_module_from_name(self.model, layer)
                attribs = self.layer_attr_method.attribute.__wrapped__(
                    self.layer_attr_method, inputs, target=target, additional_forward_args=additional_forward_args,
                    attribute_to_layer_input=self.attribute_to_layer_input, **kwargs)
                attribs = _format_tensor_into_tuples(attribs)
                attribs = torch.cat([torch.reshape(a, (a.shape[0], -1)) for a in attribs], dim=1)
                for sets in by_size.values():
                    stats = [self.cavs[concepts_to_str(c)][layer].stats for c in sets]
                    cavs = torch.stack([st["weights"].float().detach() for st in stats]).to(attribs.device)
                    self._tcav_sub_computation(scores, layer, attribs, cavs, [st["classes"] for st in stats], sets)
            return scores

    return InvTCAV


def _sets(concept, randoms) -> list:
    """The experimental sets of one test: [concept, R_k] and the random baseline [R_k, R_k-1], k = 1..runs.

    The baseline pairs neighbouring random sets rather than one R_0 with every R_k (captum's tutorial): with a
    single R_0, every baseline CAV leans the way R_0 differs from the pool, and the baseline scores with it.
    """
    return [[concept, r] for r in randoms[1:]] + [[randoms[k], randoms[k - 1]] for k in range(1, len(randoms))]


class TCAVRunner:
    """captum TCAV on one session: concepts are lists of examples (images), CAVs are saved under ``save_path``.

    ``runner.concept(examples, load)`` makes a ``captum.concept.Concept`` whose id is a hash of its examples (so a
    saved CAV is found again only for the same examples, seed and classifier); ``load(examples)`` gives their
    images (uint8 arrays), asked only when an activation is missing. Each example's layer activation is computed
    once, however many concepts share it. ``runner.test(layer, inputs, target, concept, randoms)`` runs the
    experimental sets [concept, R_k] and [R_k, R_k-1] and returns the scores. Used by :func:`concept_test` and by
    the ground-truth concepts of ``python -m inv_widgets.eval global``.
    """

    def __init__(self, session, save_path, *, seed: int = 0, C: float = 1.0, test_split: float = 1 / 3,
                 batch_size: int = 64):
        require_concepts("TCAV")  # fail early, naming the extra, when captum is missing

        self.session = session
        self.save_path = str(save_path)
        self.seed, self.C, self.test_split = int(seed), float(C), float(test_split)
        self.batch_size = int(batch_size)
        self.model_id = f"{session.fingerprint}-svm-C{self.C:g}-split{self.test_split:.3f}-seed{self.seed}"
        self._concepts: dict = {}
        self._tcav: dict = {}
        self._acts: dict = {}
        self._n_features: dict = {}
        os.makedirs(self.save_path, exist_ok=True)

    def concept(self, examples: Sequence, load: Callable[[list], list], *, tag: str = ""):
        """The concept of ``examples`` (hashable ids with a stable ``repr``, e.g. MapKeys), one instance per set."""
        from captum.concept import Concept

        examples = list(examples)
        if not examples:
            raise ValueError("a concept needs at least one example")
        identity = tag + "\n" + "\n".join(sorted(map(repr, examples)))
        cid = int(hashlib.sha1(identity.encode()).hexdigest()[:15], 16)
        hit = self._concepts.get(cid)
        if hit is not None:
            return hit
        c = Concept(cid, "inv", None)
        c._inv_examples, c._inv_load = examples, load
        self._concepts[cid] = c
        return c

    def activations(self, layer: str, examples: list, load: Callable[[list], list]) -> torch.Tensor:
        """(n, features) activations of ``layer`` for the examples, flattened as captum does; cached per example."""
        self.prefetch(layer, examples, load)
        return torch.stack([self._acts[(layer, e)] for e in examples])

    def prefetch(self, layer: str, examples: list, load: Callable[[list], list]) -> None:
        """Compute (in full batches) the activations of the examples not cached yet."""
        from captum.attr import LayerActivation

        missing = list(dict.fromkeys(e for e in examples if (layer, e) not in self._acts))
        if missing:
            model = self.session.model
            module = dict(model.named_modules())[layer]
            for s in range(0, len(missing), self.batch_size):
                chunk = missing[s:s + self.batch_size]
                with limited_threads(1):  # many tiny tensor ops: extra threads only wait on each other
                    x = torch.stack([to_model_input(a, self.session.transform) for a in load(chunk)])
                with eval_mode(model), torch.no_grad():
                    a = LayerActivation(model, module).attribute(x.to(self.session.device))
                for e, v in zip(chunk, a.reshape(len(chunk), -1).float().cpu()):
                    self._acts[(layer, e)] = v.clone()

    def _for_layer(self, layer: str):
        t = self._tcav.get(layer)
        if t is None:
            t = _tcav_class()(self.session.model, [layer], model_id=self.model_id,
                              classifier=_classifier(self.seed, self.C, self.test_split), save_path=self.save_path)
            t.runner = self
            self._tcav[layer] = t
        return t

    def has_cavs(self, layer: str, concept, randoms) -> bool:
        """Whether every CAV of the test is saved already (then no example is computed)."""
        from captum.concept._core.cav import CAV

        sets = _sets(concept, randoms)
        return all(os.path.exists(CAV.assemble_save_path(self.save_path, self.model_id, s, layer)) for s in sets)

    def test(self, layer: str, inputs: torch.Tensor, target: int, concept, randoms) -> dict:
        """TCAV scores of [concept, R_k] and [R_k, R_k-1] for k = 1..len(randoms) - 1 on ``inputs`` (the class's
        images) for the logit of ``target``; ``p_value`` of the two-sided t-test between them."""
        return self.test_many(layer, inputs, target, [(concept, randoms)])[0]

    def test_many(self, layer: str, inputs: torch.Tensor, target: int, tests) -> list[dict]:
        """:meth:`test` of several (concept, randoms) on the same images and target: one ``interpret`` call (the
        images' gradients are computed once) per group of tests whose stacked CAVs stay under about 16 million
        numbers (64 MB)."""
        per_test = [2 * (len(randoms) - 1) for _, randoms in tests]
        budget = max(1, int(16e6 // (2 * self._features(layer, inputs))))
        out, group = [], []
        for (concept, randoms), n in zip(tests, per_test):
            if len(randoms) < 3:
                raise ValueError("TCAV needs at least 2 random runs (3 random sets: R_0 and R_1..R_runs)")
            if group and sum(per_test[len(out) + i] for i in range(len(group))) + n > budget:
                out += self._interpret(layer, inputs, target, group)
                group = []
            group.append((concept, randoms))
        return out + (self._interpret(layer, inputs, target, group) if group else [])

    def _features(self, layer: str, inputs: torch.Tensor) -> int:
        if layer not in self._n_features:
            from captum.attr import LayerActivation

            model = self.session.model
            with eval_mode(model), torch.no_grad():
                a = LayerActivation(model, dict(model.named_modules())[layer]).attribute(
                    inputs[:1].to(self.session.device))
            self._n_features[layer] = int(a[0].numel())
        return self._n_features[layer]

    def _interpret(self, layer: str, inputs: torch.Tensor, target: int, tests) -> list[dict]:
        from captum.concept._utils.common import concepts_to_str

        tcav = self._for_layer(layer)
        sets = [s for concept, randoms in tests for s in _sets(concept, randoms)]
        model = self.session.model
        with eval_mode(model), torch.enable_grad(), warnings.catch_warnings():
            # captum's CAV.load names numpy.core (deprecated in numpy 2): not ours to fix, and harmless
            warnings.filterwarnings("ignore", message="numpy.core is deprecated", category=DeprecationWarning)
            scores = tcav.interpret(inputs.to(self.session.device), sets, target=int(target))
        # the CAVs are saved: the activations captum stored to train them are not needed any more (a later set
        # with one of these concepts gets them again from the in-memory cache)
        self.forget_activations({id(c): c for st in sets for c in st}.values())
        out = []
        for concept, randoms in tests:
            mine = _sets(concept, randoms)
            runs = len(randoms) - 1
            sign = [float(scores[concepts_to_str(s)][layer]["sign_count"][0]) for s in mine]
            accs = [tcav.cavs[concepts_to_str(s)][layer].stats.get("accs") for s in mine[:runs]]
            accs = np.array([np.nan if a is None else float(a) for a in accs])
            out.append({"concept": sign[:runs], "random": sign[runs:], "p_value": ttest_p(sign[:runs], sign[runs:]),
                        "cav_accuracy": float(np.nanmean(accs)) if np.isfinite(accs).any() else float("nan")})
        return out

    def forget_activations(self, concepts=(), layer: str | None = None) -> None:
        """Delete the activations captum stored for these concepts (their CAVs stay), and the cached activations
        of ``layer``'s examples."""
        root = os.path.join(self.save_path, "av", self.model_id)
        for c in concepts:
            shutil.rmtree(os.path.join(root, c.identifier), ignore_errors=True)
        if layer is not None:
            for k in [k for k in self._acts if k[0] == layer]:
                del self._acts[k]


# ---- the public function ---------------------------------------------------------------------------------
def _rng(seed: int, *parts) -> np.random.Generator:
    h = hashlib.sha1("\x1f".join(map(str, (seed,) + parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


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
                 labels: Sequence[str] | None = None, random: str = "other_labels", step: int = 3,
                 alpha: float = 0.05, min_examples: int = 5,
                 max_examples: int = 50, max_images: int = 50, save_path=None, seed: int = 0, threads: int = 1,
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
    random : {"other_labels", "same_class"}
        Where the random examples come from: revealed maps of other labels from images without this label, any
        class (default; the concept is then tested against the rest of the world, so the class itself counts
        for much of it), or the same class's maps at the layer with another label (the concept against the
        other things the layer sees in the class: a sharper test, see ``python -m inv_widgets.eval global``).
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
    threads : int
        torch and BLAS threads while testing (default 1: TCAV is mostly many small steps, and on a shared 2-core
        CPU one thread ran them several times faster than two; give more for a large model on an idle many-core
        CPU).
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
    if random not in ("other_labels", "same_class"):
        raise ValueError(f"random must be 'other_labels' or 'same_class', got {random!r}")
    tests, families = _plan(ge, names, layers, n_labels, labels, int(min_examples), int(max_examples), runs, seed,
                            random)
    inputs_of = {}
    for name in names:
        idx = sorted(session.index_of(i) for i in set(ge.maps.loc[ge.maps["class"] == name, "image_id"]))
        if len(idx) > int(max_images):
            idx = sorted(_rng(seed, "images", name).choice(idx, int(max_images), replace=False).tolist())
        inputs_of[name] = idx

    reveals: dict[MapKey, np.ndarray] = {}

    def load(keys):
        return [reveals[k] for k in keys]

    for t in tests:
        fam = families[t["family"]]
        if len(t["keys"]) < int(min_examples):
            t["note"] = f"{len(t['keys'])} maps carry this label (min_examples={int(min_examples)})"
        elif fam["sets"] is None:
            where = "of this class" if random == "same_class" else "from other images"
            t["note"] = (f"only {fam['pool']} maps with other labels {where} at this layer: too few for {runs + 1} "
                         f"different random sets (min_examples={int(min_examples)})")
        else:
            t["note"] = ""
            t["concept"] = runner.concept(t["keys"], load, tag=f"reveal|{t['layer']}|step{step}")
            t["randoms"] = [runner.concept(r, load, tag=f"reveal|{t['layer']}|step{step}") for r in fam["sets"]]
    # the maps whose Deep Reveal images are needed: those of tests with a CAV not saved yet
    needed = {k for t in tests if not t["note"] and not runner.has_cavs(t["layer"], t["concept"], t["randoms"])
              for k in t["keys"] + [k for r in families[t["family"]]["sets"] for k in r]}

    rows = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tests), desc=f"TCAV: revealing {len(needed)} maps" if needed else "TCAV", unit="label")
    try:
        from threadpoolctl import threadpool_limits  # the BLAS under numpy (the SVM's Gram matrices)

        with limited_threads(threads), threadpool_limits(int(threads)):
            _reveal(session, needed, step, reveals)  # each image explained once, for every layer
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
                        results = runner.test_many(layer, inputs, ge.classes.index(name),
                                                   [(t["concept"], t["randoms"]) for t in run])
                    found = dict(zip(map(id, run), results))
                    for t in mine:
                        row = _row(t, ge, runs, len(inputs_of[name]))
                        res = found.get(id(t))
                        if res is not None:
                            row.update(n_random=len(t["randoms"][0]._inv_examples),
                                       tcav_score=float(np.mean(res["concept"])), tcav_std=float(np.std(res["concept"])),
                                       random_score=float(np.mean(res["random"])), random_std=float(np.std(res["random"])),
                                       p_value=res["p_value"], significant=bool(res["p_value"] < float(alpha)),
                                       cav_accuracy=res["cav_accuracy"])
                        rows.append(row)
                        if bar is not None:
                            bar.update(1)
                runner.forget_activations(layer=layer)
    finally:
        reveals.clear()
        if bar is not None:
            bar.close()
    out = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    out = out.astype({"target": "int64", "n_examples": "int64", "n_random": "int64", "n_images": "int64",
                      "runs": "int64", "significant": "bool"})
    out.attrs.update(alpha=float(alpha), step=step, random=random, save_path=str(save_path), seed=int(seed))
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
                    pick = np.sort(_rng(seed, "concept", name, layer, lab).choice(len(keys), max_examples,
                                                                                  replace=False))
                    keys = [keys[p] for p in pick]
                family = (layer, lab, name if random == "same_class" else None)
                tests.append(dict(name=name, layer=layer, label=lab, keys=keys, family=family,
                                  global_score=float(rows["score"].sum())))
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
        picks = random_sets(len(pool), size, runs + 1, _rng(seed, "random", random, layer, lab, name)) \
            if size >= min_examples else None
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
    return {"class": t["name"], "target": ge.classes.index(t["name"]), "layer": t["layer"], "label": t["label"],
            "global_score": t["global_score"], "n_examples": len(t["keys"]), "n_random": 0, "n_images": n_images,
            "runs": runs, "tcav_score": np.nan, "tcav_std": np.nan, "random_score": np.nan, "random_std": np.nan,
            "p_value": np.nan, "significant": False, "cav_accuracy": np.nan, "note": t["note"]}


def _order(k: MapKey):
    return k.target, k.image_id, k.layer, k.members


def _reveal(session, keys, step: int, out: dict) -> None:
    """Deep Reveal images (uint8) of ``keys`` at ``step``, each image explained once."""
    from .examples import located

    if not keys:
        return
    ordered = sorted(keys, key=_order)
    for key, _, cl, j in located(session, ordered):
        if cl is None:
            raise KeyError(f"cluster map {key.members_text!r} at {key.layer!r} is no cluster of its layer's "
                           "dendrogram (a merged map?); TCAV needs maps as the game showed them: aggregate "
                           "without merge=True")
        out[key] = cl.reveal(j, step)
