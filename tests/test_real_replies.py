"""Parsing real replies of the default model (Qwen2.5-Coder-1.5B) that once lost their tests.

Each fixture is ``import pytest`` and the text the model produced after the prefilled
``from <module> import `` (the prefill of that time; it is now a complete import line)."""

from __future__ import annotations

import ast
from pathlib import Path

from fleet.trm.parse import parse_reply

REPLIES = Path(__file__).parent / "fixtures" / "replies"


def parse(name: str):
    return parse_reply((REPLIES / name).read_text(), frozenset())


def test_unindented_triple_quoted_strings_do_not_split_the_reply():
    """Test data at column 0 inside triple quotes, and an import completed with a comment only."""
    parsed = parse("numpydoc_unindented_strings.txt")
    assert [u.name for u in parsed.units] == [
        "test_ParamSection__parse_item", "test_ParamSection__parse_item_with_default", "test__KVSection_parse",
        "test__KVSection_parse_with_default", "test_ReturnsSection__parse_item",
        "test_ReturnsSection__parse_item_with_default"]
    assert parsed.rejected == []


def test_an_import_line_completed_with_a_comment_is_dropped():
    parsed = parse("monetary_comment_after_import.txt")
    assert [u.name for u in parsed.units] == [  # the methods of its class TestSomeMoney, each on its own
        "test_convert_to_same_currency", "test_convert_to_different_currency",
        "test_convert_to_same_currency_with_strict", "test_convert_to_different_currency_with_strict"]
    assert parsed.units[0].source.startswith("def test_convert_to_same_currency(fx_rate_service, some_money):")
    assert not any(i.rstrip().endswith("import") for i in parsed.imports)


def test_a_reply_cut_at_max_tokens_keeps_its_complete_tests():
    parsed = parse("numpydoc_cut_at_max_tokens.txt")
    assert len(parsed.units) == 7
    for unit in parsed.units:
        ast.parse(unit.source)
        assert unit.asserts >= 1
    last = parsed.units[-1]  # the unfinished statement at the cut is trimmed, the rest of the test kept
    assert last.source.rstrip().endswith("assert docstring.meta[0].description == 'Description of arg1.'")
    assert "meta[1]" not in last.source


def test_spaces_in_a_test_name_are_joined_and_a_cut_last_test_is_the_only_loss():
    parsed = parse("monetary_spaces_in_test_names.txt")
    assert [u.name for u in parsed.units] == [
        "test_gt", "test_gte", "test_lt", "test_gte_with_Undefined_money", "test_lt_with_Undefined_money"]
    assert [(r.name, r.reason) for r in parsed.rejected] == [("test_gt_with_Undefined_money", "syntax")]
