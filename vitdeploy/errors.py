"""Exceptions that the CLI turns into one-line messages and exit codes.

Exit codes: 0 ok, 1 a check failed, 2 bad input or usage.
"""


class VitdeployError(Exception):
    """Bad input or usage: the CLI prints the message on one line and exits 2."""

    exit_code = 2


class InputError(VitdeployError):
    """A file from the user (or sent back by a phone) that vitdeploy cannot interpret: exit 2, one line
    ``<path>: <reason>``. :func:`vitdeploy.untrusted.reading` raises it for what a parser trips on."""

    def __init__(self, path, reason: str):
        super().__init__(str(path), reason)  # both in args: it pickles back across a process boundary
        self.path, self.reason = str(path), reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class CheckpointError(VitdeployError):
    """A checkpoint that cannot be read, is not LeViT/MobileViT, or has wrong keys."""


class ConversionError(VitdeployError):
    """A converter failed; the message names the stage and the converter's reason."""


class CheckFailed(Exception):
    """A check (parity, accuracy) ran and failed: exit 1."""

    exit_code = 1
