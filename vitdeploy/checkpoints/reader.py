"""Read a checkpoint file or HF model directory into a flat state dict, safely.

Checkpoints are untrusted: pickles are opened with ``torch.load(weights_only=True)``,
which refuses any object that is not a tensor, a container or a plain value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CheckpointError
from ..diagnostics import first_line
from ..untrusted import CONFIG_LIMIT, read_side_text, reading

# Wrappers seen in training checkpoints, in order of preference.
_MODEL_KEYS = ("model", "state_dict", "model_state_dict", "net", "network")
_EMA_KEYS = ("model_ema", "state_dict_ema", "ema")
_PREFIXES = ("module.", "_orig_mod.", "model.")
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")
# timm's train.py writes model_best.pth.tar, last.pth.tar and checkpoint-N.pth.tar (a torch zip, not a tarball).
WEIGHT_NAME_ENDINGS = (".pth.tar", *WEIGHT_SUFFIXES)


def is_weights_name(name: str) -> bool:
    """Whether a file name says it holds weights vitdeploy reads (``.pth.tar`` included, a plain ``.tar`` not)."""
    return name.lower().endswith(WEIGHT_NAME_ENDINGS)


def weights_stem(name: str) -> str:
    """The name without its weights ending: ``model_best.pth.tar`` -> ``model_best``."""
    for ending in WEIGHT_NAME_ENDINGS:
        if name.lower().endswith(ending):
            return name[: -len(ending)]
    return name


@dataclass
class RawCheckpoint:
    """A flat ``name -> tensor`` dict plus what was learnt while unwrapping it."""

    state_dict: dict
    path: Path
    file: Path  # the weights file actually read
    wrapper: str | None = None  # e.g. "model", "model_ema"
    other_entries: list[str] = field(default_factory=list)  # optimizer, epoch, args, ...
    hf_config: dict | None = None


def sha256_of(path: Path) -> str:
    from ..files import sha256_file

    return sha256_file(path)


def read_checkpoint(path: str | Path, prefer_ema: bool = False) -> RawCheckpoint:
    """Read ``.pth/.pt/.bin/.ckpt/.safetensors`` files or an HF model directory."""
    path = Path(path)
    if not path.exists():
        loop = path.is_symlink()  # exists() is False for a dangling link or a symlink loop, too
        raise CheckpointError(f"{path}: {'dangling symlink or symlink loop' if loop else 'no such file or directory'}")
    hf_config = None
    weights = path
    if path.is_dir():
        with reading(path):
            weights, hf_config = _hf_directory_files(path)
    with reading(weights):
        _require_regular_file(weights)
        obj = _read_safetensors(weights) if weights.suffix == ".safetensors" else _read_pickle(weights)
        sd, wrapper, others = _unwrap(obj, weights, prefer_ema)
        _require_plain_tensors(sd, weights)
        return RawCheckpoint(_strip_prefixes(sd), path, weights, wrapper, others, hf_config)


def _require_regular_file(path: Path) -> None:
    """A directory, FIFO or device where a weights file is expected would hang or crash a reader later."""
    if not path.exists():
        raise CheckpointError(f"{path}: dangling symlink or symlink loop")
    if path.is_dir():
        raise CheckpointError(f"{path}: a directory where a weights file was expected")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file")


def _hf_directory_files(directory: Path) -> tuple[Path, dict | None]:
    config = None
    cfg_path = directory / "config.json"
    if cfg_path.exists() or cfg_path.is_symlink():
        # Regular file, bounded read: a FIFO here would hang `inspect`, a link to /dev/zero fill memory.
        text = read_side_text(cfg_path, CONFIG_LIMIT, "config.json", error=CheckpointError)
        try:
            config = json.loads(text)
        except (ValueError, RecursionError) as e:
            raise CheckpointError(f"{cfg_path}: unreadable config.json ({first_line(e)})") from None
        if not isinstance(config, dict):
            raise CheckpointError(f"{cfg_path}: config.json holds a JSON {type(config).__name__}, not an object")
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (directory / name).exists():
            return directory / name, config
    if (directory / "model.safetensors.index.json").exists():
        raise CheckpointError(f"{directory}: sharded checkpoints are not supported (these models fit in one file)")
    candidates = sorted(p for p in directory.iterdir() if is_weights_name(p.name))
    if len(candidates) == 1:
        return candidates[0], config
    raise CheckpointError(f"{directory}: no model.safetensors or pytorch_model.bin in this directory")


def _read_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a valid safetensors file ({first_line(e)})") from None
    except Exception as e:  # untrusted bytes: whatever the parser trips on is a fault of the file
        raise CheckpointError(f"{path}: not a valid safetensors file ({type(e).__name__}: {first_line(e)})") from None


def _read_pickle(path: Path) -> object:
    import argparse
    import pickle
    import warnings
    import zipfile

    import torch

    if zipfile.is_zipfile(path):
        verify_zip(path)
    try:
        # argparse.Namespace holds the training args in facebookresearch/LeViT checkpoints; it is inert data.
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol notices are noise to a user
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = first_line(e)
        if "Unsupported global" in msg or "weights_only" in msg.lower():
            raise CheckpointError(
                f"{path}: contains Python objects other than tensors; refusing to unpickle it "
                f"(save model.state_dict() or use safetensors)") from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({msg})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({first_line(e)})") from None
    except Exception as e:  # the weights-only unpickler trips on garbage with KeyError, IndexError, ...
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint "
                              f"({type(e).__name__}: {first_line(e)})") from None


# The largest variant (LeViT-384, 39M params) stores ~160 MB: a bigger declared entry is a lie or a zip bomb.
_MAX_ZIP_ENTRY_BYTES = 2 << 30


def verify_zip(path: Path) -> None:
    """Check every entry of a zip checkpoint against its CRC-32 and declared sizes.

    torch's zip reader checks neither, so flipped bits in tensor data would load silently as wrong weights."""
    import zipfile

    entry = "?"
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                entry = info.filename
                if info.file_size > _MAX_ZIP_ENTRY_BYTES:
                    raise CheckpointError(f"{path}: corrupt checkpoint: zip entry {entry} declares "
                                          f"{info.file_size:,} bytes")
                if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
                    raise CheckpointError(f"{path}: corrupt checkpoint: zip entry {entry} declares "
                                          f"{info.file_size:,} bytes but stores {info.compress_size:,}")
                with zf.open(info) as f:  # reading to the end checks the CRC-32
                    while f.read(1 << 20):
                        pass
    except CheckpointError:
        raise
    except Exception as e:  # BadZipFile (bad CRC, lying headers), EOFError, zlib.error, OSError, ...
        raise CheckpointError(f"{path}: corrupt checkpoint: zip entry {entry}: {first_line(e)}") from None


def _is_tensor_dict(obj: object) -> bool:
    import torch

    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _unwrap(obj: object, path: Path, prefer_ema: bool) -> tuple[dict, str | None, list[str]]:
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path}: expected a state dict (name -> tensor), found {type(obj).__name__}")
    if _is_tensor_dict(obj):
        return obj, None, []
    order = _EMA_KEYS + _MODEL_KEYS if prefer_ema else _MODEL_KEYS + _EMA_KEYS
    for key in order:
        inner = obj.get(key)
        if _is_tensor_dict(inner):
            return inner, key, sorted(str(k) for k in obj if k != key)
    tensors = [k for k, v in obj.items() if _is_tensor_dict(v)]
    hint = f" (nested tensor dicts under: {', '.join(map(str, tensors))})" if tensors else ""
    raise CheckpointError(
        f"{path}: no state dict found; top-level keys are {', '.join(map(str, list(obj)[:8]))}{hint}")


def _require_plain_tensors(sd: dict, path: Path) -> None:
    """Dense CPU tensors only: a sparse, meta, nested or quantized tensor has no weights vitdeploy can load
    (a meta tensor has no data at all), and every later step (layout detection, shape checks) would trip on it."""
    import torch

    for key, t in sd.items():
        if not isinstance(t, torch.Tensor):
            continue
        kind = None
        if t.is_nested:
            kind = "a nested tensor"
        elif t.layout != torch.strided:
            kind = f"a sparse tensor ({str(t.layout).removeprefix('torch.')})"
        elif t.device.type == "meta":
            kind = "a meta tensor (shape only, no data: saved from a model never materialised)"
        elif t.device.type != "cpu":
            kind = f"a tensor on device {t.device.type}"
        elif t.is_quantized:
            kind = f"a quantized tensor ({str(t.dtype).removeprefix('torch.')})"
        if kind:
            raise CheckpointError(f"{path}: '{key}' is {kind}; expected dense floating-point weights")


def _strip_prefixes(sd: dict) -> dict:
    import torch

    sd = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    for prefix in _PREFIXES:
        # "model." is only a wrapper prefix when every key has it (HF keys never all start with it).
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd
