"""Textual inversion: `embedding:NAME` in a prompt equals diffusers' load_textual_inversion, for A1111 .pt /
.safetensors files on SD and clip_l/clip_g files on SDXL; weights apply; problems name the embedding."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

from app.engine.plan import validate
from app.registry import default_registry
from app.runtime import text as prompts
from tests.nodes import diffusion_helpers as h
from tests.nodes import sdxl_helpers as xl
from tools import make_tiny_random_sdxl

XL = "tiny-xl-ti"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ti")
    with h.model_root(folder) as sd_path:
        make_tiny_random_sdxl.write(folder / XL, seed=0)
        embeddings = folder / "embeddings"
        embeddings.mkdir()
        generator = torch.Generator().manual_seed(0)
        sd = torch.randn(3, 8, generator=generator)
        torch.save({"string_to_param": {"*": sd}, "name": "sty"}, embeddings / "sty.pt")
        save_file({"emb_params": sd.clone()}, str(embeddings / "sty-st.safetensors"))
        both = {
            "clip_l": torch.randn(2, 32, generator=generator),
            "clip_g": torch.randn(2, 48, generator=generator),
        }
        save_file(both, str(embeddings / "xlsty.safetensors"))
        yield folder, sd_path, {"sd": sd, **both}


def conditioning(g, node: str = "prompt"):
    return h.executor().run(g, [node]).outputs[node]["conditioning"]


def test_a1111_embedding_equals_load_textual_inversion(root):
    folder, sd_path, _ = root
    pipe = h.pipeline(sd_path)
    pipe.load_textual_inversion(str(folder / "embeddings" / "sty.pt"), token="sty")
    with torch.no_grad():
        expected, _ = pipe.encode_prompt("a sty cat", "cpu", 1, False)
    for name in ("sty", "sty.pt", "sty-st"):  # with or without the extension; .pt or .safetensors
        ours = conditioning(h.graph(prompt__text=f"a embedding:{name} cat")).embeddings
        assert (ours - expected).abs().max().item() < 1e-5, name
    plain = conditioning(h.graph(prompt__text="a cat")).embeddings
    assert (plain - expected).abs().max().item() > 1e-3


def test_a_weighted_embedding_is_weighted_like_any_word(root):
    folder, sd_path, vectors = root
    pipe = h.pipeline(sd_path)
    pipe.load_textual_inversion(str(folder / "embeddings" / "sty.pt"), token="sty")
    ids = pipe.tokenizer(
        pipe.maybe_convert_prompt("a sty cat", pipe.tokenizer), padding="max_length"
    ).input_ids
    with torch.no_grad():
        hidden = pipe.text_encoder(torch.tensor([ids]))[0]
    weights = torch.ones(77)
    weights[2:5] = 1.3  # start, "a", then the three vectors
    scaled = hidden * weights[None, :, None]
    expected = scaled * (hidden.mean() / scaled.mean())
    ours = conditioning(h.graph(prompt__text="a (embedding:sty:1.3) cat")).embeddings
    assert (ours - expected).abs().max().item() < 1e-5


def test_sdxl_embedding_uses_clip_l_and_clip_g_vectors_like_diffusers(root):
    folder, _, vectors = root
    pipe = xl.pipeline(folder / XL)
    for key, encoder, tokenizer in (
        ("clip_l", "text_encoder", "tokenizer"),
        ("clip_g", "text_encoder_2", "tokenizer_2"),
    ):
        # diffusers' documented way for SDXL files: one call per text encoder with that encoder's vectors
        pipe.load_textual_inversion(
            vectors[key],
            token="xlsty",
            text_encoder=getattr(pipe, encoder),
            tokenizer=getattr(pipe, tokenizer),
        )
    with torch.no_grad():
        expected, _, pooled, _ = pipe.encode_prompt(
            "a xlsty cat", device="cpu", do_classifier_free_guidance=False
        )
    g = xl.graph(checkpoint=XL, prompt__text="a embedding:xlsty cat")
    ours = conditioning(g)
    assert ours.embeddings.shape == expected.shape == (1, 77, 80)
    assert (ours.embeddings - expected).abs().max().item() < 1e-5
    assert (ours.pooled - pooled).abs().max().item() < 1e-5


def test_embedding_problems_name_the_embedding(root):
    folder, _, _ = root
    problems = [str(p) for p in validate(h.graph(prompt__text="embedding:nope, a cat"), default_registry())]
    assert len(problems) == 1
    assert "node 'prompt' 'text'" in problems[0] and "embeddings 'nope' not found" in problems[0]
    assert str(folder / "embeddings") in problems[0]
    g = xl.graph(checkpoint=XL, prompt__text="embedding:sty")  # an SD1.x embedding on SDXL
    result = h.executor().run(g, ["prompt"])
    assert result.status == "error"
    assert "embedding 'sty' has no vectors for this model's clip_l encoder" in result.errors["prompt"]


def test_changing_the_embedding_file_reruns_text_encode(root):
    folder, _, _ = root
    path = folder / "embeddings" / "changing.pt"
    torch.save({"string_to_param": {"*": torch.randn(1, 8)}}, path)
    executor = h.executor()
    g = h.graph(prompt__text="a embedding:changing")
    first = executor.run(g, ["prompt"]).outputs["prompt"]["conditioning"].embeddings
    torch.save({"string_to_param": {"*": torch.randn(1, 8) * 3}}, path)  # (a constant would normalise away)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10_000_000))
    events = []
    second = executor.run(g, ["prompt"], on_event=events.append).outputs["prompt"]["conditioning"].embeddings
    assert ("started", "prompt") in [(e["event"], e.get("node")) for e in events]
    assert (first - second).abs().max().item() > 1e-4


def test_prompts_never_split_an_embedding_across_chunks(root):
    _, sd_path, _ = root
    tokenizer = h.pipeline(sd_path).tokenizer
    vectors = torch.zeros(3, 8)
    chunks = prompts.tokenize(tokenizer, "x" * 74 + " embedding:e", lambda name: vectors)
    assert len(chunks) == 2 and chunks[0].vectors == {} and sorted(chunks[1].vectors) == [1, 2, 3]
