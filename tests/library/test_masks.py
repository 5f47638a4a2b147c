"""The semi-binary mask: percentile, zero share, soft kept values, output bias, ramp."""

from __future__ import annotations

import pytest
import torch

from conftest import small_config
from hypermask.masks import layer_masks, percentile_threshold, ramped_sparsity, semi_binary_mask
from hypermask.methods import HyperMask
from hypermask.nets import MLP, split_flat


@pytest.mark.parametrize("n", [1, 2, 7, 400, 10_001])
@pytest.mark.parametrize("percent", [0.0, 12.5, 30.0, 50.0, 99.0])
def test_percentile_matches_torch_quantile(n: int, percent: float) -> None:
    values = torch.rand(n, generator=torch.Generator().manual_seed(n))
    expected = torch.quantile(values, percent / 100.0)
    assert torch.allclose(percentile_threshold(values, percent), expected)


@pytest.mark.parametrize("percent", [10.0, 30.0, 75.0])
def test_share_of_zeros_and_soft_kept_values(percent: float) -> None:
    raw = torch.randn(300, 200, generator=torch.Generator().manual_seed(0))
    mask = semi_binary_mask(raw, percent)
    soft = torch.tanh(raw).abs()
    zero_share = float((mask == 0).float().mean())
    assert abs(zero_share - percent / 100.0) < 1.0 / raw.numel() + 1e-9
    kept = mask != 0
    assert torch.equal(mask[kept], soft[kept])  # kept entries keep their soft value
    assert float(mask[kept].min()) >= float(torch.quantile(soft, percent / 100.0))


def test_zero_percent_is_plain_soft_mask() -> None:
    raw = torch.randn(50, 40)
    assert torch.equal(semi_binary_mask(raw, 0.0), torch.tanh(raw).abs())


def test_threshold_gets_no_gradient_but_kept_entries_do() -> None:
    raw = torch.randn(100, requires_grad=True)
    semi_binary_mask(raw, 50.0).sum().backward()
    soft = torch.tanh(raw.detach()).abs()
    kept = soft >= torch.quantile(soft, 0.5)
    assert torch.all(raw.grad[~kept] == 0)
    assert torch.all(raw.grad[kept] != 0)


def test_each_tensor_has_its_own_percentile() -> None:
    small = torch.full((100,), 0.01) + torch.linspace(0, 0.001, 100)
    large = torch.full((100,), 3.0) + torch.linspace(0, 0.1, 100)
    masks = layer_masks([small, large, torch.zeros(3)], 40.0)
    assert int((masks[0] == 0).sum()) == 40 and int((masks[1] == 0).sum()) == 40


def test_output_bias_is_never_masked() -> None:
    cfg = small_config(p=60.0)
    target = MLP(784, [20], 2)
    method = HyperMask(cfg, target, num_tasks=2)
    raw = method.hnet(method.embeddings[:1])[0]
    weights, masks = method.masked_weights(raw, 60.0)
    assert weights[-1] is method.theta[-1]  # effective output bias = θ_L
    assert torch.allclose(masks[-1], torch.tanh(split_flat(raw, method.masked_shapes)[-1]).abs())
    for index in range(len(weights) - 1):  # every other tensor: θ ⊙ M with ~60 % zeros
        zeros = float((weights[index] == 0).float().mean())
        assert abs(zeros - 0.6) < 0.05


def test_first_task_ramp() -> None:
    assert ramped_sparsity(30.0, 0, 0, 100) == 0.0
    assert ramped_sparsity(30.0, 0, 50, 100) == pytest.approx(15.0)
    assert ramped_sparsity(30.0, 0, 99, 100) == pytest.approx(29.7)
    assert ramped_sparsity(30.0, 1, 0, 100) == 30.0


@pytest.mark.parametrize("guess, width", [(None, 1e-2), (0.5, 1e-6), (0.0, 1e-3), (2.0, 0.1), (0.3, 10.0)])
def test_threshold_hint_never_changes_the_result(guess, width) -> None:
    from hypermask.masks import ThresholdHint

    hint = ThresholdHint(guess, width)
    gen = torch.Generator().manual_seed(5)
    for step in range(30):  # drifting values, as during training
        values = torch.rand(5000, generator=gen) * (1 + step / 10)
        for percent in (30.0, 12.34):
            expected = torch.quantile(values, percent / 100.0)
            assert torch.allclose(percentile_threshold(values, percent, hint), expected)


def test_threshold_hint_counts_an_entry_at_the_band_edge() -> None:
    from hypermask.masks import ThresholdHint

    guess, width = 0.543624997138977, 0.04
    edge = float(torch.tensor(guess - width, dtype=torch.float32))  # lower band edge in float32
    below = torch.linspace(0.1, 0.4, 50)  # 50 entries under the band
    above = torch.linspace(0.52, 0.58, 50)  # 50 entries inside the band, above the edge
    values = torch.cat([below, torch.tensor([edge]), above])[torch.randperm(101, generator=torch.Generator().manual_seed(0))]
    for percent in (50.0, 49.5, 50.5):  # the edge entry is the 51st smallest: it decides each result
        expected = torch.quantile(values, percent / 100.0)
        got = percentile_threshold(values, percent, ThresholdHint(guess, width))
        assert torch.allclose(got, expected), (percent, got, expected)


def test_mask_overlap_is_the_mean_pairwise_jaccard_index_of_the_non_zero_entries() -> None:
    from hypermask.masks import mask_overlap

    a = [torch.tensor([[1.0, 0.0], [0.5, 0.0]]), torch.tensor([0.2, 0.0])]  # support {0, 2, 4}
    b = [torch.tensor([[0.3, 0.0], [0.0, 0.9]]), torch.tensor([0.7, 0.0])]  # support {0, 3, 4}
    c = [torch.zeros(2, 2), torch.tensor([0.0, 0.4])]                       # support {5}
    assert mask_overlap([a, b]) == pytest.approx(2 / 4)
    assert mask_overlap([a, b, c]) == pytest.approx((2 / 4 + 0 + 0) / 3)
    assert mask_overlap([a]) == 1.0 and mask_overlap([a, a]) == 1.0
