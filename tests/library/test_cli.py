"""The ``hypermask`` command-line contract."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hypermask.cli import main


def _hypermask(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hypermask.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


@pytest.mark.parametrize("args, fragment", [
    (["--benchmark", "cifar10"], "unknown benchmark 'cifar10'"),
    (["--benchmark", "split_mnist", "--method", "ewc"], "unknown method 'ewc'"),
    (["--benchmark", "split_mnist", "--set", "gamma=1"], "unknown setting 'gamma'"),
    (["--benchmark", "split_mnist", "--set", "p=100"], "setting 'p' must be a percentage in [0, 100)"),
    (["--benchmark", "split_mnist", "--set", "p=-1"], "setting 'p'"),
    (["--benchmark", "split_mnist", "--set", "beta=-0.1"], "setting 'beta' must be >= 0"),
    (["--benchmark", "split_mnist", "--set", "lambda=-1"], "setting 'lambda' must be >= 0"),
    (["--benchmark", "split_mnist", "--set", "lr=fast"], "setting 'lr' must be a number"),
    (["--benchmark", "split_mnist", "--set", "iterations=1.5"], "setting 'iterations' must be an integer"),
    (["--benchmark", "split_mnist", "--seed", "abc"], "setting 'seed' must be an integer"),
    (["--benchmark", "split_mnist", "--set", "p"], "--set expects KEY=VALUE"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, args, fragment) -> None:
    out = tmp_path / "out"
    assert main(["train", *args, "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], lines
    assert not out.exists()


def test_the_console_command_exits_2_on_bad_input(tmp_path) -> None:
    done = _hypermask("train", "--benchmark", "cifar10", "--out", str(tmp_path / "out"))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("hypermask: error: unknown benchmark 'cifar10'")
    assert not (tmp_path / "out").exists()


def test_train_writes_metrics_and_models(tmp_path, mirror) -> None:
    out = tmp_path / "run"
    done = _hypermask("train", "--benchmark", "split_mnist", "--seed", "2", "--set", "tasks=2",
                      "--set", "iterations=20", "--set", "train_subset=500", "--set", "p=40",
                      "--set", "progress=false", "--out", str(out))
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("average_accuracy", "backward_transfer", "forgetting", "accuracy_matrix", "config"):
        assert key in metrics
    assert metrics["config"]["p"] == 40.0 and metrics["config"]["seed"] == 2
    assert len(metrics["accuracy_matrix"]) == 2
    assert metrics["average_accuracy"] == pytest.approx(sum(metrics["accuracy_matrix"][-1]) / 2)
    for name in ("hypernetwork.pt", "embeddings.pt", "target.pt"):
        assert (out / name).is_file()


# ---------------------------------------------------------------- hardening: --out, data, Ctrl-C
TINY = ["--benchmark", "split_mnist", "--set", "tasks=1", "--set", "iterations=5", "--set", "train_subset=100",
        "--set", "progress=false", "--set", "threads=1"]


def _main(capsys, *args: str) -> tuple[int, list[str]]:
    from hypermask.cli import main

    status = main(list(args))
    return status, capsys.readouterr().err.strip().splitlines()


def _snapshot(folder) -> dict:
    return {str(p): (p.stat().st_mtime_ns if p.is_file() else None) for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("make_out, fragment", [
    (lambda t: (t / "file").write_text("x") and t / "file", "is an existing file, not a folder"),
    (lambda t: (t / "f").write_text("x") and t / "f" / "sub", "is a file, not a folder"),
    (lambda t: __import__("pathlib").Path("/proc/hypermask-test/out"), "cannot be created"),
    (lambda t: (t / "o" / "checkpoint" / "checkpoint.pt").mkdir(parents=True) or t / "o", "is not a file"),
    (lambda t: (t / "o").mkdir() or (t / "o" / "metrics.json").write_text('{"x": 1}') and t / "o",
     "is not a metrics file of a hypermask run"),
    (lambda t: (t / "o").mkdir() or (t / "o" / "notes.txt").write_text("mine") and t / "o",
     "holds files of something else (e.g. 'notes.txt')"),
    (lambda t: __import__("pathlib").Path("~no-such-user-hm/out"), "unknown user's home folder"),
])
def test_unusable_out_is_refused_before_compute_and_nothing_changes(tmp_path, capsys, mirror, make_out,
                                                                     fragment) -> None:
    out = make_out(tmp_path)
    before = _snapshot(tmp_path)
    status, lines = _main(capsys, "train", *TINY, "--out", str(out))
    assert status == 2 and len(lines) == 1 and fragment in lines[0], lines
    assert _snapshot(tmp_path) == before


def test_overwrite_allows_a_foreign_folder_and_a_same_config_rerun_is_accepted(tmp_path, capsys, mirror) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "metrics.json").write_text('{"config": {"seed": 99}}')
    status, lines = _main(capsys, "train", *TINY, "--out", str(out))
    assert status == 2 and "different configuration" in lines[0] and "--overwrite" in lines[0]
    assert _main(capsys, "train", *TINY, "--out", str(out), "--overwrite")[0] == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["threads"] >= 1  # the count actually used, never 0
    assert _main(capsys, "train", *TINY, "--out", str(out))[0] == 0  # same configuration: accepted
    status, lines = _main(capsys, "train", *TINY, "--set", "p=10", "--out", str(out))
    assert status == 2 and "p=30.0 there, 10.0 now" in lines[0]


def test_a_second_run_into_a_locked_out_is_refused(tmp_path, capsys, mirror) -> None:
    from hypermask.config import parse_assignments, resolve_config
    from hypermask.outdir import claim_output

    cfg = resolve_config("split_mnist", overrides=parse_assignments(TINY[3::2]))
    with claim_output(tmp_path / "o", cfg):
        status, lines = _main(capsys, "train", *TINY, "--out", str(tmp_path / "o"))
    assert status == 2 and len(lines) == 1 and "is in use by another run" in lines[0]


@pytest.mark.parametrize("root, fragment", [
    ("{tmp}/file", "is an existing file, not a folder"),
    ("~no-such-user-hm/data", "unknown user's home folder"),
    ("/proc/hypermask-test/data", "cannot be created"),
])
def test_unusable_data_roots_are_one_line(tmp_path, capsys, monkeypatch, root, fragment) -> None:
    monkeypatch.delenv("HYPERMASK_DATA_MIRROR", raising=False)
    (tmp_path / "file").write_text("x")
    root = root.format(tmp=tmp_path)
    status, lines = _main(capsys, "prepare", "mnist", "--root", root)
    assert status in (1, 2) and len(lines) == 1 and fragment in lines[0], lines
    if not root.startswith("/proc"):
        status, lines = _main(capsys, "train", *TINY, "--set", f"data_root={root}", "--out", str(tmp_path / "o"))
        assert status == 2 and len(lines) == 1 and fragment in lines[0], lines
    assert not (tmp_path / "o").exists()


def test_ctrl_c_says_where_the_run_stopped_and_the_same_command_resumes(tmp_path, capsys, monkeypatch,
                                                                        mirror) -> None:
    import hypermask.train

    real = hypermask.train.train_continual

    def interrupted_after_first_task(cfg, on_task_end=None, **kwargs):
        def stop(report):
            on_task_end(report)
            raise KeyboardInterrupt  # what Ctrl-C raises, here right after task 1 was saved
        return real(cfg, on_task_end=stop, **kwargs)

    args = ["train", "--benchmark", "split_mnist", "--set", "tasks=2", "--set", "iterations=5",
            "--set", "train_subset=100", "--set", "progress=false", "--set", "threads=1", "--out", str(tmp_path / "o")]
    monkeypatch.setattr(hypermask.train, "train_continual", interrupted_after_first_task)
    status, lines = _main(capsys, *args)
    assert status == 130 and len(lines) == 1, lines
    assert "interrupted after task 1/2" in lines[0] and "run the same command again to resume" in lines[0]
    monkeypatch.setattr(hypermask.train, "train_continual", real)
    assert _main(capsys, *args)[0] == 0
    assert len(json.loads((tmp_path / "o" / "metrics.json").read_text())["accuracy_matrix"]) == 2
