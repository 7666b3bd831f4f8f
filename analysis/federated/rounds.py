"""The mixed logistic models fitted over the sites, all in lockstep: in each round the centre
sends every unfinished model's parameters to every site in one task, and each site answers
for the models it holds. The number of rounds is that of the slowest model, not the sum."""

from __future__ import annotations

import numpy as np

from analysis.models.distributed import fit_rounds

__all__ = ["LogisticPlan", "run_rounds"]


class LogisticPlan:
    """One model as the sites described it in the first round: its trials and participants
    (after disclosure control), the trials whose outcome varies, and the number of common
    slopes."""

    def __init__(self, key: str, descriptions: list, random_effect: bool, n_nodes: int):
        self.key = key
        self.trials = sorted({t for d in descriptions for t in d["trials"]})
        self.informative = sorted({t for d in descriptions for t in d["informative"]})
        self.n = int(sum(d["n"] for d in descriptions))
        self.n_common = int(descriptions[0]["n_common"])
        self.varies = {t: v for d in descriptions for t, v in (d.get("varies") or {}).items()}
        self.random_effect = random_effect
        self.n_nodes = n_nodes

    def generator(self):
        set_aside = sorted(set(self.trials) - set(self.informative))
        return fit_rounds(self.n_common, len(self.informative), len(self.trials), self.n, self.random_effect,
                          self.n_nodes, set_aside)


def run_rounds(plans: list, ask, max_rounds: int = 500) -> tuple[dict, int]:
    """Drive every plan's fit to its end. ``ask(requests)`` sends {key: {"phi", "adaptive"}}
    to the sites and returns their answers (a list of {key: {"loglik", "grad", "hess",
    "separated"}}). Returns ({key: LogisticFit}, rounds)."""
    running, fits = {}, {}
    for plan in plans:
        gen = plan.generator()
        running[plan.key] = (gen, next(gen))
    rounds = 0
    while running:
        if rounds >= max_rounds:
            raise RuntimeError(f"the mixed logistic fits did not finish in {max_rounds} rounds: "
                               + ", ".join(sorted(running)))
        rounds += 1
        requests = {key: {"phi": [float(v) for v in req.phi], "adaptive": bool(req.adaptive)}
                    for key, (_, req) in running.items()}
        answers = ask(requests)
        for key in list(running):
            gen, _ = running[key]
            parts = [a[key] for a in answers if key in a]
            total = (float(sum(p["loglik"] for p in parts)), np.sum([p["grad"] for p in parts], axis=0),
                     np.sum([p["hess"] for p in parts], axis=0), sorted(t for p in parts for t in p["separated"]))
            try:
                running[key] = (gen, gen.send(total))
            except StopIteration as done:
                fits[key] = done.value
                del running[key]
    return fits, rounds
