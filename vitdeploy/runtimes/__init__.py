"""Everything vitdeploy can run, one :class:`~vitdeploy.runtimes.base.Runner` per runtime (PyTorch eager, LiteRT,
ExecuTorch, Core ML or the MIL interpreter, an emulated phone CPU); :func:`open_runner` picks the one for a path
(:mod:`vitdeploy.runtimes.open`).

``open_runner``, ``is_artifact`` and ``read_inputs`` are loaded on first use, so importing one runtime (the MIL
interpreter, say) does not load the others or the formats table.
"""

from __future__ import annotations

_OPEN = ("Runner", "TorchRunner", "is_artifact", "open_runner", "read_inputs", "runner_class")


def __getattr__(name: str):
    if name in _OPEN:
        from . import open as opening

        return getattr(opening, name)
    raise AttributeError(f"module 'vitdeploy.runtimes' has no attribute {name!r}")
