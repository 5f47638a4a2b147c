"""CPU code paths: under the default (portable) a run's numbers do not depend on the CPU's best path or on
ATEN_CPU_CAPABILITY; native runs the machine's path and is recorded as such; a resume under another path is
refused, as is a process that already ran an operation on another path."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hypermask.checkpoint import CheckpointError, load_checkpoint
from hypermask.config import Config, ConfigError, resolve_config, result_settings
from hypermask.numerics import PORTABLE, X86_64, cpu_flags, environment, machine, pin, portable_environment
from hypermask.runtime import resolve_runtime

pytestmark = pytest.mark.skipif(machine() not in X86_64, reason="the pinned paths are x86-64's")

TINY = ("--benchmark", "split_mnist", "--set", "tasks=2", "--set", "iterations=40", "--set", "train_subset=300",
        "--set", "target_hidden=100,100", "--set", "threads=1", "--set", "progress=false")
NUMERIC_VARIABLES = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "HYPERMASK_NUMERICS")


def _environment(**variables: str) -> dict[str, str]:
    """This process's environment without the numeric variables the test process pinned, plus ``variables``."""
    env = {k: v for k, v in os.environ.items() if k not in NUMERIC_VARIABLES}
    return {**env, **variables}


def _command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hypermask.cli", "train", *TINY, *extra, "--out", str(out)]


def _train(out: Path, *extra: str, **variables: str) -> subprocess.CompletedProcess:
    return subprocess.run(_command(out, *extra), capture_output=True, text=True, env=_environment(**variables),
                          timeout=600)


def _numbers(out: Path) -> dict:
    """metrics.json without its timings."""
    metrics = json.loads((out / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k not in ("seconds_per_step", "elapsed_s")}


def _capabilities() -> list[str]:
    """The ATEN_CPU_CAPABILITY values this CPU can run (avx512 only where it has AVX-512)."""
    flags = cpu_flags() or set()
    has_avx512 = {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags
    return ["avx2", "default"] + (["avx512"] if has_avx512 else [])


NATIVE = "native"


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory, mirror: Path) -> dict[str, Path]:
    """The same tiny run under every ATEN_CPU_CAPABILITY the CPU can run, default numerics; and under
    ``native`` numerics with ATen's default kernels (key ``native``). The runs are separate processes,
    started together."""
    root = tmp_path_factory.mktemp("numerics")

    def start(name: str, capability: str, *extra: str) -> subprocess.Popen:
        return subprocess.Popen(_command(root / name, *extra), env=_environment(ATEN_CPU_CAPABILITY=capability),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    started = {capability: start(capability, capability) for capability in _capabilities()}
    started[NATIVE] = start(NATIVE, "default", "--set", "numerics=native")
    for name, process in started.items():
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, f"{name}: {err}"
    return {name: root / name for name in started}


@pytest.fixture(scope="module")
def portable_runs(tiny_runs: dict[str, Path]) -> dict[str, Path]:
    """The tiny runs under default numerics, by ATEN_CPU_CAPABILITY."""
    return {name: out for name, out in tiny_runs.items() if name != NATIVE}


def test_portable_numbers_do_not_depend_on_the_cpu_capability(portable_runs: dict[str, Path]) -> None:
    numbers = {capability: _numbers(out) for capability, out in portable_runs.items()}
    first = numbers["avx2"]
    assert first["config"]["numerics"] == "portable"
    assert first["config"]["numeric_path"].startswith("x86_64/aten=avx2/mkl=AVX2,STRICT/onednn=AVX2")
    for capability, found in numbers.items():
        assert found == first, capability


def test_native_is_recorded_as_the_path_it_ran(tiny_runs: dict[str, Path], portable_runs: dict[str, Path]) -> None:
    config = _numbers(tiny_runs[NATIVE])["config"]
    assert config["numerics"] == "native" and config["numeric_path"] == "x86_64/aten=default/mkl=auto/onednn=auto"
    assert config["numeric_path"] != _numbers(portable_runs["avx2"])["config"]["numeric_path"]


def test_a_resume_under_another_numeric_path_is_refused(portable_runs: dict[str, Path]) -> None:
    out = portable_runs["avx2"]
    done = _train(out, "--set", "numerics=native")
    assert done.returncode == 2 and "numerics='portable' there, 'native' now" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    saved = Config.from_dict(_numbers(out)["config"])
    moved = dataclasses.replace(saved, numeric_path="x86_64/aten=avx512/mkl=auto/onednn=auto")  # another machine
    with pytest.raises(CheckpointError, match="numeric_path="):
        load_checkpoint(out / "checkpoint", moved)
    assert load_checkpoint(out / "checkpoint", saved) is not None  # the same path resumes


def test_evaluating_a_saved_run_takes_its_numeric_path(portable_runs: dict[str, Path], tmp_path: Path) -> None:
    """``hypermask evaluate`` in a fresh process on another CPU path measures what the run measured."""
    command = [sys.executable, "-m", "hypermask.cli", "evaluate", "--model", str(portable_runs["avx2"]),
               "--out", str(tmp_path / "eval")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env=_environment(ATEN_CPU_CAPABILITY=_capabilities()[-1]))
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["reproduced"] is True


def test_an_operation_before_pinning_is_refused_in_one_line() -> None:
    code = ("import torch; torch.ones(3).sum()\n"
            "from hypermask.config import resolve_config\n"
            "from hypermask.runtime import preflight\n"
            "preflight(resolve_config('split_mnist', overrides={'progress': False}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_environment(ATEN_CPU_CAPABILITY="default"), timeout=300)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode != 0
    assert last.startswith("hypermask.config.ConfigError: setting 'numerics' is 'portable' but ATen already runs "
                           "its default kernels")


def test_importing_and_resolving_settings_leave_the_path_open() -> None:
    """The command line pins after reading its settings: nothing before runs a torch operation."""
    code = ("import os, torch, hypermask.cli, hypermask.train, hypermask.runtime\n"
            "from hypermask.config import resolve_config\n"
            "resolve_config('permuted_mnist', overrides={'tasks': 2})\n"
            "os.environ['ATEN_CPU_CAPABILITY'] = 'default'\n"
            "print(torch.backends.cpu.get_cpu_capability())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_environment(),
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "DEFAULT"


def test_a_process_runs_one_path() -> None:
    assert pin(PORTABLE).setting == PORTABLE  # the test process was pinned at start (conftest)
    with pytest.raises(ConfigError, match=r"^setting 'numerics' is 'native' but this process already runs the "
                                          r"portable path \(x86_64/aten=avx2/"):
        pin("native")
    cfg = resolve_config("split_mnist", overrides={"numeric_path": "x86_64/aten=avx512/mkl=auto/onednn=auto"})
    with pytest.raises(ConfigError, match=r"^setting 'numeric_path' is 'x86_64/aten=avx512/mkl=auto/onednn=auto' "
                                          r"but this process runs 'x86_64/aten=avx2/"):
        resolve_runtime(cfg)


def test_numerics_is_a_validated_result_setting() -> None:
    cfg = resolve_config("split_mnist")
    assert cfg.numerics == "portable" and {"numerics", "numeric_path"} <= set(result_settings(cfg))
    assert resolve_runtime(cfg).numeric_path.startswith("x86_64/aten=avx2/")
    with pytest.raises(ConfigError, match=r"^setting 'numerics' must be one of portable, native, got 'fast'$"):
        resolve_config("split_mnist", overrides={"numerics": "fast"})


def test_worker_environment_pins_portable_and_native_undoes_it() -> None:
    assert environment("portable") == {**portable_environment(), "HYPERMASK_NUMERICS": "portable"}
    assert portable_environment()["ATEN_CPU_CAPABILITY"] == "avx2"
    code = ("import os; from hypermask.numerics import pin; print(pin('native').describe(), "
            "os.environ.get('ATEN_CPU_CAPABILITY'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_environment(**environment("portable")), timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("/mkl=auto/onednn=auto None")
