"""Debian packages without dpkg or root: read a Packages index, resolve a dependency closure, unpack .debs.

Why not ``debootstrap``/``apt-get``: both need Debian tooling on the host (and ``debootstrap`` wants root
for its second stage); ``dpkg --add-architecture arm64`` + ``python3:arm64`` would replace the host's
python3. Here everything is plain HTTPS downloads checked against the index's SHA-256 and unpacked into
a folder the caller owns, which works from any Linux, in a container, as any user.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import re
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import VitdeployError

MIRROR = "https://deb.debian.org/debian"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    filename: str  # path under the mirror
    size: int
    sha256: str
    depends: tuple[str, ...]  # first alternative of each Depends/Pre-Depends entry, versions dropped


def fetch(url: str, *, timeout: float = 60.0, progress=None) -> bytes:
    """The bytes at ``url``; ``progress(n_bytes)`` after each chunk. One-line error when unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            chunks = []
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
                if progress:
                    progress(len(chunk))
            return b"".join(chunks)
    except OSError as e:  # URLError, timeouts, resets
        raise VitdeployError(f"cannot download {url} ({getattr(e, 'reason', e)}); the ARM emulator setup needs "
                             "HTTPS access to deb.debian.org and PyPI") from None


def read_index(suite: str, arch: str, *, mirror: str = MIRROR) -> dict[str, Package]:
    """``dists/SUITE/main/binary-ARCH/Packages.xz`` as name -> Package (virtual names map to a provider)."""
    text = lzma.decompress(fetch(f"{mirror}/dists/{suite}/main/binary-{arch}/Packages.xz")).decode("utf-8", "replace")
    return parse_index(text)


def parse_index(text: str) -> dict[str, Package]:
    packages: dict[str, Package] = {}
    provides: dict[str, str] = {}
    for stanza in text.split("\n\n"):
        fields = _fields(stanza)
        if "Package" not in fields or "Filename" not in fields:
            continue
        deps = tuple(_first_alternative(d) for key in ("Pre-Depends", "Depends")
                     for d in fields.get(key, "").split(",") if d.strip())
        pkg = Package(fields["Package"], fields.get("Version", ""), fields["Filename"], int(fields.get("Size", 0)),
                      fields.get("SHA256", ""), deps)
        packages.setdefault(pkg.name, pkg)
        for virtual in fields.get("Provides", "").split(","):
            if virtual.strip():
                provides.setdefault(_first_alternative(virtual), pkg.name)
    for virtual, real in provides.items():
        packages.setdefault(virtual, packages[real])
    return packages


def _fields(stanza: str) -> dict[str, str]:
    fields, key = {}, None
    for line in stanza.splitlines():
        if line[:1] in (" ", "\t") and key:  # a continuation line (Description bodies)
            continue
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _first_alternative(dep: str) -> str:
    """``libc6 (>= 2.34) | libc6-udeb`` -> ``libc6``; ``python3:any`` -> ``python3``."""
    name = dep.split("|")[0].strip()
    name = re.sub(r"\s*[(\[].*$", "", name)
    return name.split(":")[0].strip()


def closure(index: dict[str, Package], roots: list[str], *, skip: frozenset[str] = frozenset()) -> list[Package]:
    """The packages ``roots`` need, depth-first, each once; ``skip`` names ones never to follow."""
    seen: dict[str, Package] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in skip:
            continue
        if name not in index:
            if name in roots:
                raise VitdeployError(f"Debian package {name} not in the index")
            continue  # an optional virtual package nothing provides here
        pkg = index[name]
        if pkg.name in seen:
            continue
        seen[pkg.name] = pkg
        todo.extend(pkg.depends)
    return sorted(seen.values(), key=lambda p: p.name)


def download(pkg: Package, *, mirror: str = MIRROR, progress=None) -> bytes:
    data = fetch(f"{mirror}/{pkg.filename}", progress=progress)
    if pkg.sha256 and hashlib.sha256(data).hexdigest() != pkg.sha256:
        raise VitdeployError(f"{pkg.filename}: SHA-256 differs from the Debian index (download damaged); run again")
    return data


def deb_members(deb: bytes) -> dict[str, bytes]:
    """The members of a .deb (an ``ar`` archive): debian-binary, control.tar.*, data.tar.*."""
    if not deb.startswith(b"!<arch>\n"):
        raise VitdeployError("not a .deb (ar) archive")
    members, pos = {}, 8
    while pos + 60 <= len(deb):
        header = deb[pos:pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        members[name] = deb[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)
    return members


def extract_deb(deb: bytes, dest: Path, *, only: tuple[str, ...] = ()) -> list[str]:
    """Unpack a .deb's data into ``dest`` (paths kept; links kept inside ``dest``); ``only`` limits to those paths.

    Returns the member names written. Refuses absolute paths and ``..`` (the archive is downloaded data).
    """
    members = deb_members(deb)
    data_name = next((n for n in members if n.startswith("data.tar")), None)
    if data_name is None:
        raise VitdeployError("a .deb without data.tar")
    if data_name.endswith(".zst"):
        raise VitdeployError("a zstd-compressed .deb: unpack it with dpkg-deb (Python 3.11 has no zstd)")
    written = []
    with tarfile.open(fileobj=io.BytesIO(members[data_name]), mode="r:*") as archive:
        for member in archive.getmembers():
            name = member.name[2:] if member.name.startswith("./") else member.name
            if not name or (only and f"./{name}" not in only and name not in only):
                continue
            if name.startswith("/") or ".." in Path(name).parts:
                raise VitdeployError(f"unsafe path in .deb: {member.name}")
            if member.isdev():
                continue
            member.name = name
            archive.extract(member, dest, set_attrs=member.isfile(), filter="tar" if hasattr(tarfile, "tar_filter") else None)
            written.append(name)
    return written
