"""The same paths on a GPU: training, grouped-convolution prediction, save/load across devices."""

from __future__ import annotations

import pytest
import torch

from probdl.bnn import BayesianCNN, MCDropoutCNN, evaluate, predict, train
from tests.bnn.conftest import TINY

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("cls", [BayesianCNN, MCDropoutCNN])
def test_train_predict_evaluate_on_cuda(cls, small_digits, tmp_path):
    tr, va, te = small_digits
    model = cls(1, 10, (8, 8), **TINY)
    result = train(model, tr, va, epochs=2, device="cuda", checkpoint_dir=tmp_path,
                   progress=False)  # fmt: skip
    assert model.device.type == "cuda" and len(result.history) == 2
    pred = predict(model, te.images, 8)  # CPU images in, CPU tensors out
    assert pred.probs.device.type == "cpu" and pred.sample_probs.shape == (8, len(te), 10)
    scores = evaluate(model, te, 8, ood=torch.rand(20, 1, 8, 8))
    assert 0 <= scores["accuracy"] <= 1
    moved = type(model).load(tmp_path / "model.pt", device="cpu")
    assert moved.device.type == "cpu"


def test_grouped_and_looped_convolutions_agree_on_cuda():
    model = BayesianCNN(1, 10, (8, 8), init_scale=0.05, **TINY).to("cuda").eval()
    arch = model.architecture
    x = torch.rand(16, 1, 8, 8, device="cuda")
    loc, scale = model.posterior_loc(), model.posterior_scale()
    w = loc + scale * torch.randn(4, loc.shape[0], device="cuda")
    params = model._params(w)
    grouped = arch.forward_samples(x, params, 4, grouped=True)
    looped = arch.forward_samples(x, params, 4, grouped=False)
    torch.testing.assert_close(grouped, looped, rtol=1e-3, atol=1e-3)


def test_cuda_checkpoint_loads_on_cpu_and_predicts_the_same(tmp_path):
    model = BayesianCNN(1, 10, (8, 8), **TINY).to("cuda").eval()
    path = model.save(tmp_path / "m.pt")
    cpu = BayesianCNN.load(path)
    torch.testing.assert_close(cpu.posterior_loc(), model.posterior_loc().cpu())
