"""The prompt template: {name} and {obj.attr} from the notebook, strictly (nothing sent on error)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indox_jupyter._prompt import PromptError, interpolate, names_in
from indox_jupyter.errors import ValidationError

NS = {"animal": "red fox", "scene": SimpleNamespace(season="winter", light=SimpleNamespace(kind="dawn")),
      "tags": {"mood": "calm"}, "colours": ["teal", "amber"], "ratio": 1.5}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("a {animal}", "a red fox"),
        ("{scene.season} at {scene.light.kind}", "winter at dawn"),
        ("{tags[mood]} and {colours[1]}", "calm and amber"),
        ("{ratio:.2f} {animal!r}", "1.50 'red fox'"),
        ("{{literal}} {animal}", "{literal} red fox"),
        ('json {{"a": 1}}', 'json {"a": 1}'),
        ("no fields at all", "no fields at all"),
    ],
)
def test_fills_from_namespace(template, expected):
    assert interpolate(template, NS) == expected


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{missing}", "no variable named 'missing'"),
        ("{scene.nope}", "no attribute 'nope'"),
        ("{scene._secret}", "private attribute"),
        ("{animal.__class__}", "private attribute"),
        ("{tags[nope]}", "no item"),
        ("{}", "empty {}"),
        ("{0}", "position"),
        ("a { b", "stray brace"),
        ("a } b", "stray brace"),
        ("{ratio:zz}", "bad format"),
        ("{a b}", "not a variable name"),
    ],
)
def test_bad_templates_are_clear_errors(template, fragment):
    with pytest.raises(PromptError) as info:
        interpolate(template, NS)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert isinstance(info.value, ValidationError)  # the magic turns these into one UsageError line


def test_does_not_evaluate_expressions():
    with pytest.raises(PromptError):
        interpolate("{__import__('os').getcwd()}", {"__import__": __import__})


def test_names_in():
    assert names_in("{a} {b.c} {a} {{d}}") == ["a", "b"]


@given(st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=200))
def test_text_without_braces_is_unchanged(text):
    assert interpolate(text, {}) == text


@given(st.text(max_size=100))
def test_doubled_braces_round_trip(text):
    escaped = text.replace("{", "{{").replace("}", "}}")
    assert interpolate(escaped, {}) == text


def test_huge_format_width_is_refused_before_building_it():
    from indox_jupyter._prompt import PromptError, interpolate

    with pytest.raises(PromptError, match="more than 10,000 characters"):
        interpolate("{x:x>2000000000}", {"x": "a"})
    assert interpolate("{x:>5}", {"x": "a"}) == "    a"
