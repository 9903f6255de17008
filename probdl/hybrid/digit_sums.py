"""The digit-sum task: two digit images and their observed sum, built on public names only.

    from probdl.bnn import BayesianCNN, train
    from probdl.data import load_digits, split
    from probdl.hybrid import HybridModel, digit_sum_accuracy, digit_sum_network
    tr, va, te = split(load_digits(), val=0.15, test=0.2, seed=0)
    cnn = BayesianCNN(in_channels=1, num_classes=10, image_size=(8, 8))
    train(cnn, tr, va, epochs=3)
    hm = HybridModel(digit_sum_network(), {"D1": cnn, "D2": cnn}, class_prior=tr)
    digit_sum_accuracy(hm, te)     # {"pairs", "cnn_accuracy", "hybrid_accuracy"}

The network is D1, D2 -> S with S = D1 + D2 (a deterministic CPT). Observing S couples the two
digits: a digit the classifier is unsure of is pulled toward the states its partner and the sum
allow, so the network corrects the classifier where the sum rules its answer out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from probdl.errors import ModelError
from probdl.graph import BayesNet
from probdl.hybrid.bridge import HybridModel, normalized
from probdl.hybrid.sums import pair_indices

__all__ = ["digit_sum_accuracy", "digit_sum_network", "digit_sum_pairs"]


def digit_sum_network(num_digits: int = 10, digit_prior: Any = None) -> BayesNet:
    """The network D1, D2 -> S = D1 + D2, built through pgmpy and ``BayesNet.from_pgmpy``.

    D1 and D2 have states ``"0" .. str(num_digits - 1)`` with prior ``digit_prior`` (uniform by
    default); S has states ``"0" .. str(2 * num_digits - 2)`` and a deterministic CPT.
    """
    from pgmpy.factors.discrete import TabularCPD
    from pgmpy.models import DiscreteBayesianNetwork

    if num_digits < 2:
        raise ModelError(f"digit_sum_network needs num_digits >= 2, got {num_digits}.")
    k = num_digits
    prior = np.full(k, 1.0 / k)
    if digit_prior is not None:
        prior = normalized(digit_prior, k, "digit_prior", per="digit",
                           zero="give every digit a positive weight")
    table = np.zeros((2 * k - 1, k, k))
    d1, d2 = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    table[d1 + d2, d1, d2] = 1.0
    digits = list(range(k))
    model = DiscreteBayesianNetwork([("D1", "S"), ("D2", "S")])
    model.add_cpds(
        TabularCPD("D1", k, prior[:, None], state_names={"D1": digits}),
        TabularCPD("D2", k, prior[:, None], state_names={"D2": digits}),
        TabularCPD("S", 2 * k - 1, table.reshape(2 * k - 1, k * k), evidence=["D1", "D2"],
                   evidence_card=[k, k],
                   state_names={"S": list(range(2 * k - 1)), "D1": digits, "D2": digits}),
    )
    return BayesNet.from_pgmpy(model)


def digit_sum_pairs(hybrid: HybridModel, test: Any, seed: int = 0, per_sample: bool = False,
                    num_samples: int = 32) -> dict[str, np.ndarray]:
    """Pair every image of ``test`` twice, observe each pair's true sum, read both digits.

    Pairs are cyclic (see :func:`pair_indices`): image ``first[i]`` is D1 and ``second[i]`` is
    D2 of pair i, and every image is D1 once and D2 once. Returns numpy arrays: ``first``,
    ``second`` (P,) image indices, ``sums`` (P,), ``cnn`` and ``hybrid`` (P, 2) predicted digits
    of (D1, D2) from the classifier alone and after the network, ``truth`` (P, 2), and
    ``D1``, ``D2``, ``S`` (P, k) posteriors given both images and the sum.
    """
    labels = np.asarray(torch.as_tensor(test.labels).cpu())
    i1, i2 = pair_indices(len(labels), seed=seed, cyclic=True)
    images = torch.as_tensor(test.images)
    # Predict every test image once (per draw) and index the pairs out of it.
    draws = hybrid.likelihoods({"D1": images, "D2": images}, per_sample=True,
                               num_samples=num_samples)
    soft = {"D1": draws["D1"][:, i1], "D2": draws["D2"][:, i2]}
    if not per_sample:
        soft = {n: v.mean(0) for n, v in soft.items()}
    sums = labels[i1] + labels[i2]
    post = hybrid.posteriors(["D1", "D2", "S"], soft, {"S": sums}, per_sample)
    # argmax of p(y|x)/pi(y) is not the classifier's own label: multiply the prior back.
    alone = {n: v.mean(0) * hybrid.class_priors_[n] for n, v in draws.items()}
    return {
        "first": i1, "second": i2, "sums": sums,
        "truth": np.stack([labels[i1], labels[i2]], 1),
        "cnn": np.stack([alone["D1"][i1].argmax(1), alone["D2"][i2].argmax(1)], 1),
        "hybrid": np.stack([post["D1"].argmax(1), post["D2"].argmax(1)], 1),
        **post,
    }


def digit_sum_accuracy(hybrid: HybridModel, test: Any, seed: int = 0, per_sample: bool = False,
                       num_samples: int = 32) -> dict[str, float]:
    """Digit accuracy on ``test`` from the classifier alone vs after the digit-sum network.

    Every test image is paired twice (see :func:`digit_sum_pairs`), the pair's true sum is
    observed as S, and both numbers are averaged over all 2 x len(test) digit slots, so every
    image of the split counts equally.
    """
    out = digit_sum_pairs(hybrid, test, seed, per_sample, num_samples)
    return {"pairs": float(len(out["sums"])),
            "cnn_accuracy": float((out["cnn"] == out["truth"]).mean()),
            "hybrid_accuracy": float((out["hybrid"] == out["truth"]).mean())}
