"""train records the training label frequencies; save/load keeps them; the bridge uses them."""

from __future__ import annotations

import numpy as np

from probdl.bnn import BayesianCNN, train
from tests.bnn.conftest import TINY


def test_train_stores_the_label_frequencies_and_save_load_keeps_them(small_digits, tmp_path):
    tr, va, _ = small_digits
    model = BayesianCNN(1, 10, (8, 8), **TINY)
    assert model.class_prior_ is None
    train(model, tr, va, epochs=1, progress=False)
    expected = np.bincount(tr.labels.numpy(), minlength=10) / len(tr)
    np.testing.assert_allclose(model.class_prior_, expected, atol=1e-12)
    again = BayesianCNN.load(model.save(tmp_path / "m.pt"))
    np.testing.assert_allclose(again.class_prior_, expected, atol=1e-12)

    from probdl.hybrid import HybridModel, digit_sum_network

    hybrid = HybridModel(digit_sum_network(), classifiers={"D1": again, "D2": again})
    assert hybrid.prior_sources_ == {"D1": "model", "D2": "model"}
    np.testing.assert_allclose(hybrid.class_priors_["D1"], expected, atol=1e-12)
