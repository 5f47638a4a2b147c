"""The loss against a direct, term-by-term computation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from conftest import small_config
from hypermask.methods import Hnet, HyperMask
from hypermask.nets import MLP, split_flat


def _trained_a_little(method, task: int) -> None:
    """Move every parameter so the regularisers are non-zero."""
    with torch.no_grad():
        for p in method.parameters():
            p.add_(0.01 * torch.randn_like(p))


def _direct_hypermask_loss(method: HyperMask, task: int, x, y, sparsity, targets, snapshot):
    cfg = method.cfg
    raw = method.hnet(method.embeddings[task: task + 1])[0]
    tensors = split_flat(raw, method.masked_shapes)
    masks = []
    for layer, r in enumerate(tensors):
        soft = torch.tanh(r).abs()
        if layer < len(tensors) - 1 and sparsity > 0:
            soft = torch.where(soft >= torch.quantile(soft.detach(), sparsity / 100), soft, 0.0)
        masks.append(soft)
    weights = [th * m for th, m in zip(method.theta[:-1], masks[:-1])] + [method.theta[-1]]
    ce = F.cross_entropy(method.target(x, weights), y)
    hnet_reg = sum(((method.hnet(method.embeddings[j: j + 1])[0] - targets[j]) ** 2).sum()
                   for j in range(task)) / task
    l1 = sum(((th - s) * m).abs().sum() for th, s, m in zip(method.theta, snapshot, masks))
    return ce + cfg.beta * hnet_reg / max(1, task) + cfg.lambda_ * l1


def test_hypermask_loss_matches_direct_computation() -> None:
    torch.manual_seed(0)
    cfg = small_config(p=30.0, beta=0.5, **{"lambda": 0.01}, tasks=4)
    method = HyperMask(cfg, MLP(784, [32, 16], 2), num_tasks=4)
    task = 3
    method.start_task(task)
    targets = [method.hnet(method.embeddings[j: j + 1])[0].detach() for j in range(task)]
    snapshot = [p.detach().clone() for p in method.theta]
    _trained_a_little(method, task)
    x, y = torch.randn(16, 784), torch.randint(0, 2, (16,))
    loss, _ = method.training_loss(task, x, y, 30.0)
    expected = _direct_hypermask_loss(method, task, x, y, 30.0, targets, snapshot)
    assert torch.allclose(loss, expected, rtol=1e-5, atol=1e-6)
    grads = torch.autograd.grad(loss, list(method.parameters()))
    expected_grads = torch.autograd.grad(expected, list(method.parameters()))
    for a, b in zip(grads, expected_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4), float((a - b).abs().max())


def test_plain_l1_and_first_task_have_no_extra_terms() -> None:
    torch.manual_seed(1)
    cfg = small_config(p=0.0, masked_l1=False)
    method = HyperMask(cfg, MLP(784, [8], 2), num_tasks=2)
    x, y = torch.randn(4, 784), torch.randint(0, 2, (4,))
    method.start_task(0)
    loss, logits = method.training_loss(0, x, y, 0.0)
    assert torch.allclose(loss, F.cross_entropy(logits, y))
    method.start_task(1)
    snapshot = [p.detach().clone() for p in method.theta]
    targets = method.hnet(method.embeddings[:1]).detach()
    _trained_a_little(method, 1)
    loss, logits = method.training_loss(1, x, y, 0.0)
    hnet_reg = ((method.hnet(method.embeddings[:1]) - targets) ** 2).sum()
    l1 = sum((p - s).abs().sum() for p, s in zip(method.theta, snapshot))
    expected = F.cross_entropy(logits, y) + cfg.beta * hnet_reg + cfg.lambda_ * l1
    assert torch.allclose(loss, expected, rtol=1e-5)


def test_hnet_regulariser_has_single_normalisation() -> None:
    torch.manual_seed(2)
    cfg = small_config(method="hnet", beta=1.0, tasks=3)
    method = Hnet(cfg, MLP(784, [8], 2), num_tasks=3)
    method.start_task(2)
    targets = method.hnet(method.embeddings[:2]).detach()
    _trained_a_little(method, 2)
    x, y = torch.randn(4, 784), torch.randint(0, 2, (4,))
    loss, logits = method.training_loss(2, x, y, 0.0)
    reg = ((method.hnet(method.embeddings[:2]) - targets) ** 2).sum() / 2
    assert torch.allclose(loss, F.cross_entropy(logits, y) + reg, rtol=1e-5)


def test_nomask_is_finetuning_plus_the_plain_weight_regulariser() -> None:
    from hypermask.methods import Finetune, NoMask
    from hypermask.nets import ResNet20

    torch.manual_seed(2)
    cfg = small_config(method="nomask", **{"lambda": 0.05})
    target = ResNet20(n_out=2, n=1, k=1, in_channels=1)  # batch-norm tensors are left out of the L1 term
    method = NoMask(cfg, target, num_tasks=2)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 2, (8,))
    method.start_task(0)
    _trained_a_little(method, 0)
    first, _ = method.training_loss(0, x, y, 0.0)
    assert torch.equal(first, F.cross_entropy(target(x, list(method.theta)), y))  # nothing to keep yet
    method.start_task(1)
    snapshot = [p.detach().clone() for p in method.theta]
    _trained_a_little(method, 1)
    loss, _ = method.training_loss(1, x, y, 0.0)
    l1 = sum((th - s).abs().sum() for th, s, m in zip(method.theta, snapshot, target.masked) if m)
    expected = F.cross_entropy(target(x, list(method.theta)), y) + 0.05 * l1
    assert torch.allclose(loss, expected, rtol=1e-6, atol=1e-6)
    assert isinstance(method, Finetune) and not any(name.startswith("hnet") for name, _ in method.named_parameters())
