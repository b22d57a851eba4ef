"""The renderer: escaped HTML grid, WebP previews a twentieth of the PNG, revised-prompt diff."""

from __future__ import annotations

import base64
import io
import re

import pytest
from PIL import Image, ImageDraw, ImageFilter

from indox_jupyter import ImageResult
from indox_jupyter.render import (
    ModelsTable,
    PreviewOptions,
    UsageView,
    encode_preview,
    render_result,
    result_mimebundle,
    word_diff_html,
)
from indox_jupyter._models import ImageModel


def photo_png(size: int = 1024, seed: int = 1) -> bytes:
    """A photograph-like PNG: smooth colour fields plus multi-scale grain (no flat areas)."""
    import random

    rng = random.Random(seed)
    base = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(base)
    for y in range(size):  # a sky-to-ground gradient
        t = y / size
        draw.line([(0, y), (size, y)], fill=(int(90 + 120 * t), int(140 + 60 * t), int(220 - 150 * t)))
    for _ in range(40):  # soft shapes
        x, y, r = rng.randrange(size), rng.randrange(size), rng.randrange(20, 200)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(rng.randrange(256) for _ in range(3)))
    base = base.filter(ImageFilter.GaussianBlur(6))
    for scale, weight in ((1, 0.10), (4, 0.12)):
        grain = Image.effect_noise((size // scale, size // scale), 60).resize((size, size)).convert("RGB")
        base = Image.blend(base, grain, weight)
    out = io.BytesIO()
    base.save(out, "PNG")
    return out.getvalue()


def flat_png(size: int = 64, colour=(200, 30, 30, 255), mode="RGBA") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (size, size), colour[: len(mode)]).save(out, "PNG")
    return out.getvalue()


def make_result(pngs, *, prompt="a red fox", revised=None, cost=0.04, params=None, url=None) -> ImageResult:
    data = []
    for i, png in enumerate(pngs):
        item = {"b64_json": base64.b64encode(png).decode(), "index": i}
        if revised:
            item["revised_prompt"] = revised[i] if isinstance(revised, list) else revised
        if url:
            item["url"] = url
        data.append(item)
    return ImageResult({"data": data, "usage": {"cost": cost}, "model": "dall-e-3", "provider": "openai",
                        "request_id": "req-1"}, prompt=prompt, params=params or {"size": "1024x1024"})


def test_bundle_is_standard_html_and_plain_with_provenance():
    result = make_result([flat_png()], revised="A vivid red fox")
    data, metadata = render_result(result)
    assert set(data) == {"text/html", "text/plain"}
    assert metadata == {"indox_jupyter": {"model": "openai/dall-e-3", "prompt": "a red fox", "request_id": "req-1"}}
    assert result_mimebundle(result) == data
    assert "<script" not in data["text/html"] and "<style" not in data["text/html"]
    assert 'src="data:image/webp;base64,' in data["text/html"]
    assert "openai/dall-e-3 · 1 image" in data["text/plain"]
    assert "[0] revised: A vivid red fox" in data["text/plain"]


def test_repr_mimebundle_hook_uses_renderer():
    result = make_result([flat_png()])
    assert result._repr_mimebundle_()["text/html"].startswith('<div class="indox-result ')


def test_everything_user_supplied_is_escaped():
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    result = make_result([flat_png()], prompt=evil, revised=evil + " with more")
    html = render_result(result)[0]["text/html"]
    assert "<script" not in html and "<img src=x" not in html
    assert "&lt;script&gt;" in html
    # the alt text is attribute-escaped too
    assert 'onerror=alert(1)>"' not in html


def test_undecodable_image_shows_escaped_error_instead_of_raising():
    result = ImageResult({"data": [{"b64_json": base64.b64encode(b"<html>nope</html>").decode()}]},
                         prompt="p", params={})
    html = render_result(result)[0]["text/html"]
    assert "could not be shown" in html
    assert "<html>" not in html


def test_provider_urls_are_not_written_out():
    result = make_result([flat_png()], url="https://files.example/img.png?sig=SECRETSIG")
    data, metadata = render_result(result)
    assert "SECRETSIG" not in str(data) + str(metadata)


def test_grid_facts_cost_and_settings():
    result = make_result([flat_png(), flat_png()], cost=0.08,
                         params={"size": "1024x1024", "quality": "hd", "seed": 7})
    html = render_result(result)[0]["text/html"]
    assert "2 images" in html and "total $0.080 ($0.040 each)" in html
    assert "quality hd" in html and "seed 7" in html
    assert "repeat(2," in html


def test_word_diff_marks_added_and_changed_words_only():
    diff = word_diff_html("a lighthouse at dusk.", "A detailed lighthouse standing at Dusk, <b>")
    assert diff == ("A <mark>detailed</mark> lighthouse <mark>standing</mark> at Dusk, "
                    "<mark>&lt;b&gt;</mark>")
    assert word_diff_html(None, "x < y") == "x &lt; y"
    assert "<mark>" not in word_diff_html("same words here", "Same words here.")


@pytest.mark.parametrize("fmt", ["webp", "jpeg"])
def test_preview_downscales_never_upscales(fmt):
    big = encode_preview(photo_png(1024), PreviewOptions(max_side=300, format=fmt))
    assert (big.width, big.height) == (300, 300) and big.mime_type == f"image/{fmt}"
    small = encode_preview(flat_png(64), PreviewOptions(format=fmt))
    assert (small.width, small.height) == (64, 64)


def test_preview_options_are_checked():
    for bad in ({"max_side": 0}, {"format": "gif"}, {"quality": 0}):
        with pytest.raises(ValueError):
            PreviewOptions(**bad)


def test_preview_is_encoded_once_per_image_and_options():
    result = make_result([photo_png(512)])
    first = render_result(result)[0]["text/html"]
    assert render_result(result)[0]["text/html"] is not first  # new string, same bytes
    assert render_result(result)[0]["text/html"] == first
    smaller = render_result(result, PreviewOptions(max_side=128))[0]["text/html"]
    assert 'width="128"' in smaller and len(smaller) < len(first)


def added_bytes(result: ImageResult, options: PreviewOptions = PreviewOptions()) -> int:
    """What one result adds to an .ipynb: its mimebundle and metadata, as JSON."""
    import json

    data, metadata = render_result(result, options)
    return len(json.dumps({"data": data, "metadata": metadata}))


def test_notebook_gains_at_most_a_twentieth_of_the_png_base64_per_photo(capsys):
    png = photo_png(1024)
    full_b64 = len(base64.b64encode(png))
    added = added_bytes(make_result([png], revised="a long revised prompt " * 5))
    ratio = added / full_b64
    with capsys.disabled():
        print(f"\n[preview] photo-like 1024x1024: PNG base64 {full_b64:,} B, notebook +{added:,} B, ratio {ratio:.4f}")
    assert ratio <= 1 / 20


def test_transparent_image_keeps_alpha_in_webp():
    preview = encode_preview(flat_png(32, (0, 0, 0, 0)))
    with Image.open(io.BytesIO(preview.data)) as img:
        assert img.mode == "RGBA"


def test_models_and_usage_tables_escape():
    models = [ImageModel(id="openai/<b>x", provider="openai", name="<b>x", sizes=("1024x1024",), price=0.04)]
    bundle = ModelsTable(models, note="note <i>")._repr_mimebundle_()
    assert "&lt;b&gt;x" in bundle["text/html"] and "&lt;i&gt;" in bundle["text/html"]
    assert "openai/<b>x" in bundle["text/plain"]
    usage = UsageView({"credits_remaining": 9.5, "by_model": {"a": 1}}, 0.12, 3)._repr_mimebundle_()
    assert "$0.120 for 3 image(s)" in usage["text/plain"]
    assert re.search(r"credits remaining\s+9\.5", usage["text/plain"])


def test_outputs_opt_out_of_mathjax():
    """Jupyter runs MathJax over HTML outputs: two prices in one output would become maths."""
    from indox_jupyter.render import render_result

    png = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(png, "PNG")
    b64 = base64.b64encode(png.getvalue()).decode()
    result = ImageResult({"data": [{"b64_json": b64}, {"b64_json": b64}], "usage": {"cost": 0.036}},
                         model="openai/dall-e-2", prompt="a $5 bill and a $10 bill")
    data, _ = render_result(result)
    assert 'class="indox-result tex2jax_ignore mathjax_ignore"' in data["text/html"]
