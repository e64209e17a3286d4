"""A labelling session played by simulated people (inv_widgets.eval.simulate) into a real label store.

    weights = play(session, store, range(100))      # the session's dataset must be the demo's PartsDataset

Every cluster map of the default cut of each image (explained for its true class) is played by each player;
the answers go through ``LabelStore.record_answer`` as the game would record them. Used by
``python -m inv_widgets.eval global``, notebooks/04_global.ipynb and benchmarks/bench_global.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["play", "simulated_players"]


def simulated_players(players: int = 8, noise: float = 0.2, seed: int = 0) -> list:
    """``players`` simulated labellers named sim-0, sim-1, ... with seeds seed, seed + 1, ..."""
    from ..demo import CLASS_PART_VOCABULARY, CLASS_PARTS
    from .simulate import SimulatedPlayer

    if int(players) < 1:
        raise ValueError(f"players must be at least 1, got {players}")
    return [
        SimulatedPlayer(f"sim-{p}", CLASS_PARTS, CLASS_PART_VOCABULARY, noise=noise, seed=seed + p)
        for p in range(int(players))
    ]


def play(
    session,
    store,
    indices: Iterable[int],
    *,
    players: int = 8,
    noise: float = 0.2,
    seed: int = 0,
    layers: Sequence[str] | None = None,
    truth: dict | None = None,
    progress: bool = True,
) -> dict:
    """Play the default cut of every layer (or of ``layers``) of the images ``indices``, as the game plays it: the
    maps with a positive weight (:meth:`inv_widgets.labels.Pool.from_source`), each answer stored with its map's
    weight; returns
    ``{MapKey: percent weight}`` of the maps played (what ``GlobalExplanation.from_labels(weights=...)`` takes).
    ``truth``, when given, receives ``{MapKey: the part that holds most of the map's mass}`` (``simulate.truth_part``:
    read over all pixels at full resolution, independently of what the players were shown).

    The session's dataset must know the parts under every pixel (``part_masks(i)``, as the demo's
    ``PartsDataset``): that is what a simulated player looks at.
    """
    from ..engine.maps import reveal_mask
    from .simulate import truth_part

    data = session.dataset
    if data is None or not hasattr(data, "part_masks"):
        raise TypeError(
            "simulated players need the parts under every pixel: build the session over the demo's "
            "PartsDataset (inv.Session(*inv.demo.load(n)))"
        )
    sims = simulated_players(players, noise, seed)
    indices = [int(i) for i in indices]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(indices), desc="simulated players", unit="image")
    weights = {}
    try:
        for i in indices:
            y = int(data[i][1])
            true_name = session.classes[y]
            masks = data.part_masks(i)
            exp = session.explain(i, target=y, lazy=True)
            for name in layers or exp.layers:
                cl = exp[name].cut()
                for j in range(cl.k):
                    if not cl.weights[j] > 0:  # evidence against the class: the game does not play it
                        continue
                    key = cl.key(j)
                    weights[key] = float(cl.weights[j])
                    if truth is not None:
                        truth[key] = truth_part(cl.maps[j], masks)
                    steps = [reveal_mask(cl.maps_lowres[j], exp.input_size, s) for s in range(6)]
                    for sim in sims:
                        ans = sim.play(steps, masks, true_name)
                        store.record_answer(
                            sim.name, key, ans.guess, true_name, ans.outcome, ans.step, ans.labels, weight=weights[key]
                        )
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return weights
