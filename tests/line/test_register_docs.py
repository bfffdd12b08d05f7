"""One register table: the code's (block.py), the two documents and the ST program agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from defectgate.line import block as B

ROOT = Path(__file__).resolve().parents[2]
ST = ROOT / "deploy" / "plc" / "defectgate_result.st"


@pytest.mark.parametrize("doc", ["docs/line-integration.md", "deploy/plc/README.md"])
def test_the_documents_show_the_codes_table(doc):
    text = (ROOT / doc).read_text()
    m = re.search(r"<!-- register-table:begin -->\n(.*?)\n<!-- register-table:end -->", text, re.S)
    assert m, f"{doc}: no register-table markers"
    assert m.group(1) == B.markdown_table(), f"{doc}: regenerate with python -m defectgate.line.block"


def _st_constants(prefix: str) -> dict[str, int]:
    text = ST.read_text()
    found = re.findall(rf"\b{prefix}(\w+)\s*:\s*\w+\s*:=\s*(16#[0-9A-Fa-f]+|\d+);", text)
    return {name: int(value[3:], 16) if value.startswith("16#") else int(value) for name, value in found}


def test_the_st_programs_word_offsets_are_the_table():
    st = _st_constants("DG_W_")
    assert st == {f.name.upper(): f.offset for f in B.TABLE}


def test_the_st_programs_bits_and_codes_are_the_codes():
    assert _st_constants("DG_ST_") == {b.name: b.value for b in B.StationBits}
    assert _st_constants("DG_PS_") == {b.name: b.value for b in B.PlcBits}
    assert _st_constants("DG_RC_") == {c.name: c.value for c in B.ResultCode}
