"""Exceptions that the CLI turns into one-line messages and exit codes.

Exit codes: 0 ok, 1 a check failed, 2 bad input or usage.
"""


class VitdeployError(Exception):
    """Bad input or usage: the CLI prints the message on one line and exits 2."""

    exit_code = 2


class CheckpointError(VitdeployError):
    """A checkpoint that cannot be read, is not LeViT/MobileViT, or has wrong keys."""


class ConversionError(VitdeployError):
    """A converter failed; the message names the stage and the converter's reason."""


class CheckFailed(Exception):
    """A check (parity, accuracy) ran and failed: exit 1."""

    exit_code = 1
