from __future__ import annotations

from pathlib import Path

from ..analysis.pipeline import Analysis


class Renderer:
    """Turns an Analysis into one output document."""

    def render(self, analysis: Analysis) -> str:
        raise NotImplementedError

    def write(self, analysis: Analysis, path: str | Path) -> Path:
        p = Path(path)
        p.write_text(self.render(analysis), encoding="utf-8")
        return p
