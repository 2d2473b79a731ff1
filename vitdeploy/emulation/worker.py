"""Runs INSIDE the emulated aarch64 Python: one .tflite, a batch of inputs, outputs back.

Only the standard library, numpy and ai_edge_litert are available here (nothing of vitdeploy's), so
this file stands alone. Usage (``vitdeploy.emulation.run`` builds the command)::

    qemu-aarch64 -cpu CPU -L ROOTFS ROOTFS/usr/bin/python3.11 -I worker.py SITE REQUEST.json

REQUEST.json: ``{"model", "inputs" (.npy, the model's own dtype, batch = model batch x chunks),
"outputs" (.npy to write), "threads", "xnnpack"}``; ``{"selftest": true}`` only imports and reports.
The report (versions, CPU features seen by the guest, seconds) is printed as one JSON line.
"""

import json
import sys
import time


def main() -> int:
    site, request_path = sys.argv[1], sys.argv[2]
    sys.path.insert(0, site)
    started = time.time()
    import numpy as np
    from ai_edge_litert import interpreter as litert

    request = json.loads(open(request_path).read())
    report = {"numpy": np.__version__, "features": _cpu_features(), "import_s": round(time.time() - started, 2)}
    if request.get("selftest"):
        print(json.dumps(report))
        return 0
    resolver = (litert.OpResolverType.AUTO if request.get("xnnpack", True)
                else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp = litert.Interpreter(model_path=request["model"], num_threads=int(request.get("threads", 1)),
                                experimental_op_resolver_type=resolver)
    interp.allocate_tensors()
    inp, outs = interp.get_input_details()[0], interp.get_output_details()
    x = np.load(request["inputs"])
    batch = int(inp["shape"][0])
    results = [[] for _ in outs]
    run_started = time.time()
    for start in range(0, len(x), batch):
        interp.set_tensor(inp["index"], np.ascontiguousarray(x[start:start + batch]))
        interp.invoke()
        for k, out in enumerate(outs):
            results[k].append(interp.get_tensor(out["index"]).copy())
    # Every output, in the model's output order (extra outputs are how localization reads block values).
    np.savez(request["outputs"], *[np.concatenate(r) for r in results])
    report.update(run_s=round(time.time() - run_started, 2), images=len(x),
                  delegated=any(op["op_name"] == "DELEGATE" for op in interp._get_ops_details()))
    print(json.dumps(report))
    return 0


def _cpu_features():
    """The ``Features`` line the guest's /proc/cpuinfo shows (what XNNPACK's cpuinfo reads)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.lower().startswith("features"):
                return line.split(":", 1)[1].split()
    except OSError:
        pass
    return []


if __name__ == "__main__":
    sys.exit(main())
