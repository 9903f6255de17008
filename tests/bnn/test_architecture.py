"""The functional CNN: layer layout, and the vectorized multi-sample pass against a loop."""

from __future__ import annotations

import pytest
import torch

from probdl.bnn.architecture import Architecture
from probdl.errors import ModelError


def test_default_layout_matches_the_design():
    arch = Architecture(1, 10, (8, 8))
    shapes = dict(arch.layer_shapes)
    assert shapes["conv0.weight"] == (32, 1, 3, 3)
    assert shapes["conv1.weight"] == (64, 32, 3, 3)
    # 8x8 -> max pool 4x4 -> avg pool 2x2: 64 * 2 * 2 features into dense 128
    assert shapes["dense0.weight"] == (128, 256)
    assert shapes["out.weight"] == (10, 128)
    assert arch.num_weights == sum(torch.Size(s).numel() for s in shapes.values())
    assert Architecture(1, 2, (8, 8)).num_outputs == 1
    assert dict(Architecture(3, 5, (8, 8), pooling="global").layer_shapes)["dense0.weight"] == (
        128,
        64,
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_classes": 1},
        {"image_size": (2, 2)},
        {"pooling": "median"},
        {"dropout": 1.0},
        {"filters": ()},
        {"image_size": 8},  # a bare int is no (H, W) pair
        {"image_size": "8x8"},
        {"in_channels": 1.5},
        {"filters": 32},
        {"dropout": "0.5"},
    ],
)
def test_bad_configurations_raise_model_error(kwargs):
    base = {"in_channels": 1, "num_classes": 10, "image_size": (8, 8)}
    with pytest.raises(ModelError):
        Architecture(**{**base, **kwargs})


def test_kaiming_init_has_the_right_spread():
    arch = Architecture(1, 10, (8, 8))
    w = arch.unflatten(arch.init_weights(torch.Generator().manual_seed(0)))
    assert abs(w["conv1.weight"].std().item() - (2 / (32 * 9)) ** 0.5) < 0.005
    assert torch.count_nonzero(w["dense0.bias"]) == 0


@pytest.mark.parametrize("pooling", ["avg", "global", "max"])
@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("grouped", [False, True])
def test_forward_samples_equals_a_loop_over_samples(pooling, batch_norm, grouped):
    arch = Architecture(
        2, 3, (8, 8), filters=(3, 4), dense=(5, 6), pooling=pooling, batch_norm=batch_norm
    )
    s, d = 3, arch.num_weights
    flat = torch.randn(s, d) * 0.3
    norms = None
    if batch_norm:
        norms = torch.nn.ModuleList(torch.nn.BatchNorm2d(f) for f in arch.filters)
        for bn in norms:
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
        norms.eval()
    x = torch.randn(7, 2, 8, 8)
    together = arch.forward_samples(x, arch.unflatten(flat), s, norms, grouped=grouped)
    one_by_one = torch.stack([arch.forward(x, arch.unflatten(flat[i]), norms) for i in range(s)])
    assert together.shape == (s, 7, 3)
    torch.testing.assert_close(together, one_by_one, rtol=1e-5, atol=1e-5)


def test_forward_samples_with_shared_conv_layers():
    """Only the last layer sampled (bayesian_layers='last'): shared tensors broadcast."""
    arch = Architecture(1, 4, (8, 8), filters=(3,), dense=(5,))
    shared = arch.unflatten(torch.randn(arch.num_weights))
    last = torch.randn(2, 4 * 5 + 4)
    params = {**shared, **arch.unflatten(last, arch.names("last"))}
    x = torch.randn(6, 1, 8, 8)
    together = arch.forward_samples(x, params, 2)
    for i in range(2):
        p = {**shared, **arch.unflatten(last[i], arch.names("last"))}
        torch.testing.assert_close(together[i], arch.forward(x, p), rtol=1e-5, atol=1e-5)


def test_local_reparameterization_has_the_exact_preactivation_moments():
    """Dense layer: mean x @ mu, variance x^2 @ sigma^2, checked by many draws."""
    arch = Architecture(1, 3, (4, 4), filters=(1,), dense=())
    names = arch.names()
    mu = arch.unflatten(torch.randn(arch.num_weights) * 0.5, names)
    var = {k: torch.full_like(v, 0.04) for k, v in mu.items()}
    x = torch.rand(1, 1, 4, 4).expand(20000, 1, 4, 4)
    out = arch.forward(
        x, mu, variances={"out.weight": var["out.weight"], "out.bias": var["out.bias"]}
    )
    h = torch.relu(
        torch.nn.functional.conv2d(x[:1], mu["conv0.weight"], mu["conv0.bias"], padding=1)
    )
    h = torch.nn.functional.avg_pool2d(torch.nn.functional.max_pool2d(h, 2), 2).flatten(1)
    mean = h @ mu["out.weight"].T + mu["out.bias"]
    variance = (h * h) @ var["out.weight"].T + var["out.bias"]
    torch.testing.assert_close(out.mean(0), mean[0], atol=0.01, rtol=0)
    torch.testing.assert_close(out.var(0), variance[0], atol=0.004, rtol=0.05)
