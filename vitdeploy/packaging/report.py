"""What a packaging run did: :class:`PackageReport` (shared by the platform modules)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class PackageReport:
    """What :func:`vitdeploy.packaging.package` did (JSON-able through :meth:`to_dict`)."""

    platform: str
    artifact: Path
    destination: Path
    mode: str  # "into" (an app project) or "out" (a plain folder)
    written: list[dict] = field(default_factory=list)  # {"path", "bytes"}
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"}
    project: dict = field(default_factory=dict)  # what was detected about the app project
    project_edit: str = "none"  # "pbxproj" | "synchronized-folder" | "none"
    warnings: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"platform": self.platform, "artifact": str(self.artifact), "destination": str(self.destination),
                "mode": self.mode, "written": self.written, "skipped": self.skipped, "project": self.project,
                "project_edit": self.project_edit, "warnings": self.warnings, "next_steps": self.next_steps}

    def lines(self) -> list[str]:
        """Human-readable summary (what the CLI prints)."""
        out = [f"packaged {self.artifact.name} for {self.platform} -> {self.destination}"]
        out += [f"  wrote   {w['path']} ({w['bytes']} bytes)" for w in self.written]
        out += [f"  skipped {s['path']} ({s['reason']})" for s in self.skipped]
        if self.mode == "into" and self.platform == "ios":
            out.append({"pbxproj": "  Xcode project: files added to project.pbxproj",
                        "synchronized-folder": "  Xcode project: synchronized folder, files dropped in (no pbxproj edit)",
                        "none": "  Xcode project: already references every file (no pbxproj edit)"}[self.project_edit])
        out += [f"  warning: {w}" for w in self.warnings]
        out += [f"  next: {s}" for s in self.next_steps]
        return out
