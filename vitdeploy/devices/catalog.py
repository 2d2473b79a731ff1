"""The phones vitdeploy knows by name, and how to resolve what a user types.

Identifiers are what the OS reports: iOS ProductType (`ideviceinfo -k
ProductType`, devicectl hardwareProperties.productType) and Android
ro.product.device codenames. Regional variants that ship different SoCs
(Galaxy S24: Exynos 2400 vs Snapdragon 8 Gen 3) list one codename per SoC.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass, field

from vitdeploy.errors import VitdeployError

COREML_UNITS = ("cpuOnly", "cpuAndGPU", "cpuAndNeuralEngine", "all")
ANDROID_DELEGATES = ("xnnpack", "cpu", "gpu", "nnapi")
# Core ML runs int8 x int8 matmuls/convs natively on the ANE from A17 Pro and M4 on;
# older Neural Engines dequantize W8A8 weights and compute in fp16.
W8A8_ANE_CHIPS = ("A17 Pro", "A18", "A18 Pro", "A19", "A19 Pro", "M4")


@dataclass(frozen=True)
class DeviceSpec:
    name: str                      # what users type: iphone12, pixel7, galaxy-s24
    platform: str                  # ios | android | host
    marketing_name: str
    identifiers: tuple[str, ...]   # iOS ProductType or Android ro.product.device codenames
    soc: str
    gpu: str | None = None
    npu: str | None = None         # Neural Engine / NPU, None when the phone has none
    neural_engine_cores: int | None = None
    ram_gb: float | None = None
    compute_units: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    notes: str = ""
    cpu_cores: tuple[str, ...] = ()  # "2x Cortex-X1": the CPU clusters, big first

    @property
    def w8a8_ane(self) -> bool:
        """True when Core ML can keep int8 activations on the Neural Engine (A17 Pro / M4 and later)."""
        return self.platform == "ios" and self.soc.replace(" Bionic", "") in W8A8_ANE_CHIPS

    def to_json(self) -> dict:
        d = asdict(self)
        d["identifiers"] = list(self.identifiers)
        d["compute_units"] = list(self.compute_units)
        d["aliases"] = list(self.aliases)
        d["cpu_cores"] = list(self.cpu_cores)
        d["emulated_cpus"] = emulated_cpus(self) if self.cpu_cores else []
        d["w8a8_ane"] = self.w8a8_ane
        return d


def _iphone(name, marketing, product_type, soc, ram_gb, aliases=()):
    return DeviceSpec(name=name, platform="ios", marketing_name=marketing, identifiers=(product_type,), soc=soc,
                      gpu=f"Apple {soc.replace(' Bionic', '')} GPU", npu="Apple Neural Engine (16-core)",
                      neural_engine_cores=16, ram_gb=ram_gb, compute_units=COREML_UNITS, aliases=aliases)


def _android(name, marketing, codenames, soc, gpu, npu, ram_gb, aliases=(), notes=""):
    return DeviceSpec(name=name, platform="android", marketing_name=marketing, identifiers=tuple(codenames), soc=soc,
                      gpu=gpu, npu=npu, ram_gb=ram_gb, compute_units=ANDROID_DELEGATES, aliases=aliases, notes=notes,
                      cpu_cores=SOC_CORES.get(soc.split(" (")[0].split(" / ")[0], ()))


# CPU clusters per SoC (vendor specifications), big cores first.
SOC_CORES: dict[str, tuple[str, ...]] = {
    "Google Tensor": ("2x Cortex-X1", "2x Cortex-A76", "4x Cortex-A55"),
    "Google Tensor G2": ("2x Cortex-X1", "2x Cortex-A78", "4x Cortex-A55"),
    "Google Tensor G3": ("1x Cortex-X3", "4x Cortex-A715", "4x Cortex-A510"),
    "Google Tensor G4": ("1x Cortex-X4", "3x Cortex-A720", "4x Cortex-A520"),
    "Snapdragon 8 Gen 2 for Galaxy": ("1x Cortex-X3", "2x Cortex-A715", "2x Cortex-A710", "3x Cortex-A510"),
    "Exynos 2400": ("1x Cortex-X4", "5x Cortex-A720", "4x Cortex-A520"),
    "Snapdragon 8 Gen 3 for Galaxy": ("1x Cortex-X4", "5x Cortex-A720", "2x Cortex-A520"),
    "Snapdragon 8 Elite for Galaxy": ("2x Oryon (prime)", "6x Oryon (performance)"),
}
# The QEMU CPU model that stands in for each core: same ISA features, which is what XNNPACK's kernel choice
# (and so the numerics) follows. ARMv8.2 cores with FP16 + dot product -> cortex-a76 (a55 for the little
# ones); ARMv9 cores (i8mm, BF16, SVE2) and Oryon (ARMv8.7, i8mm) -> cortex-a710.
EMULATED_STAND_IN = {
    "Cortex-A55": "cortex-a55", "Cortex-A76": "cortex-a76", "Cortex-A77": "cortex-a76", "Cortex-A78": "cortex-a76",
    "Cortex-X1": "cortex-a76", "Cortex-A510": "cortex-a710", "Cortex-A520": "cortex-a710",
    "Cortex-A710": "cortex-a710", "Cortex-A715": "cortex-a710", "Cortex-A720": "cortex-a710",
    "Cortex-X2": "cortex-a710", "Cortex-X3": "cortex-a710", "Cortex-X4": "cortex-a710", "Oryon": "cortex-a710",
}


def emulated_cpus(spec: "DeviceSpec") -> list[str]:
    """The emulated CPUs that stand in for ``spec``'s cores, big cores first, each once."""
    if not spec.cpu_cores:
        raise VitdeployError(f"{spec.name}: no CPU cores in the catalog to emulate"
                             + ("; iPhones run Core ML (Apple cores have no QEMU model): use --cpu" if spec.platform == "ios"
                                else "; use --cpu"))
    cores = [cluster.split("x ", 1)[1].split(" (")[0] for cluster in spec.cpu_cores]
    return list(dict.fromkeys(EMULATED_STAND_IN[core] for core in cores))


_TENSOR_NPU = "Google TPU (reached through NNAPI only)"
_HEXAGON = "Qualcomm Hexagon NPU (reached through NNAPI)"

CATALOG: tuple[DeviceSpec, ...] = (
    _iphone("iphone12mini", "iPhone 12 mini", "iPhone13,1", "A14 Bionic", 4),
    _iphone("iphone12", "iPhone 12", "iPhone13,2", "A14 Bionic", 4),
    _iphone("iphone12pro", "iPhone 12 Pro", "iPhone13,3", "A14 Bionic", 6),
    _iphone("iphone12promax", "iPhone 12 Pro Max", "iPhone13,4", "A14 Bionic", 6),
    _iphone("iphone13mini", "iPhone 13 mini", "iPhone14,4", "A15 Bionic", 4),
    _iphone("iphone13", "iPhone 13", "iPhone14,5", "A15 Bionic", 4),
    _iphone("iphone13pro", "iPhone 13 Pro", "iPhone14,2", "A15 Bionic", 6),
    _iphone("iphone13promax", "iPhone 13 Pro Max", "iPhone14,3", "A15 Bionic", 6),
    _iphone("iphone14", "iPhone 14", "iPhone14,7", "A15 Bionic", 6),
    _iphone("iphone14plus", "iPhone 14 Plus", "iPhone14,8", "A15 Bionic", 6),
    _iphone("iphone14pro", "iPhone 14 Pro", "iPhone15,2", "A16 Bionic", 6),
    _iphone("iphone14promax", "iPhone 14 Pro Max", "iPhone15,3", "A16 Bionic", 6),
    _iphone("iphone15", "iPhone 15", "iPhone15,4", "A16 Bionic", 6),
    _iphone("iphone15plus", "iPhone 15 Plus", "iPhone15,5", "A16 Bionic", 6),
    _iphone("iphone15pro", "iPhone 15 Pro", "iPhone16,1", "A17 Pro", 8),
    _iphone("iphone15promax", "iPhone 15 Pro Max", "iPhone16,2", "A17 Pro", 8),
    _iphone("iphone16pro", "iPhone 16 Pro", "iPhone17,1", "A18 Pro", 8),
    _iphone("iphone16promax", "iPhone 16 Pro Max", "iPhone17,2", "A18 Pro", 8),
    _iphone("iphone16", "iPhone 16", "iPhone17,3", "A18", 8),
    _iphone("iphone16plus", "iPhone 16 Plus", "iPhone17,4", "A18", 8),
    _iphone("iphone16e", "iPhone 16e", "iPhone17,5", "A18", 8),
    _android("pixel6", "Pixel 6", ["oriole"], "Google Tensor", "Mali-G78 MP20", _TENSOR_NPU, 8),
    _android("pixel6pro", "Pixel 6 Pro", ["raven"], "Google Tensor", "Mali-G78 MP20", _TENSOR_NPU, 12),
    _android("pixel6a", "Pixel 6a", ["bluejay"], "Google Tensor", "Mali-G78 MP20", _TENSOR_NPU, 6),
    _android("pixel7", "Pixel 7", ["panther"], "Google Tensor G2", "Mali-G710 MP7", _TENSOR_NPU, 8),
    _android("pixel7pro", "Pixel 7 Pro", ["cheetah"], "Google Tensor G2", "Mali-G710 MP7", _TENSOR_NPU, 12),
    _android("pixel7a", "Pixel 7a", ["lynx"], "Google Tensor G2", "Mali-G710 MP7", _TENSOR_NPU, 8),
    _android("pixel8", "Pixel 8", ["shiba"], "Google Tensor G3", "Immortalis-G715s MC10", _TENSOR_NPU, 8),
    _android("pixel8pro", "Pixel 8 Pro", ["husky"], "Google Tensor G3", "Immortalis-G715s MC10", _TENSOR_NPU, 12),
    _android("pixel8a", "Pixel 8a", ["akita"], "Google Tensor G3", "Immortalis-G715s MC10", _TENSOR_NPU, 8),
    _android("pixel9", "Pixel 9", ["tokay"], "Google Tensor G4", "Mali-G715 MC7", _TENSOR_NPU, 12),
    _android("pixel9pro", "Pixel 9 Pro", ["caiman"], "Google Tensor G4", "Mali-G715 MC7", _TENSOR_NPU, 16),
    _android("pixel9proxl", "Pixel 9 Pro XL", ["komodo"], "Google Tensor G4", "Mali-G715 MC7", _TENSOR_NPU, 16),
    _android("galaxy-s23", "Galaxy S23", ["dm1q"], "Snapdragon 8 Gen 2 for Galaxy", "Adreno 740", _HEXAGON, 8,
             aliases=("s23",)),
    _android("galaxy-s23-ultra", "Galaxy S23 Ultra", ["dm3q"], "Snapdragon 8 Gen 2 for Galaxy", "Adreno 740",
             _HEXAGON, 8, aliases=("s23ultra",)),
    _android("galaxy-s24", "Galaxy S24", ["e1s", "e1q"], "Exynos 2400 (e1s) / Snapdragon 8 Gen 3 for Galaxy (e1q)",
             "Xclipse 940 (e1s) / Adreno 750 (e1q)", "Samsung NPU (e1s) / Qualcomm Hexagon NPU (e1q), through NNAPI",
             8, aliases=("s24",), notes="The SoC depends on the region; `vitdeploy devices` shows which one is attached."),
    _android("galaxy-s24-ultra", "Galaxy S24 Ultra", ["e3q"], "Snapdragon 8 Gen 3 for Galaxy", "Adreno 750",
             _HEXAGON, 12, aliases=("s24ultra",)),
    _android("galaxy-s25", "Galaxy S25", ["pa1q"], "Snapdragon 8 Elite for Galaxy", "Adreno 830", _HEXAGON, 12,
             aliases=("s25",)),
    DeviceSpec(name="host", platform="host", marketing_name="This computer", identifiers=(), soc="host CPU",
               compute_units=("xnnpack", "cpu"), aliases=("local",),
               notes="Runs the .tflite with the host LiteRT runtime; `vitdeploy devices` shows the CPU."),
)

_BY_NAME = {spec.name: spec for spec in CATALOG}


def _norm(name: str) -> str:
    """iPhone 12, iphone-12 and IPHONE_12 all mean iphone12; galaxy-s23 keeps its dashes."""
    s = name.strip().lower()
    s = re.sub(r"^(samsung|google)[\s_-]+", "", s)
    return re.sub(r"[\s_\-]+", "", s)


_NORMALIZED: dict[str, DeviceSpec] = {}
for _spec in CATALOG:
    for _key in (_spec.name, _spec.marketing_name, *_spec.aliases):
        _NORMALIZED[_norm(_key)] = _spec


def catalog_names() -> list[str]:
    return [spec.name for spec in CATALOG]


def lookup(name: str) -> DeviceSpec | None:
    """The catalog entry for a name as users type it, or None."""
    return _NORMALIZED.get(_norm(name))


def get_device(name: str) -> DeviceSpec:
    """The catalog entry for `name`, or a one-line error with a suggestion."""
    spec = lookup(name)
    if spec is None:
        raise VitdeployError(unknown_device_message(name))
    return spec


def unknown_device_message(name: str, serials: list[str] = ()) -> str:
    candidates = {key: spec.name for key, spec in _NORMALIZED.items()}
    candidates.update({s.lower(): s for s in serials})  # serials compare case-blind, print as they are
    close = difflib.get_close_matches(_norm(name), list(candidates), n=1, cutoff=0.6)
    hint = f" (did you mean {candidates[close[0]]}?)" if close else ""
    return (f"unknown device {name!r}{hint}; known: {', '.join(catalog_names())}, "
            "or the serial/UDID of a connected phone (`vitdeploy devices`)")


def match_android(codename: str | None, model: str | None = None) -> DeviceSpec | None:
    """The entry for an attached Android phone, by ro.product.device, else by model name."""
    for spec in CATALOG:
        if spec.platform == "android" and codename and codename in spec.identifiers:
            return spec
    if model:
        spec = lookup(model)
        if spec and spec.platform == "android":
            return spec
    return None


def match_ios(product_type: str | None) -> DeviceSpec | None:
    for spec in CATALOG:
        if spec.platform == "ios" and product_type in spec.identifiers:
            return spec
    return None


@dataclass
class ResolvedDevice:
    """What --device named: a catalog entry, a connected phone, or both."""

    platform: str
    spec: DeviceSpec | None = None
    serial: str | None = None          # adb serial or iOS UDID when a specific phone was named
    connected: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name if self.spec else (self.serial or "?")


def resolve_device(name_or_serial: str, connected) -> ResolvedDevice:
    """Resolve a catalog name (pixel7, iphone12, host) or a connected serial/UDID.

    ``connected`` is the device list from discovery, or a callable returning it (called only when the
    name is not in the catalog: discovery runs adb and idevice tools). The catalog stays a leaf:
    ``vitdeploy.devices.resolve_device`` passes the discovery.
    """
    if not isinstance(name_or_serial, str) or not name_or_serial.strip():
        raise VitdeployError("--device needs a name such as pixel7, iphone12 or host, or a serial")
    spec = lookup(name_or_serial)
    if spec is not None:
        return ResolvedDevice(platform=spec.platform, spec=spec)
    if callable(connected):
        connected = connected()
    for d in connected:
        if name_or_serial in (d.get("serial"), d.get("udid")):
            entry = lookup(d["catalog"]) if d.get("catalog") else None
            return ResolvedDevice(platform=d["platform"], spec=entry, serial=d.get("serial") or d.get("udid"),
                                  connected=d)
    serials = [d.get("serial") or d.get("udid") for d in connected if d.get("serial") or d.get("udid")]
    raise VitdeployError(unknown_device_message(name_or_serial, serials))


# -- farm device names -> SoC and vendor -----------------------------------------------------------
# Hosted farms (AWS Device Farm, Qualcomm AI Hub) name phones by marketing name ("Google Pixel 7",
# "Samsung Galaxy S23 (Family)", "Apple iPhone 15"). The comparison table and the plot colour by SoC
# vendor, so each common farm phone maps to its SoC here (vendor specifications). A Galaxy sold with an
# Exynos in some regions and a Snapdragon in others is (exynos, snapdragon): the name (or the Samsung model
# code in it, SM-S921U vs SM-S921B) picks one; otherwise both are shown and the vendor stays unknown.
SOC_VENDORS = (("Snapdragon", "Qualcomm"), ("Qualcomm", "Qualcomm"), ("Exynos", "Samsung"), ("Tensor", "Google"),
               ("Dimensity", "MediaTek"), ("Helio", "MediaTek"), ("Kirin", "HiSilicon"), ("Apple", "Apple"))
_SD = "Snapdragon"
FARM_SOCS: dict[str, str | tuple[str, str]] = {
    "galaxys21": ("Exynos 2100", f"{_SD} 888"), "galaxys21plus": ("Exynos 2100", f"{_SD} 888"),
    "galaxys21ultra": ("Exynos 2100", f"{_SD} 888"), "galaxys21fe": ("Exynos 2100", f"{_SD} 888"),
    "galaxys22": ("Exynos 2200", f"{_SD} 8 Gen 1"), "galaxys22plus": ("Exynos 2200", f"{_SD} 8 Gen 1"),
    "galaxys22ultra": ("Exynos 2200", f"{_SD} 8 Gen 1"),
    "galaxys23": f"{_SD} 8 Gen 2 for Galaxy", "galaxys23plus": f"{_SD} 8 Gen 2 for Galaxy",
    "galaxys23ultra": f"{_SD} 8 Gen 2 for Galaxy", "galaxys23fe": ("Exynos 2200", f"{_SD} 8 Gen 1"),
    "galaxys24": ("Exynos 2400", f"{_SD} 8 Gen 3 for Galaxy"), "galaxys24plus": ("Exynos 2400", f"{_SD} 8 Gen 3 for Galaxy"),
    "galaxys24ultra": f"{_SD} 8 Gen 3 for Galaxy", "galaxys24fe": ("Exynos 2400e", f"{_SD} 8 Gen 3"),
    "galaxys25": f"{_SD} 8 Elite for Galaxy", "galaxys25plus": f"{_SD} 8 Elite for Galaxy",
    "galaxys25ultra": f"{_SD} 8 Elite for Galaxy",
    "galaxya54": "Exynos 1380", "galaxya53": "Exynos 1280", "galaxya34": "Dimensity 1080",
    "galaxytabs8": f"{_SD} 8 Gen 1", "galaxytabs9": f"{_SD} 8 Gen 2 for Galaxy",
    "oneplus9": f"{_SD} 888", "oneplus9pro": f"{_SD} 888", "oneplus10pro": f"{_SD} 8 Gen 1",
    "oneplus11": f"{_SD} 8 Gen 2", "oneplus12": f"{_SD} 8 Gen 3", "oneplus13": f"{_SD} 8 Elite",
    "oneplusnord2": "Dimensity 1200", "oneplusnordce3": f"{_SD} 782G",
    "xiaomi12": f"{_SD} 8 Gen 1", "xiaomi13": f"{_SD} 8 Gen 2", "xiaomi13pro": f"{_SD} 8 Gen 2",
    "xiaomi14": f"{_SD} 8 Gen 3", "xiaomi14pro": f"{_SD} 8 Gen 3", "xiaomi13tpro": "Dimensity 9200+",
    "xiaomiredminote12": f"{_SD} 685", "xiaomiredminote13pro": f"{_SD} 7s Gen 2", "redminote12": f"{_SD} 685",
    "redminote13pro": f"{_SD} 7s Gen 2", "xiaomiredminote11": f"{_SD} 680", "redminote11": f"{_SD} 680",
    "pixel9profold": "Google Tensor G4",
    # Qualcomm's reference hardware on AI Hub.
    "snapdragon8gen3qrd": f"{_SD} 8 Gen 3", "snapdragon8eliteqrd": f"{_SD} 8 Elite",
}
# Samsung model codes: SM-S921U / U1 / W / 0 (US, Canada, China) carry the Snapdragon; B / N / E the Exynos.
_SAMSUNG_CODE = re.compile(r"\bSM-[A-Z]\d{3,4}([A-Z0-9]*)", re.I)


def _farm_key(name: str) -> str:
    s = name.lower().replace("+", " plus")
    s = re.sub(r"\([^)]*\)", " ", s)  # "(Family)", "(SM-S921U)"
    s = re.sub(r"\b(apple|google|samsung|5g|exynos|snapdragon|qualcomm)\b", " ", s)
    return re.sub(r"[^a-z0-9]+", "", s)


def vendor_of(soc: str | None) -> str | None:
    """The SoC vendor (Qualcomm, Samsung, Google, MediaTek, Apple, HiSilicon), or None if unknown."""
    if not soc:
        return None
    if re.match(r"^(Apple )?[AM]\d{1,2}\b", soc):
        return "Apple"
    hits = {vendor for word, vendor in SOC_VENDORS if word.lower() in soc.lower()}
    return hits.pop() if len(hits) == 1 else None


def soc_of(name: str | None, soc: str | None = None, model_id: str | None = None) -> tuple[str | None, str | None]:
    """(SoC, vendor) of a phone a farm or adb names: ``soc`` as reported wins (getprop, AI Hub's chipset
    attribute); else the name ("Samsung Galaxy S24 (SM-S921U)", "Google Pixel 7", "Apple iPhone 15")."""
    if soc:
        return soc, vendor_of(soc)
    if not name:
        return None, None
    key = _farm_key(name)
    entry = FARM_SOCS.get(key)
    if entry is None:
        spec = _NORMALIZED.get(key) or lookup(name)
        if spec is None or spec.platform == "host":
            return None, None
        entry = spec.soc
    if isinstance(entry, tuple):
        exynos, snapdragon = entry
        text = f"{name} {model_id or ''}"
        code = _SAMSUNG_CODE.search(text)
        if "snapdragon" in text.lower() or "qualcomm" in text.lower() or (
                code and code.group(1)[:1].upper() in ("U", "W", "0")):
            entry = snapdragon
        elif "exynos" in text.lower() or (code and code.group(1)[:1].upper() in ("B", "N", "E")):
            entry = exynos
        else:
            return f"{exynos} / {snapdragon}", None
    return entry, vendor_of(entry)
