"""captum's TCAV for inv-widgets: the linear-SVM classifier of the CAVs, ``captum.concept.TCAV`` with its fixes, and
:class:`TCAVRunner`, which tests concepts made of example images on one session (used by
:func:`~inv_widgets.concepts.concept_test` and by ``python -m inv_widgets.eval global``). The method is described in
:mod:`inv_widgets.concepts.tcav`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..engine.runtime import eval_mode, limited_threads
from ..inputs import to_model_input
from .examples import model_runner
from .extras import require_concepts

__all__ = ["TCAVRunner", "ttest_p"]


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
    the same kind of hyperplane). The activations are divided by their root mean squared norm, so that ``C``
    means the same at every layer (a direction does not change with the scale). A stratified, seeded
    ``test_split`` is held out for the accuracy kept in the CAV's stats; the CAV is the SVM of the rest."""
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
        runner: TCAVRunner

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

        def interpret(
            self, inputs, experimental_sets, target=None, additional_forward_args=None, processes=None, **kwargs
        ):
            assert "attribute_to_layer_input" not in kwargs, "set attribute_to_layer_input on the TCAV object"
            self.compute_cavs(experimental_sets, processes=processes)
            scores = defaultdict(lambda: defaultdict())
            by_size: dict = {}  # captum scores sets of the same number of concepts together
            for concepts in experimental_sets:
                by_size.setdefault(len(concepts), []).append(concepts)
            for layer in self.layers:
                self.layer_attr_method.layer = _get_module_from_name(self.model, layer)
                attribs = self.layer_attr_method.attribute.__wrapped__(
                    self.layer_attr_method,
                    inputs,
                    target=target,
                    additional_forward_args=additional_forward_args,
                    attribute_to_layer_input=self.attribute_to_layer_input,
                    **kwargs,
                )
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

    def __init__(
        self, session, save_path, *, seed: int = 0, C: float = 1.0, test_split: float = 1 / 3, batch_size: int = 64
    ):
        require_concepts("TCAV")  # fail early, naming the extra, when captum is missing

        self.session = session
        #: how the model is called (``Session(output=...)`` holds for captum too): captum gets ``module()``, the
        #: logits, whose layers have the model's names; the model's mode is set and restored around each pass
        self.model_runner = model_runner(session, "TCAV")
        self.model = self.model_runner.module()
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
            module = dict(self.model.named_modules())[layer]
            for s in range(0, len(missing), self.batch_size):
                chunk = missing[s : s + self.batch_size]
                with limited_threads(1):  # many tiny tensor ops: extra threads only wait on each other
                    x = torch.stack([to_model_input(a, self.session.transform) for a in load(chunk)])
                with self.model_runner.lock, eval_mode(self.model_runner.model), torch.no_grad():
                    a = LayerActivation(self.model, module).attribute(x.to(self.model_runner.device))
                for e, v in zip(chunk, a.reshape(len(chunk), -1).float().cpu()):
                    self._acts[(layer, e)] = v.clone()

    def _for_layer(self, layer: str):
        t = self._tcav.get(layer)
        if t is None:
            t = _tcav_class()(
                self.model,
                [layer],
                model_id=self.model_id,
                classifier=_classifier(self.seed, self.C, self.test_split),
                save_path=self.save_path,
            )
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

            with self.model_runner.lock, eval_mode(self.model_runner.model), torch.no_grad():
                a = LayerActivation(self.model, dict(self.model.named_modules())[layer]).attribute(
                    inputs[:1].to(self.model_runner.device)
                )
            self._n_features[layer] = int(a[0].numel())
        return self._n_features[layer]

    def _interpret(self, layer: str, inputs: torch.Tensor, target: int, tests) -> list[dict]:
        from captum.concept._utils.common import concepts_to_str

        tcav = self._for_layer(layer)
        sets = [s for concept, randoms in tests for s in _sets(concept, randoms)]
        with self.model_runner.lock, eval_mode(self.model_runner.model), torch.enable_grad(), warnings.catch_warnings():
            # captum's CAV.load names numpy.core (deprecated in numpy 2): not ours to fix, and harmless
            warnings.filterwarnings("ignore", message="numpy.core is deprecated", category=DeprecationWarning)
            scores = tcav.interpret(inputs.to(self.model_runner.device), sets, target=int(target))
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
            out.append(
                {
                    "concept": sign[:runs],
                    "random": sign[runs:],
                    "p_value": ttest_p(sign[:runs], sign[runs:]),
                    "cav_accuracy": float(np.nanmean(accs)) if np.isfinite(accs).any() else float("nan"),
                }
            )
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
