"""Trial plans: the request of params.yaml against the live nodes, the concurrency raised to fill GPUs, the
resources Tune is asked for, and a request no node holds refused before any trial (fake GPUs: no CUDA runs)."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
import ray

from pipeline.cluster.placement import TrialPlan, check_satisfiable, plan_trials
from pipeline.cluster.session import plan_resources, runtime_settings
from pipeline.errors import PipelineError
from pipeline.spec.params import ResourceRequest
from pipeline.spec.studies import parse_study
from pipeline.tuning.runner import TuneRequest, trial_trainable
from pipeline.workspace.keys import runtime_identity, stage_key
from pipeline_fixtures import TINY_STUDY

AUTO = ResourceRequest()
A100 = "accelerator_type:A100"


def _plan(nodes: list[dict], concurrency: int, trials: int = 40, fixed: bool = False, **request) -> dict:
    plan = plan_trials(nodes, ResourceRequest(**request), concurrency, trials, fixed)
    return {"concurrency": plan.concurrency, "cpu": plan.cpu, "gpu": plan.gpu}


def test_auto_shares_cpus_and_gpus_as_before_when_gpus_do_not_outnumber_trials() -> None:
    assert _plan([{"CPU": 2.0}], 2) == {"concurrency": 2, "cpu": 1.0, "gpu": 0.0}
    assert _plan([{"CPU": 16.0, "GPU": 1.0}], 4) == {"concurrency": 4, "cpu": 4.0, "gpu": 0.25}
    assert _plan([{"CPU": 16.0, "GPU": 2.0}], 3) == {"concurrency": 3, "cpu": 5.0, "gpu": 0.66}
    assert _plan([{"CPU": 1.0}], 4) == {"concurrency": 4, "cpu": 1.0, "gpu": 0.0}
    assert _plan([{"CPU": 16.0, "GPU": 1.0}], 3, cpus=2, gpus=0.5) == {"concurrency": 3, "cpu": 2, "gpu": 0.5}


def test_concurrency_is_raised_to_fill_the_gpus_unless_the_study_fixes_it() -> None:
    eight = [{"CPU": 64.0, "GPU": 8.0}]
    assert _plan(eight, 4) == {"concurrency": 8, "cpu": 8.0, "gpu": 1.0}  # one trial per GPU
    assert _plan(eight, 4, trials=6) == {"concurrency": 6, "cpu": 10.0, "gpu": 1.0}  # never above the trials
    assert _plan(eight, 4, fixed=True) == {"concurrency": 4, "cpu": 16.0, "gpu": 1.0}
    assert _plan(eight, 4, gpus=0.5) == {"concurrency": 16, "cpu": 4.0, "gpu": 0.5}  # a declared share fills too
    assert _plan([{"CPU": 64.0, "GPU": 1.0}], 2, gpus=0.1)["concurrency"] == 10  # 1 / 0.1 is 9.99... in floats
    assert _plan(eight, 4, gpus=0) == {"concurrency": 4, "cpu": 16.0, "gpu": 0}  # CPU trials: left as written
    assert _plan([{"CPU": 64.0}], 4) == {"concurrency": 4, "cpu": 16.0, "gpu": 0.0}


def test_auto_cpus_come_from_the_nodes_that_host_the_trials() -> None:
    head, gpu_node = {"CPU": 32.0}, {"CPU": 8.0, "GPU": 2.0, A100: 1.0}
    other = {"CPU": 8.0, "GPU": 4.0, "accelerator_type:T4": 1.0}
    assert _plan([head, gpu_node], 2) == {"concurrency": 2, "cpu": 4.0, "gpu": 1.0}  # not the head's CPUs
    assert _plan([head, gpu_node, other], 2, accelerator_type="A100") == {"concurrency": 2, "cpu": 4.0,
                                                                           "gpu": 1.0}
    assert _plan([head], 1, gpus=1, wait_for_nodes=True) == {"concurrency": 1, "cpu": 1.0, "gpu": 1}
    assert _plan([head], 2, accelerator_type="A100", wait_for_nodes=True) == {"concurrency": 2, "cpu": 1.0,
                                                                                "gpu": 1.0}
    assert _plan([{"CPU": 4.0}, {"CPU": 4.0}], 1) == {"concurrency": 1, "cpu": 4.0, "gpu": 0.0}  # fits a node


def test_the_plan_line_and_the_tune_request() -> None:
    plan = plan_trials([{"CPU": 16.0, "GPU": 1.0, A100: 1.0}], ResourceRequest(accelerator_type="A100"), 4, 8)
    assert plan.describe() == ("trial plan: 4 trials at a time, 4 CPUs and 0.25 GPU (A100) each, 1 torch thread "
                               "per trial, 1 of 1 GPUs used")
    assert plan.request() == {"cpu": 4.0, "gpu": 0.25, A100: 0.001}
    assert plan_trials([{"CPU": 2.0}], AUTO, 2, 8).request() == {"cpu": 1.0, "gpu": 0.0}


def test_a_request_no_node_holds_is_refused_in_one_line_or_awaited() -> None:
    nodes = [{"CPU": 8.0}, {"CPU": 16.0, "GPU": 2.0, A100: 1.0}]
    assert check_satisfiable(nodes, TrialPlan(2, 16.0, 1.0, "A100", 2.0), False) == ""
    for plan in (TrialPlan(2, 32.0, 0.0), TrialPlan(2, 4.0, 1.0, "H100", 0.0)):
        with pytest.raises(PipelineError) as err:
            check_satisfiable(nodes, plan, False)
        message = str(err.value)
        assert "\n" not in message and message.startswith("resources: a trial asks for ")
        assert "(largest: 16 CPUs, 2 GPUs, accelerator A100)" in message and "wait_for_nodes" in message
    waiting = check_satisfiable(nodes, TrialPlan(2, 4.0, 1.0, "H100", 0.0), True)
    assert waiting.startswith("waiting for Ray nodes") and "accelerator H100" in waiting


def test_planned_concurrency_and_device_enter_the_runtime_identity() -> None:
    runtime = runtime_settings(TrialPlan(4, 2.0, 0.5, threads=2), "/data")
    assert runtime["device"] == "cuda" and runtime["threads"] == 2
    assert runtime_settings(TrialPlan(4, 2.0, 0.0), "/data")["device"] == "cpu"
    assert runtime_identity(runtime, 8) == {"threads": 2, "device": "cuda", "concurrency": 8}
    identity = {"stage": "tune"}
    assert len({stage_key(identity, runtime, 4), stage_key(identity, runtime, 8), stage_key(identity, runtime)}) == 3


def test_trial_threads_are_the_planned_ones_whatever_the_cpus() -> None:
    """params' threads_per_trial, not the CPUs a trial gets: the count changes a run's numbers."""
    for nodes, concurrency in (([{"CPU": 2.0}], 2), ([{"CPU": 64.0}], 2), ([{"CPU": 16.0, "GPU": 1.0}], 4)):
        plan = plan_trials(nodes, AUTO, concurrency, 8)
        assert plan.threads == 1 and runtime_settings(plan, "/data")["threads"] == 1
        assert ", 1 torch thread per trial, " in plan.describe()
    plan = plan_trials([{"CPU": 2.0}], ResourceRequest(cpus=1, threads=4), 2, 8)
    assert (plan.cpu, runtime_settings(plan, "/data")["threads"]) == (1, 4)
    assert plan.describe() == "trial plan: 2 trials at a time, 1 CPU and 0 GPUs each, 4 torch threads per trial, " \
                              "0 of 0 GPUs used"
    keys = {stage_key({"stage": "tune"}, runtime_settings(plan_trials([{"CPU": 2.0}], ResourceRequest(threads=t),
                                                                      2, 8), "/data")) for t in (1, 2)}
    assert len(keys) == 2  # the stage key holds the threads


def test_experiment_trial_count_caps_the_raise() -> None:
    study = parse_study("tiny", TINY_STUDY, "studies/tiny.yaml")
    assert TuneRequest("tune", study, {}, num_samples=study.trials).trials == 3
    grid = {"arm": {"grid_search": ["tuned", "published"]}, "seed": {"grid_search": [1, 2, 3]}}
    assert TuneRequest("final", study, {}, num_samples=1, param_space=grid).trials == 6


def test_fixed_concurrency_is_validated_and_kept() -> None:
    budget = {**TINY_STUDY["budget"], "fixed_concurrency": True}
    assert parse_study("tiny", {**TINY_STUDY, "budget": budget}, "studies/tiny.yaml").fixed_concurrency
    assert not parse_study("tiny", TINY_STUDY, "studies/tiny.yaml").fixed_concurrency
    with pytest.raises(PipelineError, match=r"^studies/tiny.yaml: 'budget.fixed_concurrency' must be true or false, "
                                            r"got 'yes'$"):
        parse_study("tiny", {**TINY_STUDY, "budget": {**budget, "fixed_concurrency": "yes"}}, "studies/tiny.yaml")


@pytest.fixture(scope="module")
def fake_gpus() -> Iterator[None]:
    """A local Ray with 4 CPUs and 2 logical GPUs of type A100 (nothing touches CUDA)."""
    assert not ray.is_initialized()
    from pipeline.cluster.session import local_ray

    with local_ray(num_cpus=4, num_gpus=2, resources={A100: 1}, object_store_memory=80 * 1024**2):
        yield


def test_plan_on_fake_gpus_raises_concurrency_and_prints_it(fake_gpus, capsys) -> None:
    plan = plan_resources(AUTO, concurrency=1, trials=3)
    assert (plan.concurrency, plan.cpu, plan.gpu, plan.gpus_total) == (2, 2.0, 1.0, 2.0)
    assert capsys.readouterr().out.splitlines() == [
        "trial plan: 2 trials at a time, 2 CPUs and 1 GPU each, 1 torch thread per trial, 2 of 2 GPUs used"]
    assert plan_resources(AUTO, concurrency=1, trials=3, fixed=True).concurrency == 1
    assert plan_resources(AUTO, concurrency=4, trials=8).gpu == 0.5
    study = parse_study("tiny", TINY_STUDY, "studies/tiny.yaml")
    runtime = runtime_settings(plan, "/data")
    assert runtime["device"] == "cuda"
    wrapped = trial_trainable(TuneRequest("tune", study, {}, num_samples=3), runtime,
                              plan_resources(ResourceRequest(gpus=0.5, accelerator_type="A100"), 1, 3),
                              experiment="/storage/tune-tiny-key")
    assert wrapped._resources.required_resources == {"CPU": 1.0, "GPU": 0.5, A100: 0.001}


def test_an_impossible_request_on_fake_gpus_fails_before_any_trial(fake_gpus, capsys) -> None:
    for request in (ResourceRequest(gpus=1, accelerator_type="H100"), ResourceRequest(cpus=8)):
        with pytest.raises(PipelineError, match=r"largest: 4 CPUs, 2 GPUs, accelerator A100\)"):
            plan_resources(request, concurrency=2, trials=3)
    capsys.readouterr()
    plan = plan_resources(ResourceRequest(gpus=1, accelerator_type="H100", wait_for_nodes=True), 2, 3)
    lines = capsys.readouterr().out.splitlines()
    assert plan.request()["accelerator_type:H100"] == 0.001 and len(lines) == 2
    assert lines[1].startswith("waiting for Ray nodes that hold a trial (1 CPU, 1 GPU, accelerator H100)")


def _tune_config(exp: TuneRequest, plan: TrialPlan, tmp_path) -> Any:
    """The TuneConfig a fresh (not restored) stage of ``exp`` gives Tune under ``plan``."""
    import yaml

    from pipeline.spec.params import parse_params
    from pipeline.tuning.runner import _tuner
    from pipeline.workspace.layout import Layout
    from pipeline_fixtures import REPO

    params = parse_params(yaml.safe_load((REPO / "params.yaml").read_text()))
    storage = str(tmp_path / "ray_storage")
    trainable = trial_trainable(exp, {}, plan, experiment=f"{storage}/{exp.name('k')}")
    tuner, resumed = _tuner(Layout.at(tmp_path), params, exp, "k", storage, trainable, "sqlite://", {},
                            plan.concurrency)
    assert not resumed
    return tuner._local_tuner._tune_config


def test_the_planned_concurrency_reaches_tune(fake_gpus, tmp_path) -> None:
    study = parse_study("tiny", {**TINY_STUDY, "budget": {**TINY_STUDY["budget"], "concurrency": 1}}, "tiny.yaml")
    exp = TuneRequest("tune", study, {}, num_samples=study.trials)
    plan = plan_resources(AUTO, study.concurrency, exp.trials)
    assert plan.concurrency == 2 != study.concurrency  # raised from 1 to fill the 2 GPUs
    assert _tune_config(exp, plan, tmp_path).max_concurrent_trials == 2


@pytest.mark.parametrize("varied, reused", [({}, True),
                                            ({"search_space": {"numerics": {"choice": ["portable", "native"]}}}, False)])
def test_trials_reuse_ray_workers_unless_their_numeric_paths_may_differ(tmp_path, varied: dict, reused: bool) -> None:
    """A Ray worker process runs one numeric path (hypermask.numerics): a study that searches it gives
    every trial a worker of its own."""
    study = parse_study("tiny", {**TINY_STUDY, **varied}, "tiny.yaml")
    exp = TuneRequest("tune", study, {}, num_samples=study.trials)
    config = _tune_config(exp, TrialPlan(study.concurrency, 1.0, 0.0), tmp_path)
    assert study.varies("numerics") != reused and config.reuse_actors == reused
