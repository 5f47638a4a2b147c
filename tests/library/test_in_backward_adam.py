"""Adam applied inside the backward pass of the hypernetwork's output layer."""

from __future__ import annotations

import copy

import pytest
import torch

from hypermask.nets import HyperNetwork
from hypermask.optim import InBackwardAdam, in_backward_adam, make_optimizer

CPU = torch.device("cpu")


def _pair(block_bytes: int = 3_000) -> tuple[HyperNetwork, HyperNetwork]:
    torch.manual_seed(0)
    net = HyperNetwork(5, [7], 401).double()
    net.block_bytes = block_bytes  # 401 rows of 7 float64 values: several uneven blocks
    return net, copy.deepcopy(net)


def _objective(current: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
    """A loss that weighs every output differently and uses the regulariser's sum of squares."""
    weights = torch.linspace(-1, 1, current.numel(), dtype=current.dtype)
    return (current.sin() * weights).sum() + 0.3 * distance


def _loss(net: HyperNetwork, embeddings: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    return _objective(*net.current_and_distance(embeddings, targets))


def _step(net, optimizer, embeddings, targets, in_backward: bool) -> None:
    if in_backward:
        with in_backward_adam(net, optimizer) as bound:
            assert bound == 1
            loss = _loss(net, embeddings, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
    else:
        loss = _loss(net, embeddings, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
    optimizer.step()


@pytest.mark.parametrize("earlier", [0, 3])
def test_updates_equal_the_ordinary_step_and_follow_lr_changes(earlier: int) -> None:
    fused, plain = _pair()
    embeddings = torch.randn(earlier + 1, 5, dtype=torch.float64)
    targets = torch.randn(earlier, 401, dtype=torch.float64) if earlier else None
    opt_fused = make_optimizer(fused.parameters(), 1e-2, CPU)
    opt_plain = make_optimizer(plain.parameters(), 1e-2, CPU)
    for step in range(4):
        if step == 2:  # a scheduler lowering the learning rate must reach the in-backward update
            for group in opt_fused.param_groups + opt_plain.param_groups:
                group["lr"] = 1e-3
        _step(fused, opt_fused, embeddings, targets, in_backward=True)
        _step(plain, opt_plain, embeddings, targets, in_backward=False)
    assert fused.output_weight.grad is None
    for (name, a), b in zip(fused.named_parameters(), plain.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)
    state_fused, state_plain = opt_fused.state[fused.output_weight], opt_plain.state[plain.output_weight]
    assert float(state_fused["step"]) == float(state_plain["step"]) == 4
    torch.testing.assert_close(state_fused["exp_avg_sq"], state_plain["exp_avg_sq"], rtol=1e-12, atol=0)


def test_blockwise_gradients_equal_autograd_of_the_plain_layer() -> None:
    net, _ = _pair(block_bytes=500)
    embeddings = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    targets = torch.randn(3, 401, dtype=torch.float64)
    loss = _loss(net, embeddings, targets)
    grads = torch.autograd.grad(loss, [embeddings, *net.parameters()])
    out = net(embeddings)
    plain = _objective(out[-1], ((out[:-1] - targets) ** 2).sum())
    expected = torch.autograd.grad(plain, [embeddings, *net.parameters()])
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_other_optimisers_keep_ordinary_gradients() -> None:
    net, _ = _pair()
    sgd = torch.optim.SGD(net.parameters(), lr=0.1)
    amsgrad = torch.optim.Adam(net.parameters(), lr=0.1, amsgrad=True)
    assert InBackwardAdam.for_optimizer(sgd, net.output_weight) is None
    assert InBackwardAdam.for_optimizer(amsgrad, net.output_weight) is None
    with in_backward_adam(net, sgd) as bound:
        assert bound == 0
        _loss(net, torch.randn(1, 5, dtype=torch.float64), None).backward()
    assert net.output_weight.grad is not None


def test_two_uses_in_one_step_are_refused() -> None:
    """A second gradient within one step would be applied as a second, partial Adam step."""
    net, _ = _pair()
    optimizer = make_optimizer(net.parameters(), 1e-2, CPU)
    embeddings = torch.randn(1, 5, dtype=torch.float64)
    with in_backward_adam(net, optimizer):
        loss = _loss(net, embeddings, None) + _loss(net, embeddings, None)
        with pytest.raises(RuntimeError, match="more than once in one training step"):
            loss.backward()


def test_binding_ends_with_the_block() -> None:
    net, _ = _pair()
    optimizer = make_optimizer(net.parameters(), 1e-2, CPU)
    with in_backward_adam(net, optimizer):
        assert net.output_updater is not None
    assert net.output_updater is None
