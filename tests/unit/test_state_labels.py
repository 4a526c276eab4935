"""Every field of the case state has a label on the pages (issue 16: the audit page's change
table and state panel show labelled fields, never raw names such as ``overdue_for``).

The labels are ``field.<name>`` entries of the shared catalogue
(gateways/web/static/shared/messages.js) in zh-Hans, zh-Hant and English; the fields are those
of the state dataclass (``aggregates/state.py``) plus the ones the audit history adds to a
snapshot (``projections/audit/history.py``). A field added to ``CaseState`` without a label
fails here."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from aggregates.state import CaseState
from projections.audit.history import _DERIVED

CATALOGUE = Path(__file__).resolve().parents[2] / "gateways/web/static/shared/messages.js"
ENTRY = re.compile(r'^\s*("(?:[^"\\]|\\.)*")\s*:\s*(\[.*\])\s*,?\s*$')


def catalogue() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in CATALOGUE.read_text(encoding="utf-8").splitlines():
        m = ENTRY.match(line)
        if m:
            key = json.loads(m.group(1))
            assert key not in out, f"{key} twice in the catalogue"
            out[key] = json.loads(m.group(2))
    return out


def test_every_state_field_has_a_label_in_three_languages() -> None:
    words = catalogue()
    fields = [f.name for f in dataclasses.fields(CaseState)] + list(_DERIVED)
    missing = [name for name in fields if f"field.{name}" not in words]
    assert not missing, f"fields without a label (field.<name> in messages.js): {missing}"
    for name in fields:
        zh_hans, zh_hant, en = words[f"field.{name}"]
        assert zh_hans and zh_hant and en, name
        assert not re.search(r"[a-z]_[a-z]", zh_hans + en), f"{name}: a raw name as its label"
