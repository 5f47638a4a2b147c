"""The CPU code paths a run's numbers come from: pinned to AVX2 (``portable``) or the machine's best (``native``).

ATen picks its CPU kernels (``ATEN_CPU_CAPABILITY``), MKL its code branch (``MKL_CBWR``) and oneDNN its
instruction set (``ONEDNN_MAX_CPU_ISA``) once per process, at their first use, from the environment; the
choices round differently, so the same run gives other numbers on a CPU with AVX-512 than on one without.
:func:`pin` sets them before that first use and checks the path the process then runs; ``portable`` is the
AVX2 path every x86-64 CPU with AVX2 has, ``native`` leaves the machine's (or the environment's) choice.
Elsewhere than on x86-64 nothing is pinned: the path is the build's own for that architecture. torch is
imported on first use only (the pipeline's driver reads :func:`environment` without it).
"""

from __future__ import annotations

import ctypes
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path

from hypermask.config import NUMERICS, ConfigError

PORTABLE, NATIVE = NUMERICS
MARKER = "HYPERMASK_NUMERICS"  # which setting put the variables below into the environment
PORTABLE_CAPABILITY = "avx2"
X86_64 = ("x86_64", "amd64")
# AVX2 kernels, MKL's strict AVX2 branch (the same result whatever the thread count, for what MKL covers),
# oneDNN at most AVX2
PORTABLE_VARIABLES = {"ATEN_CPU_CAPABILITY": PORTABLE_CAPABILITY, "MKL_CBWR": "AVX2,STRICT",
                      "ONEDNN_MAX_CPU_ISA": "AVX2"}
PATH_FORMAT = re.compile(r"[a-z0-9_]+/aten=[a-z0-9_]+/mkl=[A-Za-z0-9_,]+/onednn=[A-Za-z0-9_]+")  # describe()'s


def machine() -> str:
    """This machine's architecture, lower case (``x86_64``, ``aarch64``, ...)."""
    return platform.machine().lower()


def portable_environment() -> dict[str, str]:
    """The variables that pin the portable path on this machine (:data:`PORTABLE_VARIABLES`; none off x86-64)."""
    return dict(PORTABLE_VARIABLES) if machine() in X86_64 else {}


def environment(setting: str) -> dict[str, str]:
    """What a new process (a Ray worker) starts with so that ``setting`` holds before its first operation."""
    return {**portable_environment(), MARKER: PORTABLE} if setting == PORTABLE else {MARKER: NATIVE}


@dataclass(frozen=True)
class NumericPath:
    """The setting and the code paths it gave: ATen's capability, MKL's branch, oneDNN's limit."""

    setting: str
    machine: str
    capability: str
    mkl: str
    onednn: str

    def describe(self) -> str:
        """One compact string, as recorded in the run's configuration (``numeric_path``)."""
        return f"{self.machine}/aten={self.capability}/mkl={self.mkl}/onednn={self.onednn}"


_pinned: NumericPath | None = None  # what this process runs, once pinned


def _apply(setting: str) -> None:
    """Put ``setting``'s variables into this process's environment. ``portable`` overrides any value the
    user set; ``native`` removes only what an earlier ``portable`` pinning (an inherited one) put there."""
    pinned = portable_environment()
    if setting == PORTABLE:
        os.environ.update(pinned)
    elif os.environ.get(MARKER) == PORTABLE:
        for key, value in pinned.items():
            if os.environ.get(key) == value:
                del os.environ[key]
    os.environ[MARKER] = setting


def _variable(name: str) -> str:
    """An environment variable's value as recorded in a path (letters, digits, '_' and ','), ``auto`` unset."""
    return re.sub(r"[^A-Za-z0-9_,]", "", os.environ.get(name, "")) or "auto"


def active_capability() -> str:
    """The ATen CPU capability this process runs (lower case); asking fixes it, as a first operation does."""
    import torch

    return torch.backends.cpu.get_cpu_capability().lower()


def cpu_flags() -> set[str] | None:
    """The x86 feature flags of this CPU (None when /proc/cpuinfo cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.partition(":")[2].split()) or None


def mkl_ignored_branch() -> bool:
    """True when MKL already chose its branch without ``MKL_CBWR`` (it ran before the pinning). Read through
    MKL's own query in torch's library where it is exported; False where it is not."""
    if "MKL_CBWR" not in os.environ:
        return False
    import torch

    try:
        library = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
        query = library.mkl_serv_cbwr_get
    except (OSError, AttributeError):
        return False
    query.restype, query.argtypes = ctypes.c_int, [ctypes.c_int]
    return query(-1) == 1  # 1: no branch set, the automatic choice


def has_avx2() -> bool:
    """Whether this CPU has AVX2 and FMA, as ATen's AVX2 kernels need (True when the flags cannot be read)."""
    flags = cpu_flags()
    return flags is None or {"avx2", "fma"} <= flags


def _ran_before(path: NumericPath) -> str:
    """Which library already chose another path than ``portable``'s ('' when none did, or nothing is pinned here)."""
    if path.setting != PORTABLE or path.machine not in X86_64:
        return ""
    if path.capability != PORTABLE_CAPABILITY:
        return f"ATen already runs its {path.capability} kernels"
    return "MKL already runs its automatic branch" if mkl_ignored_branch() else ""


def pin_if_open(setting: str) -> NumericPath | None:
    """:func:`pin`, or None where this process already runs another path (it goes on with that one)."""
    try:
        return pin(setting)
    except ConfigError:
        return None


def pin(setting: str) -> NumericPath:
    """Pin this process to ``setting`` (before its first torch operation) and return the path it runs.

    Raises :class:`ConfigError` (one line) when the process already runs another path: an operation ran
    before pinning, or an earlier pinning chose the other setting.
    """
    global _pinned
    if setting not in NUMERICS:
        raise ConfigError(f"setting 'numerics' must be one of {', '.join(NUMERICS)}, got {setting!r}")
    if _pinned is not None and _pinned.setting != setting:
        raise ConfigError(f"setting 'numerics' is '{setting}' but this process already runs the "
                          f"{_pinned.setting} path ({_pinned.describe()}); use a new process")
    if _pinned is not None:
        return _pinned
    if setting == PORTABLE and machine() in X86_64 and not has_avx2():
        raise ConfigError("setting 'numerics' is 'portable' (AVX2) but this CPU has no AVX2; use numerics=native")
    _apply(setting)
    path = NumericPath(setting, machine(), active_capability(), _variable("MKL_CBWR"), _variable("ONEDNN_MAX_CPU_ISA"))
    problem = _ran_before(path)
    if problem:
        raise ConfigError(f"setting 'numerics' is '{setting}' but {problem}: a torch operation ran in this "
                          "process before hypermask.numerics.pin; pin first, or use numerics=native")
    _pinned = path
    return path
