"""Collects figures and prints them as one table."""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field


@dataclass
class Figure:
    section: str
    name: str
    value: float | None
    unit: str = ""
    ratio: float | None = None
    ratio_to: str = ""
    target: str = ""
    note: str = ""


@dataclass
class Report:
    mode: str
    figures: list[Figure] = field(default_factory=list)
    # Wall-clock seconds per section, and how the run was made (command, CPUs, machine load).
    seconds: dict[str, float] = field(default_factory=dict)
    context: dict[str, object] = field(default_factory=dict)
    # Per section: text printed after the figures (e.g. a growth table), and structured
    # results recorded in the JSON only.
    tables: dict[str, str] = field(default_factory=dict)
    details: dict[str, object] = field(default_factory=dict)

    def add(self, section: str, name: str, value: float | None, **extra: object) -> None:
        self.figures.append(Figure(section, name, value, **extra))  # type: ignore[arg-type]

    def has_errors(self) -> bool:
        return any(f.name == "error" for f in self.figures)

    def as_dict(self) -> dict:
        return {
            "mode": self.mode,
            "python": platform.python_version(),
            "machine": platform.machine(),
            **self.context,
            "section_seconds": self.seconds,
            "figures": [asdict(f) for f in self.figures],
            "tables": self.tables,
            "details": self.details,
        }

    def table(self) -> str:
        rows = [("section", "figure", "value", "ratio", "against", "target", "note")]
        for f in self.figures:
            value = "" if f.value is None else f"{f.value:,.4g} {f.unit}".strip()
            ratio = "" if f.ratio is None else f"{f.ratio:,.3g}x"
            rows.append((f.section, f.name, value, ratio, f.ratio_to, f.target, f.note))
        widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        for text in self.tables.values():
            lines.append(f"\n{text}")
        if self.seconds:
            spent = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in self.seconds.items())
            lines.append(f"\n{self.mode} run: {spent}")
        if self.context:
            lines.append(", ".join(f"{key} {value}" for key, value in self.context.items()))
        return "\n".join(line.rstrip() for line in lines)
