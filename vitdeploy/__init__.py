"""vitdeploy: LeViT and MobileViT checkpoints to Core ML, TFLite and ExecuTorch, with parity checks and device profiling.

The Python API mirrors the CLI; heavy libraries load only when a function needs them::

    from vitdeploy import checkpoints, passes
    ckpt = checkpoints.load("levit_128s.pth")
    report = passes.fold_batchnorm(ckpt.model)
"""

__version__ = "0.1.0"
