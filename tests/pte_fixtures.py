"""Tiny real ExecuTorch programs for tests: an NHWC pixel classifier lowered to XNNPACK or Core ML.

``to_edge_transform_and_lower`` with executorch's own partitioners (the Core ML one lowers on Linux
too: coremltools builds the ML program; only running it needs Apple hardware). A few seconds each.
"""

from __future__ import annotations

from pathlib import Path

NUM_CLASSES = 5


def tiny_pixel_model(size: int = 8):
    """[1, size, size, 3] RGB pixels 0..255 -> [1, NUM_CLASSES] logits, seeded (what the helpers feed)."""
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.fc = torch.nn.Linear(4, NUM_CLASSES)

        def forward(self, x):
            x = x.permute(0, 3, 1, 2) / 255.0
            return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))

    torch.manual_seed(0)
    return Tiny().eval()


def write_tiny_pte(path: Path, *, size: int = 8, backend: str = "xnnpack", metadata: dict | str | None = None) -> Path:
    """Export, lower with ``backend`` (xnnpack | coreml), write ``path``.

    ``metadata``: stored in the program as ``vitdeploy convert`` stores it (a dict, through
    ``formats.executorch.constant_methods``), or a str returned verbatim by the metadata method (to make
    damaged metadata); None: no metadata method, as in a .pte written by anything but vitdeploy.
    """
    import contextlib
    import io

    import torch
    from executorch.exir import to_edge_transform_and_lower

    from vitdeploy.formats.executorch import METADATA_METHOD, constant_methods

    if backend == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner as Partitioner
    else:
        from executorch.backends.apple.coreml.partition import CoreMLPartitioner as Partitioner
    methods = None
    if isinstance(metadata, dict):
        methods = constant_methods(metadata)
    elif metadata is not None:
        methods = {METADATA_METHOD: metadata}
    ep = torch.export.export(tiny_pixel_model(size), (torch.rand(1, size, size, 3) * 255,))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        buffer = to_edge_transform_and_lower(ep, partitioner=[Partitioner()],
                                             constant_methods=methods).to_executorch().buffer
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer)
    return path


def reference_logits(path: Path, x):
    """The program run by the host ExecuTorch runtime (what the emulator must match)."""
    import numpy as np
    import torch
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(Path(path).read_bytes()).load_method("forward")
    return np.asarray(method.execute([torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))])[0])
