"""How many trials run at once and what each asks Ray for, from ``params.yaml``'s request and the live
nodes' resources (pure functions: the nodes are passed in)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

from pipeline.errors import PipelineError
from pipeline.spec.params import ResourceRequest

Node = Mapping[str, float]  # a live node's total resources, as ``ray.nodes()`` lists them
ACCELERATOR_SHARE = 0.001  # Ray's custom resource ``accelerator_type:<name>`` is 1 per node: ask a sliver of it


def accelerator_resource(name: str) -> str:
    """The custom resource Ray gives every node with accelerator ``name``."""
    return f"accelerator_type:{name}"


@dataclass(frozen=True)
class TrialPlan:
    """Trials at a time and the resources of each; ``gpus_total``: the GPUs of the nodes that can host them;
    ``threads``: the torch threads of each trial (params' ``resources.threads_per_trial``, not its CPUs)."""

    concurrency: int
    cpu: float
    gpu: float
    accelerator_type: str = ""
    gpus_total: float = 0.0
    threads: int = 1

    def resources(self) -> dict[str, float]:
        """``{"cpu", "gpu"}`` per trial (runtime settings and stage summaries)."""
        return {"cpu": self.cpu, "gpu": self.gpu}

    def request(self) -> dict[str, float]:
        """The per-trial request handed to ``tune.with_resources``."""
        extra = {accelerator_resource(self.accelerator_type): ACCELERATOR_SHARE} if self.accelerator_type else {}
        return {**self.resources(), **extra}

    def describe(self) -> str:
        """The plan in one line."""
        kind = f" ({self.accelerator_type})" if self.accelerator_type else ""
        used = min(self.gpus_total, self.concurrency * self.gpu)
        return (f"trial plan: {_count(self.concurrency, 'trial')} at a time, {_count(self.cpu, 'CPU')} and "
                f"{_count(self.gpu, 'GPU')}{kind} each, {_count(self.threads, 'torch thread')} per trial, "
                f"{_amount(used)} of {_amount(self.gpus_total)} GPUs used")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _amount(value: float) -> str:
    return f"{value:g}"


def _count(value: float, unit: str) -> str:
    """``value`` with ``unit``, plural unless it is a share of one (``0.25 GPU``, ``1 CPU``, ``2 CPUs``)."""
    return f"{value:g} {unit}" + ("" if 0 < value <= 1 else "s")


def hosts(nodes: Sequence[Node], accelerator_type: str = "", gpu: bool = False) -> list[Node]:
    """The nodes that can host a trial: with the accelerator when one is asked for, with GPUs when ``gpu``."""
    key = accelerator_resource(accelerator_type)
    return [n for n in nodes if (not accelerator_type or n.get(key, 0) > 0) and (not gpu or n.get("GPU", 0) > 0)]


def plan_trials(nodes: Sequence[Node], request: ResourceRequest, concurrency: int, trials: int,
                fixed: bool = False) -> TrialPlan:
    """Plan a stage's trials on ``nodes``.

    GPUs (auto): the hosts' GPUs shared by the trials at a time, at most one each (a fraction rounded down
    to 1/100); none without GPUs, one when an accelerator type is asked for that no live node has yet.
    Unless ``fixed``, ``concurrency`` is raised to fill the GPUs (one trial per GPU when the share is auto,
    ``GPUs / share`` otherwise), never above ``trials``. CPUs (auto): the CPUs of the nodes that host the
    trials shared by the trials at a time, whole, at least one, at most the largest host's. Threads: the
    request's, whatever the CPUs."""
    gpus_total = float(sum(n.get("GPU", 0) for n in hosts(nodes, request.accelerator_type)))
    gpu_share = request.gpus
    if not fixed and gpus_total and gpu_share != 0:
        fill = int(gpus_total / gpu_share + 1e-9) if gpu_share else int(gpus_total)
        concurrency = max(concurrency, min(fill, trials))
    if gpu_share is None and gpus_total:
        gpu_share = min(1.0, math.floor(100 * gpus_total / concurrency) / 100)
    elif gpu_share is None:  # no GPU up: CPU trials, unless an accelerator is asked for (one each, when it comes)
        gpu_share = 1.0 if request.accelerator_type else 0.0
    cpus = request.cpus
    if cpus is None:
        found = hosts(nodes, request.accelerator_type, gpu=gpu_share > 0)
        largest = max((n.get("CPU", 0) for n in found), default=1)
        cpus = float(max(1, min(int(sum(n.get("CPU", 0) for n in found) // concurrency), int(largest))))
    return TrialPlan(concurrency, cpus, gpu_share, request.accelerator_type, gpus_total, request.threads)


def describe_node(node: Node) -> str:
    """A node's CPUs, GPUs and accelerator types in words."""
    kinds = sorted(k.split(":", 1)[1] for k in node if k.startswith("accelerator_type:"))
    return (f"{_count(node.get('CPU', 0), 'CPU')}, {_count(node.get('GPU', 0), 'GPU')}"
            + (f", accelerator {'/'.join(kinds)}" if kinds else ""))


def largest_node(nodes: Sequence[Node]) -> Node:
    """The node with the most GPUs, then the most CPUs (empty when there is none)."""
    return max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})


def fits(node: Node, request: Mapping[str, float]) -> bool:
    """Whether ``node``'s total resources hold one trial's ``request`` (``cpu``/``gpu`` as Tune spells them)."""
    names = {"cpu": "CPU", "gpu": "GPU"}
    return all(node.get(names.get(k, k), 0) >= amount for k, amount in request.items() if amount > 0)


def check_satisfiable(nodes: Sequence[Node], plan: TrialPlan, wait_for_nodes: bool) -> str:
    """Refuse (one line) a trial request no live node can ever hold, unless ``wait_for_nodes`` (an autoscaling
    cluster adds such nodes): then the line saying it waits is returned. Empty when a node holds it."""
    if any(fits(node, plan.request()) for node in nodes):
        return ""
    asked = f"{_count(plan.cpu, 'CPU')}, {_count(plan.gpu, 'GPU')}" + (
        f", accelerator {plan.accelerator_type}" if plan.accelerator_type else "")
    largest = describe_node(largest_node(nodes)) if nodes else "no live node"
    if wait_for_nodes:
        return (f"waiting for Ray nodes that hold a trial ({asked}): none of the live nodes does (largest: "
                f"{largest}); resources.wait_for_nodes is true, so the cluster is expected to add them")
    raise PipelineError(f"resources: a trial asks for {asked}, more than any live Ray node has (largest: "
                        f"{largest}); lower the request in params.yaml, or set resources.wait_for_nodes: true "
                        "on an autoscaling cluster that adds such nodes")
