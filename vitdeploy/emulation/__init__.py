"""A phone's CPU on this Linux box: qemu user-mode emulation of aarch64 running the aarch64 LiteRT.

``setup`` builds the environment once into a cache folder; ``run`` executes a .tflite there.
"""

from .environment import CPUS, ArmEnvironment, cache_dir, find_environment, require_environment
from .setup import setup_arm

__all__ = ["CPUS", "ArmEnvironment", "cache_dir", "find_environment", "require_environment", "setup_arm"]
