"""Valid seed inputs for every reader of untrusted input, and the structured mutations the fuzz tests apply.

Used by tests/test_fuzz.py (bounded, in the normal suite) and tools/fuzz_campaign.py (long campaign).
Seeds are small but real: a MobileViT-XXS checkpoint in each container format, a tiny classifier converted
to .tflite and .mlpackage carrying vitdeploy's metadata, a PNG/JPEG, an .npy batch, a recipe, a labels file.
"""

from __future__ import annotations

import contextlib

import json
import os
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

# A stand-in for "the untrusted input ran code": any pickle payload that calls this leaves a file behind.
PWNED_MARKER = "vitdeploy-fuzz-pwned"


# ----------------------------------------------------------------------------- seeds


def checkpoint_seeds(out: Path) -> dict[str, Path]:
    """MobileViT-XXS (the smallest variant) as .pth (zip), legacy pickle .pt, .bin, .safetensors, HF dir."""
    import torch
    from safetensors.torch import save_file

    from vitdeploy.synthetic import seeded_model

    out.mkdir(parents=True, exist_ok=True)
    sd = seeded_model("mobilevit_xxs", seed=0).state_dict()
    seeds = {"pth": out / "timm.pth", "legacy": out / "legacy.pt", "bin": out / "weights.bin",
             "safetensors": out / "model.safetensors", "hf": out / "hf"}
    torch.save({"model": sd, "epoch": 3}, seeds["pth"])
    torch.save(sd, seeds["legacy"], _use_new_zipfile_serialization=False)
    torch.save(sd, seeds["bin"])
    save_file({k: v.contiguous() for k, v in sd.items()}, str(seeds["safetensors"]))
    seeds["hf"].mkdir(exist_ok=True)
    (seeds["hf"] / "config.json").write_text(json.dumps({"id2label": {str(i): f"c{i}" for i in range(1000)}}))
    shutil.copy(seeds["safetensors"], seeds["hf"] / "model.safetensors")
    return seeds


def image_seeds(out: Path) -> dict[str, Path]:
    from PIL import Image

    from vitdeploy.sample_images import natural_images

    out.mkdir(parents=True, exist_ok=True)
    rgb = natural_images(1, 64, seed=3)[0]
    seeds = {"png": out / "photo.png", "jpg": out / "photo.jpg"}
    Image.fromarray(rgb).save(seeds["png"])
    Image.fromarray(rgb).save(seeds["jpg"], quality=85)
    return seeds


def npy_seed(out: Path, input_size=(3, 16, 16)) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "batch.npy"
    np.save(path, np.random.default_rng(0).standard_normal((1, *input_size)).astype(np.float32))
    return path


def tiny_torch_model():
    """A seeded conv + linear classifier (10 classes, any square RGB input): small and fast to convert."""
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.fc = torch.nn.Linear(8, 10)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))

    torch.manual_seed(0)
    return Tiny().eval()


def _pixel_input_class():
    import torch

    class PixelInput(torch.nn.Module):
        """NHWC 0..255 pixels in, normalized as LeViT's convention says, then the wrapped NCHW model."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            pre = _tiny_preprocessing()
            self.register_buffer("mean", torch.tensor(pre.mean).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(pre.std).view(1, 3, 1, 1))

        def forward(self, x):
            return self.inner((x.permute(0, 3, 1, 2) / 255 - self.mean) / self.std)

    return PixelInput


def _PixelInput(inner):
    return _pixel_input_class()(inner)


def _tiny_preprocessing():
    """LeViT's convention scaled to the tiny model's 16x16 input, so image files can be fed to it."""
    from dataclasses import replace

    from vitdeploy.models import LEVIT

    return replace(LEVIT, resize=18, crop=16)


def _tiny_config(layout: str, shape: list[int], name: str) -> dict:
    return {"variant": None, "input": {"name": name, "layout": layout, "shape": shape, "channel_order": "RGB"},
            "preprocessing": _tiny_preprocessing().to_dict(), "quantize": "fp32", "precision": "fp32", "labels": None,
            "logits_output": "logits", "num_classes": 10, "user": {}}


def tflite_seed(out: Path, pixels: bool = False) -> Path:
    """A tiny conv + linear classifier (16x16 input) as a .tflite with vitdeploy's metadata; ``pixels``: it takes
    NHWC RGB pixels (what the app helpers of ``vitdeploy package`` feed) instead of a float NCHW tensor."""
    import litert_torch
    import torch

    from vitdeploy.formats.tflite import add_metadata

    out.mkdir(parents=True, exist_ok=True)
    raw = out / "raw.tflite"
    model, example = tiny_torch_model(), torch.randn(1, 3, 16, 16)
    if pixels:
        model, example = _PixelInput(model), torch.rand(1, 16, 16, 3) * 255
    litert_torch.convert(model, (example,)).export(str(raw))
    config = (_tiny_config("NHWC-pixels", [1, 16, 16, 3], "pixels") if pixels
              else _tiny_config("NCHW-raw", [1, 3, 16, 16], "x"))
    path = out / ("tiny_pixels.tflite" if pixels else "tiny.tflite")
    path.write_bytes(add_metadata(raw.read_bytes(), config=config, preprocessing=_tiny_preprocessing(),
                                 labels=None))
    raw.unlink()
    return path


def mlpackage_seed(out: Path) -> Path:
    """The same tiny classifier as an fp16 ML Program .mlpackage with vitdeploy's metadata."""
    import coremltools as ct
    import torch

    from vitdeploy.formats.coreml import METADATA_KEY

    out.mkdir(parents=True, exist_ok=True)
    traced = torch.jit.trace(tiny_torch_model(), torch.randn(1, 3, 16, 16))
    model = ct.convert(traced, inputs=[ct.TensorType(name="pixel_values", shape=(1, 3, 16, 16))],
                       outputs=[ct.TensorType(name="logits")], convert_to="mlprogram",
                       minimum_deployment_target=ct.target.iOS16)
    model.user_defined_metadata[METADATA_KEY] = json.dumps(_tiny_config("NCHW-raw", [1, 3, 16, 16], "pixel_values"))
    path = out / "tiny.mlpackage"
    model.save(str(path))
    return path


def recipe_seed(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "levit_128s.yaml"
    shutil.copy(Path(__file__).resolve().parents[1] / "recipes" / "levit_128s.yaml", path)
    return path


def image_folder_seed(out: Path) -> Path:
    """An ImageFolder tree (two classes, one image each) with a labels.txt."""
    from PIL import Image

    from vitdeploy.sample_images import natural_images

    root = out / "data"
    for i, cls in enumerate(("cat", "dog")):
        (root / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(natural_images(1, 64, seed=i)[0]).save(root / cls / "a.png")
    (root / "labels.txt").write_text("cat\ndog\n")
    return root


@pytest.fixture(scope="session")
def seeds(tmp_path_factory) -> dict[str, Path]:
    """Every seed, built once per session (the .tflite conversions take seconds): import it into a test module."""
    root = tmp_path_factory.mktemp("seeds")
    out = dict(checkpoint_seeds(root / "ck"))
    out.update(image_seeds(root / "img"))
    out["npy"] = npy_seed(root / "npy")
    out["tflite"] = tflite_seed(root / "tflite")
    out["tflite_pixels"] = tflite_seed(root / "tflite", pixels=True)
    out["mlpackage"] = mlpackage_seed(root / "coreml")
    out["recipe"] = recipe_seed(root / "recipe")
    out["data"] = image_folder_seed(root / "folder")
    return out


# ----------------------------------------------------------------------------- mutations


def zip_boundaries(data: bytes) -> list[int]:
    """Offsets where a zip's structures start: local headers, entry data, central directory, end record."""
    import io

    out = {0, len(data)}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                out.add(info.header_offset)
                name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
                start = info.header_offset + 30 + name_len + extra_len
                out.update((start, start + info.compress_size))
            out.add(zf.start_dir)
    except (zipfile.BadZipFile, struct.error):
        pass
    eocd = data.rfind(b"PK\x05\x06")
    if eocd >= 0:
        out.add(eocd)
    return sorted(o for o in out if 0 <= o <= len(data))


def tensor_data_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each stored entry's bytes in a zip: where flipped bits would change the weights."""
    import io

    spans = []
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
                start = info.header_offset + 30 + name_len + extra_len
                if info.compress_size:
                    spans.append((start, start + info.compress_size))
    except (zipfile.BadZipFile, struct.error):
        pass
    return spans


def safetensors_boundaries(data: bytes) -> list[int]:
    """The 8-byte header length, the JSON header and each tensor's data offsets."""
    out = {0, 8, len(data)}
    try:
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + n])
        out.add(8 + n)
        for v in header.values():
            if isinstance(v, dict) and "data_offsets" in v:
                out.update(8 + n + o for o in v["data_offsets"])
    except (struct.error, ValueError):
        pass
    return sorted(o for o in out if 0 <= o <= len(data))


def flip_bits(data: bytes, positions: list[int], mask: int = 0x10) -> bytes:
    b = bytearray(data)
    for p in positions:
        if 0 <= p < len(b):
            b[p] ^= mask
    return bytes(b)


def rewrite_zip_sizes(data: bytes, entry_index: int, new_size: int) -> bytes:
    """A zip whose central directory lies about one entry's size (both sizes, CRC kept)."""
    b = bytearray(data)
    import io

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        start = zf.start_dir
        infos = zf.infolist()
    pos = start
    for i in range(len(infos)):
        if b[pos:pos + 4] != b"PK\x01\x02":
            break
        name_len, extra_len, comment_len = struct.unpack("<HHH", b[pos + 28:pos + 34])
        if i == entry_index:
            struct.pack_into("<II", b, pos + 20, new_size & 0xFFFFFFFF, new_size & 0xFFFFFFFF)
        pos += 46 + name_len + extra_len + comment_len
    return bytes(b)


def evil_pickle(marker_dir: Path) -> bytes:
    """A pickle that would create a file if anything unpickled it without restriction."""
    import pickle

    target = str(marker_dir / PWNED_MARKER)

    class Evil:
        def __reduce__(self):
            return (os.makedirs, (target,))

    return pickle.dumps({"model": Evil()})


def npy_with_header(shape, descr: str = "<f4", payload: bytes = b"") -> bytes:
    """A .npy whose header declares ``shape``/``descr`` whatever ``payload`` holds."""
    header = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)}).encode()
    pad = 64 - (10 + len(header) + 1) % 64
    header += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


def png_with_size(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height`` but holds one tiny IDAT."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + \
        chunk(b"IEND", b"")


def minimal_mlpackage(pkg: Path) -> Path:
    """The smallest folder that passes formats.coreml.check_package_tree (a manifest whose root entry names a
    model file): for tests that drive the iOS plan without coremltools reading the model."""
    import json

    core = pkg / "Data" / "com.apple.CoreML"
    (core / "weights").mkdir(parents=True, exist_ok=True)
    (core / "model.mlmodel").write_bytes(b"m")
    (core / "weights" / "weight.bin").write_bytes(b"w")
    entries = {"M": {"path": "com.apple.CoreML/model.mlmodel"}, "W": {"path": "com.apple.CoreML/weights"}}
    (pkg / "Manifest.json").write_text(json.dumps({"fileFormatVersion": "1.0.0", "itemInfoEntries": entries,
                                                   "rootModelIdentifier": "M"}))
    return pkg


@contextlib.contextmanager
def deadline(seconds: int):
    """A hang (reading a FIFO, /dev/zero) fails the test instead of stalling the suite."""
    import signal

    def _alarm(*_):
        raise TimeoutError(f"no answer within {seconds} s: something read a FIFO or a device")

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
