"""Private segments name the public functions that reach them (fleet.analysis.entry_points), and the
prompt's task line says so."""

from __future__ import annotations

from fleet.analysis import analyse
from fleet.trm import prompts

SOURCE = '''\
import functools


def convert(obj):
    return _convert(obj)


@functools.singledispatch
def _convert(obj):
    raise TypeError(obj)


@_convert.register(list)
def _(obj):
    return [_convert(x) for x in obj]


@_convert.register(dict)
def _(obj):
    for _ in range(1):
        pass
    return {k: _convert(v) for k, v in obj.items()}


class Lazy:
    def get(self, *args):
        return self._compute(*args)

    def _compute(self, *args):
        return _helper(args)


def _helper(args):
    return args


def _unused():
    return 1
'''


def entries() -> dict[tuple[str, int], tuple[str, ...]]:
    return {(seg.name, seg.start): seg.entry for seg in analyse(SOURCE, "conv").segments}


def test_registered_implementations_are_reached_through_the_public_dispatcher():
    found = entries()
    assert found["_convert", 8] == ("convert",)
    assert found["_", 13] == ("convert",) and found["_", 18] == ("convert",)


def test_private_methods_and_helpers_follow_private_callers():
    found = entries()
    assert found["Lazy._compute", 29] == ("Lazy.get",)
    assert found["_helper", 33] == ("Lazy.get",)


def test_public_and_unreachable_segments_have_no_entry():
    found = entries()
    assert found["convert", 4] == () and found["Lazy.get", 26] == ()
    assert found["_unused", 37] == ()


def test_the_task_line_names_the_entry():
    analysis = analyse(SOURCE, "conv")
    focus = prompts.Focus(tuple(s for s in analysis.segments if s.name == "_helper"))
    text = prompts.build("conv", SOURCE, analysis, focus, max_source_chars=10000)[-1].content
    assert "- `def _helper(args)` (private: call it through `Lazy.get`)" in text


def focus_on(analysis, *names: str) -> prompts.Focus:
    return prompts.Focus(tuple(s for s in analysis.segments if s.name in names))


def test_the_reply_imports_the_entries_of_private_segments_and_the_owners_of_methods():
    analysis = analyse(SOURCE, "conv")
    assert prompts.import_names(analysis, focus_on(analysis, "_", "_helper")) == ["convert", "Lazy"]
    assert prompts.import_names(analysis, focus_on(analysis, "Lazy.get")) == ["Lazy"]
    assert prompts.import_names(analysis, focus_on(analysis, "_unused")) == ["_unused"]  # no public way in
    assert prompts.import_names(analysis, prompts.Focus()) == ["Lazy", "convert"]  # the public API


def test_the_prefill_is_a_complete_import_line():
    assert prompts.prefill("conv", ["convert", "Lazy"]) == "```python\nimport pytest\nfrom conv import convert, Lazy\n\n"
    assert prompts.prefill("conv", []) == "```python\nimport pytest\nimport conv\n\n"
