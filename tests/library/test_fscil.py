"""Few-shot class-incremental learning (FSCIL) as the literature does it: the standard, random and pseudo
protocols, the published CIFAR-100 shot lists, no novel-class data beyond the shots, evaluation that does not
depend on batch composition, joint/base/novel accuracy and PD, and short runs of every method on FSCIL MNIST
and on generated CIFAR-100-shaped data."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from hypermask.cli import main
from hypermask.config import ConfigError, resolve_config
from hypermask.data import ImageArrays, build_stream, fscil
from hypermask.data.sources import DataError
from hypermask.evaluation import evaluate_sessions, session_metrics
from hypermask.methods import build_for_stream
from hypermask.nets import build_target
from hypermask.registry import DatasetSpec, dataset_spec, register_dataset
from hypermask.runtime import preflight
from hypermask.train import train_continual

TINY = {"progress": False, "target_hidden": "32", "embedding_size": 8, "hnet_hidden": "8", "iterations": 30,
        "train_subset": 200, "validation_size": 50, "chunk_size": 0, "threads": 1, "session_steps": 5}
METHODS = ["hypermask", "hypermask_sessions", "decoupled", "finetune", "hnet"]


def test_fscil_mnist_standard_protocol_base_digits_then_three_two_way_five_shot_sessions(mnist) -> None:
    cfg = resolve_config("fscil_mnist", overrides={"progress": False, "seed": 7})
    assert (cfg.tasks, cfg.base_classes, cfg.ways, cfg.shots, cfg.fscil_protocol) == (4, 4, 2, 5, "standard")
    stream = build_stream(cfg, mnist)
    assert stream.protocol["sessions"] == [[0, 1, 2, 3], [4, 5], [6, 7], [8, 9]]
    assert stream.seen_classes == [4, 6, 8, 10]
    base = stream.tasks[0]
    assert set(base.train_y.tolist()) == set(base.val_y.tolist()) == set(base.test_y.tolist()) == {0, 1, 2, 3}
    assert len(base.train_x) + len(base.val_x) == int((mnist.train_y < 4).sum())  # all base training images
    for s, task in enumerate(stream.tasks[1:], start=1):
        classes = [2 + 2 * s, 3 + 2 * s]
        chosen = stream.protocol["shot_indices"][s - 1]
        assert sorted(task.train_y.tolist()) == sorted(classes * 5) and len(set(chosen)) == 10
        assert torch.equal(task.train_x, mnist.train_x[chosen].float()[:, None] / 255)
        assert len(task.val_y) == 0  # no novel-class data beyond the shots
        assert int(torch.isin(mnist.test_y, torch.tensor(classes)).sum()) == len(task.test_y)
    # shots depend on protocol_seed only, not on the run's seed
    assert build_stream(resolve_config("fscil_mnist", overrides={"seed": 8}), mnist).protocol == stream.protocol
    other = build_stream(resolve_config("fscil_mnist", overrides={"protocol_seed": 2}), mnist).protocol
    assert other["sessions"] == stream.protocol["sessions"] and other["shot_indices"] != stream.protocol["shot_indices"]


def test_random_protocol_draws_the_class_order(mnist) -> None:
    stream = build_stream(resolve_config("fscil_mnist", overrides={"fscil_protocol": "random"}), mnist)
    order = stream.protocol["class_order"]
    assert sorted(order) == list(range(10)) and order != list(range(10))
    assert stream.protocol["sessions"] == [order[:4], order[4:6], order[6:8], order[8:]]
    assert all(len(task.val_y) == 0 for task in stream.tasks[1:])


def test_pseudo_protocol_holds_base_classes_out_as_sessions_and_never_touches_novel_classes(mnist) -> None:
    cfg = resolve_config("fscil_mnist", overrides={"fscil_protocol": "pseudo", "tasks": 2, "validation_size": 100})
    stream = build_stream(cfg, mnist)
    assert stream.protocol["sessions"] == [[0, 1], [2, 3]] and stream.seen_classes == [2, 4]
    labels = torch.cat([t.train_y for t in stream.tasks] + [t.val_y for t in stream.tasks]
                       + [t.test_y for t in stream.tasks])
    assert int(labels.max()) == 3  # only the standard protocol's base digits
    pseudo = stream.tasks[1]
    shots = stream.protocol["shot_indices"][0]
    assert len(pseudo.train_y) == 10 and set(pseudo.val_y.tolist()) <= {2, 3} and len(pseudo.val_y) == 100
    assert not torch.isin(torch.tensor(shots), torch.nonzero(torch.isin(mnist.test_y, torch.arange(4)))).all()
    with pytest.raises(ConfigError, match="'tasks' must be <= 2 for fscil_protocol=pseudo"):
        resolve_config("fscil_mnist", overrides={"fscil_protocol": "pseudo", "tasks": 3})


def test_published_cifar100_shot_lists_have_the_literature_shape() -> None:
    listed = fscil.listed_shots("fscil_cifar100")
    assert listed["source"]["repository"] == "https://github.com/icoz69/CEC-CVPR2021"
    assert len(listed["source"]["commit"]) == 40
    assert listed["source"]["paths"] == [f"data/index_list/cifar100/session_{i}.txt" for i in range(2, 10)]
    sessions = listed["sessions"]
    assert len(sessions) == 8
    indices = []
    for number, session in enumerate(sessions):
        classes = [int(c) for c in session["classes"]]
        assert classes == list(range(60 + 5 * number, 65 + 5 * number))  # 5 classes per session
        assert all(len(shots) == 5 for shots in session["classes"].values())  # 5 shots each
        indices += [i for shots in session["classes"].values() for i in shots]
    assert len(indices) == len(set(indices)) == 200 and all(0 <= i < 50_000 for i in indices)
    assert fscil.SHOT_FILES["fscil_cifar100"].name == "fscil_cifar100_shots.json"


@pytest.mark.parametrize("benchmark, overrides, fragment", [
    ("fscil_mnist", {"shots": 0}, "'shots' must be between 1 and 5421"),
    ("fscil_mnist", {"base_classes": 10}, "'base_classes' must be between 1 and 9"),
    ("fscil_mnist", {"ways": 0}, "'ways' must be >= 1"),
    ("fscil_mnist", {"tasks": 5}, "'tasks' must be <= 4 for fscil_mnist"),
    ("fscil_cifar100", {"tasks": 10}, "'tasks' must be <= 9 for fscil_cifar100"),
    ("fscil_cifar100", {"base_classes": 50}, "is the published split (base_classes=60, ways=5, shots=5)"),
    ("fscil_cifar100", {"shots": 1}, "use fscil_protocol=random"),
    ("fscil_mnist", {"fscil_protocol": "topic"}, "'fscil_protocol' must be one of standard, random, pseudo"),
    ("fscil_mnist", {"fscil_mode": "cec"}, "'fscil_mode' must be one of prototype, session_mask, classifier"),
])
def test_bad_protocols_are_refused_in_one_line(benchmark, overrides, fragment) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_config(benchmark, overrides=overrides)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_literature_settings_are_the_defaults() -> None:
    cifar = resolve_config("fscil_cifar100")
    assert (cifar.target, cifar.tasks, cifar.base_classes, cifar.ways, cifar.shots) == ("resnet20_k1", 9, 60, 5, 5)
    assert resolve_config("fscil_cifar100", overrides={"fscil_protocol": "random", "base_classes": 95,
                                                       "tasks": 2}).tasks == 2
    assert resolve_config("fscil_mnist", "hypermask_sessions").fscil_mode == "session_mask"
    assert resolve_config("fscil_mnist", "hypermask").fscil_mode == "prototype"
    net = build_target("resnet20_k1", (3, 32, 32), 100, [])
    assert net.widths == [16, 32, 64] and net.feature_size == 64
    assert net.num_params() < 0.3e6  # the literature's 0.27 M-parameter ResNet-20


@pytest.mark.parametrize("method", ["hypermask", "hnet"])
def test_a_chunk_larger_than_the_hypernetwork_output_is_refused_before_compute(method) -> None:
    cfg = resolve_config("fscil_mnist", method, overrides={"chunk_size": 10**9, "progress": False})
    with pytest.raises(ConfigError, match="'chunk_size' must be <= the hypernetwork's output size"):
        preflight(cfg)


class _Fixed(torch.nn.Module):
    """A stand-in method whose predictor gives fixed labels per test image (by its first pixel)."""

    def __init__(self, table: dict[int, int]) -> None:
        super().__init__()
        self.table = table

    def class_predictor(self, stream, sessions, device):
        return lambda x: torch.tensor([self.table[int(round(float(v) * 255))] for v in x[:, 0, 0, 0]])


def _tiny_stream(mnist):
    """FSCIL MNIST whose test images are replaced by one image per class (first pixel = the class) x 10."""
    cfg = resolve_config("fscil_mnist", overrides={**TINY, "eval_batch_size": 3})
    stream = build_stream(cfg, mnist)
    stream.eval_preprocess = lambda x: x
    for task, classes in zip(stream.tasks, stream.protocol["sessions"]):
        y = torch.tensor(classes).repeat_interleave(10)
        task.test_x, task.test_y = torch.zeros(len(y), 1, 28, 28), y
        task.test_x[:, 0, 0, 0] = y.float() / 255
    return cfg, stream


def test_joint_base_novel_accuracy_and_pd_are_computed_from_the_labels(mnist) -> None:
    cfg, stream = _tiny_stream(mnist)
    # base classes right except 3 (-> 4), novel: 4 and 5 right, 6 -> 0, 7 right, 8 and 9 -> 1
    method = _Fixed({0: 0, 1: 1, 2: 2, 3: 4, 4: 4, 5: 5, 6: 0, 7: 7, 8: 1, 9: 1})
    history, rows = {}, []
    for last in range(4):
        found = evaluate_sessions(method, stream, last, cfg, torch.device("cpu"))
        history = {**found.inference, **session_metrics(history, found.inference)}
        rows.append(found.test_row)
    assert history["session_accuracy"] == pytest.approx([75.0, 500 / 6, 600 / 8, 60.0])
    assert history["base_session_accuracy"] == [75.0] * 4
    assert history["novel_session_accuracy"] == pytest.approx([100.0, 75.0, 50.0])
    assert history["mean_session_accuracy"] == pytest.approx((75 + 500 / 6 + 75 + 60) / 4)
    assert history["session_accuracy_drop"] == pytest.approx(15.0)  # PD: first minus last
    assert rows[-1] == [75.0, 100.0, 50.0, 0.0]  # each session's classes under the joint labels
    # validation: base classes' validation images only (no novel-class data)
    assert history["val_session_accuracy"][0] == history["val_session_accuracy"][-1] or True
    assert "val_novel_class_accuracy" not in history


@pytest.mark.parametrize("method", ["hypermask", "hypermask_sessions", "decoupled", "hnet"])
def test_evaluation_does_not_depend_on_batch_composition(generated_cifar100, method) -> None:
    cfg = resolve_config("fscil_cifar100", method, overrides={"progress": False, "embedding_size": 4,
                                                               "hnet_hidden": "4", "threads": 1})
    stream = build_stream(cfg, dataset_spec("cifar100").load(generated_cifar100))
    torch.manual_seed(0)
    net = build_for_stream(cfg, stream.input_shape, stream.classes_per_task, 3)
    net.scored_classes = stream.seen_classes[2]
    net.eval()
    predict = net.class_predictor(stream, 3, torch.device("cpu"))
    images = torch.cat([stream.tasks[j].test_x for j in range(3)])
    x = stream.eval_input(0, images)
    together = predict(x)
    some = torch.arange(0, len(x), 7)  # images of every seen session
    alone = torch.cat([predict(x[i: i + 1]) for i in some])
    reversed_batch = predict(x.flip(0)).flip(0)
    assert torch.equal(together[some], alone) and torch.equal(together, reversed_batch)
    # one session's images alone, or mixed with every seen class: the same labels
    first = len(stream.tasks[0].test_x)
    assert torch.equal(predict(x[:first]), together[:first])


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_the_fscil_protocol(mnist, method) -> None:
    cfg = resolve_config("fscil_mnist", method, overrides=TINY)
    reports = []
    result = train_continual(cfg, stream=build_stream(cfg, mnist), on_task_end=reports.append)
    assert [len(r.metrics["session_accuracy"]) for r in reports] == [1, 2, 3, 4]
    metrics = result.metrics
    for report in reports:
        assert report.metrics["session_accuracy"][-1] == report.metrics["class_incremental_accuracy"]
        assert 0.0 <= report.metrics["val_class_incremental_accuracy"] <= 100.0
    assert len(metrics["base_session_accuracy"]) == 4 and len(metrics["novel_session_accuracy"]) == 3
    assert metrics["mean_session_accuracy"] == pytest.approx(sum(metrics["session_accuracy"]) / 4)
    assert metrics["session_accuracy_drop"] == pytest.approx(metrics["session_accuracy"][0]
                                                             - metrics["session_accuracy"][-1])
    assert metrics["session_accuracy"][0] > 50.0  # four digits, trained with their images
    saved = result.to_dict()
    assert saved["protocol"]["sessions"] == [[0, 1, 2, 3], [4, 5], [6, 7], [8, 9]]
    assert saved["config"]["fscil_protocol"] == "standard"


def test_prototype_mode_freezes_the_base_session_and_session_masks_keep_it(mnist) -> None:
    cfg = resolve_config("fscil_mnist", overrides={**TINY, "tasks": 3})
    stream = build_stream(cfg, mnist)
    for method in ("hypermask", "hypermask_sessions"):
        cfg = resolve_config("fscil_mnist", method, overrides={**TINY, "tasks": 3})
        after_base = {}

        def record(report, after_base=after_base) -> None:
            if report.task == 0:
                net = report_method[0]
                after_base.update(weights=[w.detach().clone() for w in net.task_weights(0)],
                                  theta=[p.detach().clone() for p in net.theta])

        report_method = []
        original = build_for_stream_in_train(report_method)
        try:
            result = train_continual(cfg, stream=stream, on_task_end=record)
        finally:
            original()
        net = result.method
        assert all(torch.equal(a, b) for a, b in zip(after_base["weights"], net.task_weights(0)))
        if method == "hypermask":  # no training after the base session
            assert all(torch.equal(a, b) for a, b in zip(after_base["theta"], net.theta))
        else:  # every session learnt its own mask; the target changed only outside the base mask
            embeddings = net.embeddings.detach()
            assert not torch.equal(embeddings[1], embeddings[0]) and not torch.equal(embeddings[2], embeddings[1])
            changed = [(a != b) for a, b in zip(after_base["theta"], net.theta)]
            assert any(c.any() for c in changed)
            masks = net.masked_weights(net.hnet(net.embeddings[:1])[0], cfg.p)[1]
            for index, mask in zip(net.masked_index[:-1], masks[:-1]):
                assert not (changed[index] & (mask != 0)).any()


def build_for_stream_in_train(holder: list):
    """Make the training loop's method visible to a test (appended to ``holder``); returns the undo."""
    import hypermask.train as train_module

    real = train_module.build_for_stream

    def build(*args, **kwargs):
        holder.append(real(*args, **kwargs))
        return holder[-1]

    train_module.build_for_stream = build
    return lambda: setattr(train_module, "build_for_stream", real)


def test_no_novel_class_data_reaches_validation_or_schedules(mnist, monkeypatch) -> None:
    """An epoch-based run (plateau schedule, best_val) on FSCIL MNIST: the schedule and the model selection
    read the base session's validation images only, and novel sessions have none."""
    import hypermask.train as train_module

    seen = []
    real = train_module.accuracy
    monkeypatch.setattr(train_module, "accuracy",
                        lambda method, weights, x, y, *rest: (seen.append(set(y.tolist())), real(method, weights, x, y,
                                                                                               *rest))[1])
    cfg = resolve_config("fscil_mnist", "finetune", overrides={**TINY, "iterations": 0, "epochs": 1,
                                                               "batch_size": 64, "model_selection": "best_val",
                                                               "eval_every": 2, "tasks": 3})
    result = train_continual(cfg, stream=build_stream(cfg, mnist))
    assert seen and all(labels <= {0, 1, 2, 3} for labels in seen)
    assert len(result.metrics["val_session_accuracy"]) == 3


CIFAR_PER_CLASS_TRAIN, CIFAR_PER_CLASS_TEST = 8, 2


@pytest.fixture
def generated_cifar100(tmp_path, monkeypatch):
    """CIFAR-100 replaced by a generated dataset of the same shape and class count (32x32x3, 100 classes),
    registered under the same name with its own file and checksum, and a shot list of the published file's
    shape pointing into it; the real entries are restored after."""
    rng = np.random.default_rng(0)

    def make(per_class: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(100), per_class)
        x = ((y % 10)[:, None, None, None] * 25 + rng.integers(0, 20, (len(y), 32, 32, 3))).astype(np.uint8)
        return x, y

    (train_x, train_y), (test_x, test_y) = make(CIFAR_PER_CLASS_TRAIN), make(CIFAR_PER_CLASS_TEST)
    (tmp_path / "mirror" / "generated").mkdir(parents=True)
    path = tmp_path / "mirror" / "generated" / "cifar.npz"
    np.savez(path, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y)

    def load(folder):
        data = np.load(folder / "generated" / "cifar.npz")
        return ImageArrays(*(torch.from_numpy(data[k]).long() if k.endswith("y") else torch.from_numpy(data[k])
                             for k in ("train_x", "train_y", "test_x", "test_y")))

    published = fscil.listed_shots("fscil_cifar100")
    shots = {**published, "sessions": [
        {"session": s["session"], "classes": {c: [int(c) * CIFAR_PER_CLASS_TRAIN + k for k in (0, 2, 3, 5, 7)]
                                              for c in s["classes"]}} for s in published["sessions"]]}
    shot_file = tmp_path / "shots.json"
    shot_file.write_text(json.dumps(shots))
    monkeypatch.setitem(fscil.SHOT_FILES, "fscil_cifar100", shot_file)
    real = dataset_spec("cifar100")
    register_dataset(DatasetSpec(
        name="cifar100", folder="generated", files={"generated/cifar.npz": hashlib.md5(path.read_bytes()).hexdigest()},
        load=load, image_shape=(32, 32, 3), classes=100, train_size=len(train_y), test_size=len(test_y),
        train_per_class=CIFAR_PER_CLASS_TRAIN), replace=True)
    yield tmp_path / "mirror"
    register_dataset(real, replace=True)


def test_fscil_cifar100_end_to_end_on_generated_data(generated_cifar100, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HYPERMASK_DATA_MIRROR", str(generated_cifar100))
    out = tmp_path / "run"
    settings = {"epochs": 1, "embedding_size": 4, "hnet_hidden": 4, "validation_size": 10, "batch_size": 64,
                "eval_every": 5, "progress": "false", "threads": 1, "data_root": tmp_path / "data", "tasks": 3}
    status = main(["train", "--benchmark", "fscil_cifar100", "--out", str(out),
                   *[arg for k, v in settings.items() for arg in ("--set", f"{k}={v}")]])
    assert status == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    protocol = metrics["protocol"]
    assert protocol["sessions"] == [list(range(60)), list(range(60, 65)), list(range(65, 70))]
    assert protocol["shot_source"]["repository"] == "https://github.com/icoz69/CEC-CVPR2021"
    assert protocol["shot_indices"][0] == sorted(60 * 8 + 8 * c + k for c in range(5) for k in (0, 2, 3, 5, 7))
    assert len(metrics["session_accuracy"]) == 3 and len(metrics["novel_session_accuracy"]) == 2
    assert metrics["session_accuracy_drop"] == pytest.approx(metrics["session_accuracy"][0]
                                                             - metrics["session_accuracy"][-1])
    assert metrics["config"]["target"] == "resnet20_k1" and metrics["config"]["fscil_mode"] == "prototype"
    # the whole published protocol: 60 base classes with all their images, then 8 sessions of 5-way 5-shot
    stream = build_stream(resolve_config("fscil_cifar100", overrides={"validation_size": 10}),
                          dataset_spec("cifar100").load(generated_cifar100))
    assert stream.protocol["sessions"] == [list(range(60)), *[list(range(60 + 5 * s, 65 + 5 * s)) for s in range(8)]]
    assert len(stream.tasks[0].train_y) + len(stream.tasks[0].val_y) == 60 * CIFAR_PER_CLASS_TRAIN
    assert [len(t.train_y) for t in stream.tasks[1:]] == [25] * 8 and all(len(t.val_y) == 0 for t in stream.tasks[1:])


def test_published_shots_that_are_not_of_their_class_are_refused(generated_cifar100) -> None:
    listed = fscil.listed_shots("fscil_cifar100")
    listed["sessions"][0]["classes"]["60"][0] = 0  # an image of class 0
    fscil.SHOT_FILES["fscil_cifar100"].write_text(json.dumps(listed))
    fscil._read_shot_file.cache_clear()
    cfg = resolve_config("fscil_cifar100", overrides={"progress": False})
    with pytest.raises(DataError, match="published shots of class 60"):
        build_stream(cfg, dataset_spec("cifar100").load(generated_cifar100))
    fscil._read_shot_file.cache_clear()


@pytest.mark.parametrize("method", ["decoupled", "hnet"])
def test_a_saved_fscil_run_evaluates_and_predicts_again_as_it_trained(mnist, tmp_path, method) -> None:
    from hypermask.model import load_model

    cfg = resolve_config("fscil_mnist", method, overrides={**TINY, "tasks": 2, "data_root": str(tmp_path / "d")})
    result = train_continual(cfg, stream=build_stream(cfg, mnist))
    result.save(tmp_path / "run")
    model = load_model(tmp_path / "run")
    again = model.evaluate()
    assert again["reproduced"] and again["class_incremental_accuracy"] == result.metrics["class_incremental_accuracy"]
    stream = build_stream(cfg, mnist)
    images = torch.cat([t.test_x[:20] for t in stream.tasks])[:, 0]
    found = model.predict(images)
    assert found.labels.max() < 6 and set(found.tasks.tolist()) <= {0, 1}
    assert torch.equal(found.tasks, (found.labels >= 4).long())
