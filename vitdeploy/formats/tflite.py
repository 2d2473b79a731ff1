"""The .tflite file format as vitdeploy writes and reads it: metadata entries, labels, extra outputs.

A leaf of the pipeline: targets write through it, runtimes, parity and packaging read through it,
and none of them needs to import a converter.

Metadata stored in the file
---------------------------
* ``TFLITE_METADATA`` (the standard TFLite metadata flatbuffer, schema ``metadata_schema.fbs``,
  written here with the ``flatbuffers`` package; tflite-support is unmaintained and MediaPipe's
  writers pull in OpenCV/matplotlib). Input: ImageProperties(RGB) + NormalizationOptions;
  output: a ``labels.txt`` TENSOR_AXIS_LABELS file when labels are given, packed as a zip
  appended to the flatbuffer (the layout tflite-support and MediaPipe use).
  Because normalization already happens inside the graph, the pixel-input model declares
  **mean 0 / std 1** (pixels 0..255 pass through unchanged); declaring the checkpoint's real
  mean/std there would make MediaPipe normalize twice. Raw-input models declare the real
  mean/std in pixel units, but they are NCHW so image tasks cannot use them anyway.
* ``vitdeploy`` (a model-level ``Metadata`` entry holding UTF-8 JSON): input layout, shape, dtype,
  channel order, the full :class:`~vitdeploy.preprocessing.Preprocessing`, quantization mode and
  report, caller metadata. :class:`vitdeploy.runtimes.tflite.TFLiteRunner` reads it to turn a
  PyTorch-style preprocessed NCHW tensor back into what the model takes.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from ..diagnostics import describe
from ..errors import VitdeployError
from ..preprocessing import Preprocessing
from ..untrusted import ARTIFACT_LIMIT, file_of, read_side_file, reading
from . import LAYOUT_PIXELS, LAYOUT_RAW  # noqa: F401 (re-exported: the layouts a .tflite input declares)

VITDEPLOY_METADATA = "vitdeploy"  # name of our JSON entry in Model.metadata
TFLITE_METADATA = "TFLITE_METADATA"  # name the TFLite metadata spec reserves
LABELS_FILE = "labels.txt"
METADATA_PARSER_VERSION = "1.0.0"  # we only use fields that exist since metadata schema 1.0.0


def add_metadata(model_bytes: bytes, *, config: dict, preprocessing: Preprocessing, labels: list[str] | None,
                 name: str = "vitdeploy image classifier") -> bytes:
    """Return ``model_bytes`` with TFLITE_METADATA, our ``vitdeploy`` JSON and a labels zip added."""
    entries = {
        TFLITE_METADATA: _model_metadata_flatbuffer(config, preprocessing, labels, name),
        VITDEPLOY_METADATA: json.dumps(config, sort_keys=True, default=str).encode(),
    }
    return _with_metadata_entries(model_bytes, entries, labels)


def _with_metadata_entries(model_bytes: bytes, entries: dict[str, bytes | None], labels: list[str] | None) -> bytes:
    """``model_bytes`` with each named Model.metadata entry replaced (None: removed), labels zip appended."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    kept = [m for m in (model.metadata or []) if _decode(m.name) not in entries]
    for key, blob in entries.items():
        if blob is None:
            continue
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(blob, dtype=np.uint8)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name, entry.buffer = key, len(model.buffers) - 1
        kept.append(entry)
    model.metadata = kept
    packed = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    return _append_labels_zip(packed, labels) if labels else packed


REDUCED_PRECISION_KEY = "reduced_precision_support"  # TFLite's key; XNNPACK reads it at delegation
FP16_COMPUTE = "fp16accfp16"  # fp16 inference with fp16 accumulation: what XNNPACK needs to run fp16


def set_reduced_precision(model_bytes: bytes, value: str | None) -> bytes:
    """``model_bytes`` with the ``reduced_precision_support`` entry set to ``value`` (None: removed).

    ``fp16accfp16`` asks XNNPACK for fp16 arithmetic on CPUs that have it (ARMv8.2+ with FP16; ignored on
    x86 and older cores), in apps and in the classic Interpreter alike. The labels zip is kept.
    """
    blob = None if value is None else value.encode()
    return _with_metadata_entries(model_bytes, {REDUCED_PRECISION_KEY: blob}, _read_labels(bytes(model_bytes)))


def with_extra_outputs(model_bytes: bytes, tensor_names: list[str]) -> bytes:
    """``model_bytes`` whose main subgraph also outputs the named tensors, after its own outputs.

    A delegate then has to materialise them, in whatever arithmetic it runs (fp16 included): how
    localization reads block values from a run it cannot look inside. Unknown names are an error.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    graph = model.subgraphs[0]
    index = {_decode(t.name): i for i, t in enumerate(graph.tensors)}
    missing = [n for n in tensor_names if n not in index]
    if missing:
        raise VitdeployError(f"no tensor named {missing[0]!r} in the model")
    graph.outputs = [int(i) for i in graph.outputs] + [index[n] for n in tensor_names]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def reduced_precision(model_bytes: bytes) -> str | None:
    """The model's ``reduced_precision_support`` value, or None."""
    blob = _metadata_blobs(bytes(model_bytes)).get(REDUCED_PRECISION_KEY)
    return None if blob is None else blob.decode("ascii", "replace")


def _decode(name) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


def _append_labels_zip(model_bytes: bytes, labels: list[str]) -> bytes:
    """Append ``labels.txt`` as a zip archive after the flatbuffer (tflite-support's packing).

    Stored uncompressed so runtimes can memory-map it; the interpreter ignores trailing bytes.
    """
    stream = io.BytesIO(model_bytes)
    stream.seek(0, io.SEEK_END)
    with zipfile.ZipFile(stream, mode="a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(LABELS_FILE, "\n".join(str(label) for label in labels) + "\n")
    return stream.getvalue()


def _model_metadata_flatbuffer(config: dict, pre: Preprocessing, labels: list[str] | None, name: str) -> bytes:
    """Serialize a ModelMetadata table (metadata_schema.fbs, file identifier M001)."""
    fb = _FlatBuilder()
    spec = config["input"]
    if spec["layout"] == LAYOUT_PIXELS:
        # Normalization is inside the graph: image tasks must pass pixels through unchanged.
        mean, std = [0.0], [1.0]
        in_description = ("RGB pixels 0..255, float32 NHWC; the checkpoint's preprocessing "
                          f"({pre.describe()}) runs inside the model")
    else:
        # x = (pixel * scale - mean) / std  ==  (pixel - mean/scale) / (std/scale), in channel_order.
        mean = [m / pre.scale for m in pre.mean]
        std = [s / pre.scale for s in pre.std]
        in_description = (f"preprocessed NCHW float32, channels {pre.channel_order}: "
                          f"(pixel - mean) / std with the mean/std below in pixel units")

    norm = fb.table([(0, "off", fb.floats(mean)), (1, "off", fb.floats(std))])
    unit = fb.table([(0, "u8", 1), (1, "off", norm)])  # ProcessUnitOptions.NormalizationOptions = 1
    image_props = fb.table([(0, "i8", 1)])  # ColorSpaceType.RGB = 1
    in_content = fb.table([(0, "u8", 2), (1, "off", image_props)])  # ContentProperties.ImageProperties = 2
    in_stats = fb.table([(0, "off", fb.floats([255.0])), (1, "off", fb.floats([0.0]))]) \
        if spec["layout"] == LAYOUT_PIXELS else None
    in_meta = fb.table([(0, "off", fb.string(spec["name"])), (1, "off", fb.string(in_description)),
                        (3, "off", in_content), (4, "off", fb.vector([unit])), (5, "off", in_stats)])

    out_files = None
    if labels:
        label_file = fb.table([(0, "off", fb.string(LABELS_FILE)),
                               (1, "off", fb.string("class names, one per output index")),
                               (2, "i8", 2)])  # AssociatedFileType.TENSOR_AXIS_LABELS = 2
        out_files = fb.vector([label_file])
    feature = fb.table([])
    out_content = fb.table([(0, "u8", 1), (1, "off", feature)])  # ContentProperties.FeatureProperties = 1
    out_meta = fb.table([(0, "off", fb.string("logits")),
                         (1, "off", fb.string(f"{config['num_classes']} class logits (no softmax)")),
                         (3, "off", out_content), (6, "off", out_files)])

    subgraph = fb.table([(0, "off", fb.string("image_classifier")),
                         (2, "off", fb.vector([in_meta])), (3, "off", fb.vector([out_meta]))])
    description = (f"Image classifier converted by vitdeploy ({config.get('precision') or config['quantize']}); "
                   f"source preprocessing: {pre.describe()}")
    root = fb.table([(0, "off", fb.string(name)), (1, "off", fb.string(description)),
                     (2, "off", fb.string(str(config.get("user", {}).get("version", "")) or None)),
                     (3, "off", fb.vector([subgraph])),
                     (7, "off", fb.string(METADATA_PARSER_VERSION))])
    return fb.finish(root, b"M001")


class _FlatBuilder:
    """The few flatbuffers.Builder calls a hand-written table needs (children before parents)."""

    def __init__(self):
        import flatbuffers

        self.b = flatbuffers.Builder(1024)

    def string(self, text: str | None):
        return None if text is None else self.b.CreateString(text)

    def floats(self, values):
        self.b.StartVector(4, len(values), 4)
        for v in reversed(values):
            self.b.PrependFloat32(float(v))
        return self.b.EndVector()

    def vector(self, offsets):
        self.b.StartVector(4, len(offsets), 4)
        for o in reversed(offsets):
            self.b.PrependUOffsetTRelative(o)
        return self.b.EndVector()

    def table(self, fields):
        """``fields``: (slot, kind, value) with kind "off" (child offset), "i8" or "u8"; None skipped."""
        self.b.StartObject(max((slot for slot, _, _ in fields), default=-1) + 1)
        for slot, kind, value in fields:
            if value is None:
                continue
            if kind == "off":
                self.b.PrependUOffsetTRelativeSlot(slot, value, 0)
            elif kind == "i8":
                self.b.PrependInt8Slot(slot, value, 0)
            else:
                self.b.PrependUint8Slot(slot, value, 0)
        return self.b.EndObject()

    def finish(self, root, identifier: bytes) -> bytes:
        self.b.Finish(root, file_identifier=identifier)
        return bytes(self.b.Output())


def read_tflite_metadata(path_or_bytes) -> dict:
    """Read back what :func:`add_metadata` stored.

    Returns ``{"vitdeploy": dict | None, "model_metadata": dict | None, "labels": list | None}``
    where ``model_metadata`` is the parsed TFLITE_METADATA (name, description, min_parser_version,
    input/output tensor metadata with normalization mean/std, colour space, associated files).
    """
    with reading(file_of(path_or_bytes)):
        if isinstance(path_or_bytes, (str, Path)):
            name = str(path_or_bytes)
            data = read_side_file(path_or_bytes, ARTIFACT_LIMIT, ".tflite model")
        else:
            name, data = "model", bytes(path_or_bytes)
        require_tflite(data, name)
        blobs = _metadata_blobs(data)
        vitdeploy = None
        if VITDEPLOY_METADATA in blobs:
            try:
                vitdeploy = json.loads(blobs[VITDEPLOY_METADATA].decode())
            except (ValueError, RecursionError) as e:
                raise VitdeployError(f"{name}: damaged vitdeploy metadata (not JSON: {describe(e)})") from None
            if not isinstance(vitdeploy, dict):
                raise VitdeployError(f"{name}: damaged vitdeploy metadata (a JSON {type(vitdeploy).__name__}, "
                                     "not an object)")
        model_metadata = _parse_model_metadata(blobs[TFLITE_METADATA]) if TFLITE_METADATA in blobs else None
        labels = _read_labels(data)
        classes = (vitdeploy or {}).get("num_classes")
        if labels is not None and isinstance(classes, int) and not isinstance(classes, bool) and len(labels) != classes:
            raise VitdeployError(f"{name}: damaged metadata: {len(labels)} labels in {LABELS_FILE} for "
                                 f"{classes} classes")
        return {"vitdeploy": vitdeploy, "model_metadata": model_metadata, "labels": labels}


TFLITE_IDENTIFIER = b"TFL3"  # the flatbuffer file identifier (bytes 4..8) of every TFLite model; LiteRT requires it


def require_tflite(data: bytes, name: str = "model") -> None:
    """A one-line error unless ``data`` starts like a TFLite flatbuffer (a .pte or anything else renamed .tflite)."""
    if len(data) >= 8 and data[4:8] == TFLITE_IDENTIFIER:
        return
    if len(data) >= 8 and data[4:6] == b"ET":
        raise VitdeployError(f"{name}: an ExecuTorch program (.pte), not a .tflite model (renamed?)")
    raise VitdeployError(f"{name}: not a .tflite model (no 'TFL3' file identifier)")


def _metadata_blobs(data: bytes) -> dict[str, bytes]:
    """Model.metadata entries as name -> bytes, without unpacking the whole model."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.Model.GetRootAs(data, 0)
        blobs = {}
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            buffer = model.Buffers(entry.Buffer())
            if buffer.Offset():  # data stored outside the flatbuffer (large-model layout)
                blob = data[buffer.Offset():buffer.Offset() + buffer.Size()]
            else:
                blob = buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b""
            blobs[_decode(entry.Name())] = bytes(blob)
        return blobs
    except Exception as e:
        raise VitdeployError(f"not a readable .tflite model ({describe(e)})") from None


def _read_labels(data: bytes) -> list[str] | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if LABELS_FILE not in archive.namelist():
                return None
            info = archive.getinfo(LABELS_FILE)
            if info.file_size > 4 << 20:  # untrusted.LABELS_LIMIT: a declared size past it is not a labels file
                raise VitdeployError(f"damaged metadata: {LABELS_FILE} declares {info.file_size:,} bytes")
            text = archive.read(LABELS_FILE).decode("utf-8")
    except zipfile.BadZipFile:
        return None
    except VitdeployError:
        raise
    except Exception as e:  # noqa: BLE001 - untrusted zip: bad CRC, bad compression, not UTF-8 ...
        raise VitdeployError(f"damaged metadata: unreadable {LABELS_FILE} ({describe(e)})") from None
    return text.splitlines()


def _parse_model_metadata(blob: bytes) -> dict:
    if blob[4:8] != b"M001":
        raise VitdeployError("TFLITE_METADATA does not carry the M001 file identifier")
    root = _Table.root(blob)
    subgraphs = [{"name": sg.string(0), "description": sg.string(1),
                  "inputs": [_parse_tensor(t) for t in sg.tables(2)],
                  "outputs": [_parse_tensor(t) for t in sg.tables(3)]} for sg in root.tables(3)]
    return {"name": root.string(0), "description": root.string(1), "version": root.string(2),
            "subgraphs": subgraphs, "min_parser_version": root.string(7)}


def _parse_tensor(t: "_Table") -> dict:
    content = t.table(3)
    kind = {1: "feature", 2: "image", 3: "bounding_box"}.get(content.u8(0) if content else 0, "unknown")
    color = None
    if kind == "image":
        color = {0: "UNKNOWN", 1: "RGB", 2: "GRAYSCALE"}.get(content.table(1).i8(0))
    normalization = None
    for unit in t.tables(4):
        if unit.u8(0) == 1:  # NormalizationOptions
            options = unit.table(1)
            normalization = {"mean": options.floats(0), "std": options.floats(1)}
    stats = t.table(5)
    files = [{"name": f.string(0), "description": f.string(1),
              "type": {1: "DESCRIPTIONS", 2: "TENSOR_AXIS_LABELS", 3: "TENSOR_VALUE_LABELS"}.get(f.i8(2), "UNKNOWN")}
             for f in t.tables(6)]
    return {"name": t.string(0), "description": t.string(1), "content": kind, "color_space": color,
            "normalization": normalization,
            "stats": {"max": stats.floats(0), "min": stats.floats(1)} if stats else None,
            "associated_files": files}


class _Table:
    """Minimal read access to a flatbuffer table by field slot (no generated code needed)."""

    def __init__(self, buf: bytes, pos: int):
        from flatbuffers import table

        self.t = table.Table(bytearray(buf) if not isinstance(buf, bytearray) else buf, pos)

    @classmethod
    def root(cls, buf: bytes) -> "_Table":
        from flatbuffers import encode, packer

        buf = bytearray(buf)
        return cls(buf, encode.Get(packer.uoffset, buf, 0))

    def _field(self, slot: int) -> int:
        return self.t.Offset(4 + 2 * slot)

    def string(self, slot: int) -> str | None:
        o = self._field(slot)
        return self.t.String(o + self.t.Pos).decode() if o else None

    def u8(self, slot: int) -> int:
        from flatbuffers import number_types as N

        o = self._field(slot)
        return self.t.Get(N.Uint8Flags, o + self.t.Pos) if o else 0

    def i8(self, slot: int) -> int:
        from flatbuffers import number_types as N

        o = self._field(slot)
        return self.t.Get(N.Int8Flags, o + self.t.Pos) if o else 0

    def table(self, slot: int) -> "_Table | None":
        o = self._field(slot)
        return _Table(self.t.Bytes, self.t.Indirect(o + self.t.Pos)) if o else None

    def tables(self, slot: int) -> list["_Table"]:
        o = self._field(slot)
        if not o:
            return []
        start = self.t.Vector(o)
        return [_Table(self.t.Bytes, self.t.Indirect(start + 4 * i)) for i in range(self.t.VectorLen(o))]

    def floats(self, slot: int) -> list[float]:
        from flatbuffers import number_types as N

        o = self._field(slot)
        if not o:
            return []
        start = self.t.Vector(o)
        return [float(self.t.Get(N.Float32Flags, start + 4 * i)) for i in range(self.t.VectorLen(o))]
