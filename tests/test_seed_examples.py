"""Every Python example of the seed document runs unchanged but for the import and base_url."""

from __future__ import annotations

import pathlib
import re

import pytest

SEED = pathlib.Path(__file__).parent / "data" / "seed_image_generation.md"


def seed_blocks() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", SEED.read_text(), re.S)
    # The response-format block is a literal dict, not a program.
    return [b for b in blocks if not b.lstrip().startswith("{")]


def adapt(block: str) -> str:
    block = block.replace("from indoxrouter import Client", "from indox_jupyter import Client")
    return block.replace('Client(api_key="your_api_key")', 'Client(api_key="your_api_key", base_url="local")')


def test_seed_has_the_examples_we_expect():
    blocks = seed_blocks()
    assert len(blocks) == 8
    assert "from indoxrouter import Client" in blocks[0]


def test_seed_examples_run_verbatim(tmp_path, monkeypatch, capsys):
    pytest.importorskip("requests")  # the seed's own download example uses requests
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in seed_blocks():
        exec(compile(adapt(block), str(SEED), "exec"), namespace)
    out = capsys.readouterr().out
    assert "Generated image URL: http://127.0.0.1:" in out
    assert "Revised prompt: A detailed" in out
    saved = sorted(p.name for p in (tmp_path / "generated_images").iterdir())
    assert saved == ["image_0.png"]
    assert (tmp_path / "generated_images" / "image_0.png").read_bytes().startswith(b"\x89PNG")
    assert namespace["stability_response"].model == "stability/stable-diffusion-xl"
    assert namespace["art_response"]["data"][0]["revised_prompt"]
