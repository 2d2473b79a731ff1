"""Run a .tflite on an emulated phone CPU: qemu-aarch64 + the aarch64 LiteRT, one process per batch.

Numerics are the phone's (the same XNNPACK kernels the ARM build picks for that CPU's features);
latency is not (emulation is 500-800x slower than native), so nothing here times anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..errors import VitdeployError
from ..formats import FORMATS
from .environment import ArmEnvironment, check_cpu

WORKER = Path(__file__).with_name("worker.py")
TIMEOUT_S = 3600  # a deep model on many images under emulation is minutes, never an hour


def run_model(env: ArmEnvironment, model: bytes | Path, inputs: np.ndarray, *, cpu: str, threads: int = 2,
              xnnpack: bool = True, all_outputs: bool = False) -> tuple[np.ndarray | list[np.ndarray], dict]:
    """Raw outputs (the model's output dtype) for ``inputs`` (the model's input dtype, N x model shape):
    the first output, or with ``all_outputs`` every output in the model's order."""
    check_cpu(cpu)
    with tempfile.TemporaryDirectory(prefix="vitdeploy-arm-") as tmp:
        tmp = Path(tmp)
        model_path = tmp / f"model{FORMATS['tflite'].suffix}"
        model_path.write_bytes(model if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes())
        np.save(tmp / "inputs.npy", np.ascontiguousarray(inputs))
        request = {"model": str(model_path), "inputs": str(tmp / "inputs.npy"), "outputs": str(tmp / "outputs.npz"),
                   "threads": int(threads), "xnnpack": bool(xnnpack)}
        report = _run_worker(env, cpu, request, tmp)
        with np.load(tmp / "outputs.npz") as stored:
            outputs = [stored[f"arr_{k}"] for k in range(len(stored.files))]
        return (outputs if all_outputs else outputs[0]), report


def smoke_test(env: ArmEnvironment, *, cpu: str = "cortex-a76") -> dict:
    """Import numpy and LiteRT under emulation; the guest's report, or a one-line error."""
    with tempfile.TemporaryDirectory(prefix="vitdeploy-arm-") as tmp:
        return _run_worker(env, cpu, {"selftest": True}, Path(tmp))


def _run_worker(env: ArmEnvironment, cpu: str, request: dict, tmp: Path) -> dict:
    (tmp / "request.json").write_text(json.dumps(request))
    command = [str(env.qemu), "-cpu", cpu, "-L", str(env.rootfs), str(env.python), "-I", "-S",
               str(WORKER), str(env.site), str(tmp / "request.json")]
    # A bare environment: the host's PYTHONPATH/PYTHONHOME must not leak into the guest Python.
    guest_env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(tmp),
                 "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    try:
        proc = subprocess.run(command, capture_output=True, text=True, env=guest_env, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise VitdeployError(f"the emulated {cpu} run took over {TIMEOUT_S} s; use fewer images") from None
    except OSError as e:
        raise VitdeployError(f"cannot start {env.qemu} ({e.strerror}); run `vitdeploy setup arm --force`") from None
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        tail = [line for line in proc.stderr.strip().splitlines() if line.strip()][-1:] or [f"exit {proc.returncode}"]
        raise VitdeployError(f"LiteRT on the emulated {cpu} failed: {tail[0].strip()}")
    report = json.loads(lines[-1])
    report["cpu"] = cpu
    return report
