"""The generated section of docs/performance.md is replaced in place; the rest is kept."""

from __future__ import annotations

from pathlib import Path

from benchmarks.standard import END, START, report, write_into


def test_section_is_replaced_not_appended(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\nanalysis before\n", encoding="utf-8")
    write_into(doc, report({"intake": {"visible_per_s": 1}}, "gridctl bench --cases 1"))
    text = doc.read_text(encoding="utf-8")
    doc.write_text(text + "\nanalysis after\n", encoding="utf-8")
    write_into(doc, report({"intake": {"visible_per_s": 2}}, "gridctl bench --cases 2"))
    final = doc.read_text(encoding="utf-8")
    assert final.count(START) == final.count(END) == 1
    assert "analysis before" in final and "analysis after" in final
    assert '"visible_per_s": 2' in final and '"visible_per_s": 1' not in final
    assert "gridctl bench --cases 2" in final
