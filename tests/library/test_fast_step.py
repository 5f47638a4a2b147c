"""The library's fast training step against the plain reference step of ``bench``."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch

from bench.reference_step import LossTerms, ReferenceStep
from conftest import small_config
from hypermask.methods import HyperMask
from hypermask.nets import MLP
from hypermask.optim import make_optimizer
from hypermask.train import training_step

TASK = 3
# (sparsity p, masked L1): thresholded masks, p = 0 (no percentile), plain L1.
CASES = [(30.0, True), (0.0, True), (30.0, False)]
BLOCK_BYTES = 40_000  # the output layer's backward then walks its ~25k rows in uneven blocks


@dataclass
class StepPair:
    """What one fast step and one reference step did to two identical copies of a method."""

    fast: HyperMask
    reference: HyperMask
    fast_loss: torch.Tensor
    reference_loss: torch.Tensor
    terms: LossTerms
    params_before: list[torch.Tensor]


def _run_both(p: float, masked_l1: bool, dtype: torch.dtype, steps: int = 1,
              update_in_backward: bool = False) -> StepPair:
    """Build a small Split MNIST HyperMask at task 3 with non-zero regularisers; take ``steps``
    steps both ways on the same batch (losses and gradients are those of the last step).

    With ``update_in_backward`` the fast step's Adam updates the hypernetwork's output weight
    inside backward (that weight then has no ``.grad``; its update is what can be compared)."""
    torch.manual_seed(0)
    cfg = small_config(p=p, masked_l1=masked_l1, beta=0.5, **{"lambda": 0.05}, tasks=4,
                       embedding_size=6, hnet_hidden=[8, 8])
    fast = HyperMask(cfg, MLP(784, [32, 16], 2), num_tasks=4).to(dtype)
    fast.hnet.block_bytes = BLOCK_BYTES
    reference_method = copy.deepcopy(fast)
    fast.start_task(TASK)
    reference = ReferenceStep(reference_method, cfg.lr)
    reference.start_task(TASK)
    with torch.no_grad():  # move away from the snapshots so that both regularisers matter
        for param in fast.parameters():
            param.add_(0.05 * torch.randn_like(param))
    reference_method.load_state_dict(fast.state_dict())
    x, y = torch.randn(16, 784, dtype=dtype), torch.randint(0, 2, (16,))
    before = [q.detach().clone() for q in fast.parameters()]
    terms = reference.loss_terms(TASK, x, y, p)
    optimizer = make_optimizer(fast.parameters(), cfg.lr, torch.device("cpu"))
    for _ in range(steps):
        fast_loss = training_step(fast, optimizer, TASK, x, y, p, update_in_backward)
        reference_loss = reference.step(TASK, x, y, p)
    return StepPair(fast, reference_method, fast_loss, reference_loss, terms, before)


def _assert_close_to_scale(actual: torch.Tensor, expected: torch.Tensor, rel: float, name: str) -> None:
    """Largest difference within ``rel`` times the tensor's largest magnitude (rounding noise of a
    different summation order scales with the tensor, not with each tiny entry)."""
    error = float((actual - expected).detach().abs().max())
    scale = float(expected.detach().abs().max())
    assert error <= rel * scale + 1e-30, f"{name}: max difference {error:.3g} at scale {scale:.3g}"


def _assert_gradients_close(pair: StepPair, rel: float) -> None:
    named = dict(pair.reference.named_parameters())
    for name, param in pair.fast.named_parameters():
        assert param.grad is not None and named[name].grad is not None, name
        _assert_close_to_scale(param.grad, named[name].grad, rel, name)


def _assert_updates_close(pair: StepPair, rel: float) -> None:
    reference_params = dict(pair.reference.named_parameters())
    for before, (name, param) in zip(pair.params_before, pair.fast.named_parameters()):
        assert not torch.equal(param, before), f"{name} did not move"
        _assert_close_to_scale(param, reference_params[name], rel, name)


@pytest.mark.parametrize("p, masked_l1", CASES)
def test_loss_and_gradients_match_in_float32(p: float, masked_l1: bool) -> None:
    pair = _run_both(p, masked_l1, torch.float32)
    torch.testing.assert_close(pair.fast_loss, pair.reference_loss, rtol=1e-5, atol=1e-6)
    _assert_gradients_close(pair, rel=1e-5)


@pytest.mark.parametrize("p, masked_l1", CASES)
def test_loss_gradients_and_adam_steps_match_in_float64(p: float, masked_l1: bool) -> None:
    pair = _run_both(p, masked_l1, torch.float64, steps=2)  # the second step uses Adam's moments
    torch.testing.assert_close(pair.fast_loss, pair.reference_loss, rtol=1e-12, atol=1e-12)
    _assert_gradients_close(pair, rel=1e-11)
    _assert_updates_close(pair, rel=1e-11)


@pytest.mark.parametrize("p, masked_l1", CASES)
def test_adam_inside_backward_gives_the_reference_update(p: float, masked_l1: bool) -> None:
    pair = _run_both(p, masked_l1, torch.float64, steps=3, update_in_backward=True)
    assert pair.fast.hnet.output_weight.grad is None  # the weight was updated inside backward
    torch.testing.assert_close(pair.fast_loss, pair.reference_loss, rtol=1e-12, atol=1e-12)
    _assert_updates_close(pair, rel=1e-11)


def test_adam_inside_backward_in_float32_moves_weights_as_the_reference() -> None:
    """In float32, Adam turns rounding noise of near-zero gradients into steps of up to lr, so the
    update is compared with the distance the weights moved rather than with their scale."""
    pair = _run_both(30.0, True, torch.float32, steps=3, update_in_backward=True)
    reference_params = dict(pair.reference.named_parameters())
    for before, (name, param) in zip(pair.params_before, pair.fast.named_parameters()):
        moved = float((reference_params[name].detach() - before).abs().max())
        error = float((param - reference_params[name]).detach().abs().max())
        assert moved > 0 and error <= 0.05 * moved, f"{name}: off by {error:.3g}, moved {moved:.3g}"


def test_the_compared_terms_are_not_negligible() -> None:
    pair = _run_both(30.0, True, torch.float64)
    assert float(pair.terms.hnet_regulariser.detach()) > 1e-3
    assert float(pair.terms.theta_regulariser.detach()) > 1e-2
    torch.testing.assert_close(pair.terms.total.detach(), pair.reference_loss)
    # Earlier embeddings get gradient only through the output regulariser.
    assert float(pair.fast.embeddings.grad[:TASK].abs().max()) > 1e-4
    # At p = 30 the thresholded mask really zeroes a share of the first layer.
    raw = pair.reference.hnet(pair.reference.embeddings[TASK: TASK + 1])[0]
    _, masks = pair.reference.masked_weights(raw, 30.0)
    assert 0.25 < float((masks[0] == 0).double().mean()) < 0.35


def test_a_different_sparsity_is_detected() -> None:
    pair = _run_both(30.0, True, torch.float64)
    other = _run_both(0.0, True, torch.float64)
    assert abs(float(pair.fast_loss) - float(other.reference_loss)) > 1e-6
