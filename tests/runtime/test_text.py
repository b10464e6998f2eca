"""Prompt parsing, chunking, weighting and clip skip against plain transformers calls."""

from __future__ import annotations

import pytest
import torch

from app.runtime import text
from tools.make_tiny_random_model import make_components


@pytest.fixture(scope="module")
def clip():
    parts = make_components()
    return parts["text_encoder"], parts["tokenizer"]


def test_weights_parse_like_a1111():
    assert text.parse_weights("a (red:1.5) cat") == [("a ", 1.0), ("red", 1.5), (" cat", 1.0)]
    pieces = dict(text.parse_weights("((big)) [small] \\(literal\\)"))
    assert pieces["big"] == pytest.approx(1.21) and pieces["small"] == pytest.approx(1 / 1.1)
    assert pieces[" (literal)"] == 1.0
    assert text.parse_weights("(open") == [("open", 1.1)]
    assert text.parse_weights("") == []


def test_unweighted_prompt_equals_the_plain_encoder_call(clip):
    encoder, tokenizer = clip
    ids = tokenizer(
        "a cat", padding="max_length", max_length=77, truncation=True, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        expected = encoder(ids)[0]
        ours, pooled = text.encode(encoder, tokenizer, "a cat", 1, "cpu")
    assert torch.equal(ours, expected)
    assert pooled.shape == (1, expected.shape[-1])


def test_long_prompts_become_77_token_chunks(clip):
    encoder, tokenizer = clip
    prompt = "x" * 100  # one token per character with the byte-level test tokenizer
    chunks = [chunk.ids for chunk in text.tokenize(tokenizer, prompt)]
    assert [len(c) for c in chunks] == [77, 77]
    assert chunks[0][0] == tokenizer.bos_token_id and chunks[0][76] == tokenizer.eos_token_id
    assert chunks[1][26] == tokenizer.eos_token_id  # 25 tokens left for the second chunk
    with torch.no_grad():
        embeddings, _ = text.encode(encoder, tokenizer, prompt, 1, "cpu")
        second = encoder(torch.tensor([chunks[1]]))[0]
    assert embeddings.shape == (1, 154, 8)
    assert torch.equal(embeddings[:, 77:], second)


def test_weighting_scales_tokens_and_keeps_the_chunk_mean(clip):
    encoder, tokenizer = clip
    with torch.no_grad():
        plain, _ = text.encode(encoder, tokenizer, "ab cd", 1, "cpu")
        weighted, _ = text.encode(encoder, tokenizer, "(ab:1.5) cd", 1, "cpu")
    assert torch.allclose(plain.mean(), weighted.mean(), atol=1e-6)
    assert not torch.allclose(plain[:, 1:3], weighted[:, 1:3])


def test_clip_skip_two_is_the_penultimate_layer_with_final_norm(clip):
    encoder, tokenizer = clip
    ids = torch.tensor([text.tokenize(tokenizer, "a cat")[0].ids])
    with torch.no_grad():
        hidden = encoder(ids, output_hidden_states=True).hidden_states[-2]
        expected = encoder.final_layer_norm(hidden)
        ours, _ = text.encode(encoder, tokenizer, "a cat", 2, "cpu")
    assert torch.equal(ours, expected)


def test_even_out_pads_the_shorter_prompt_with_empty_chunks():
    long, short, pad = torch.ones(1, 154, 8), torch.zeros(1, 77, 8), torch.full((1, 77, 8), 2.0)
    first, second = text.even_out(long, None, short, pad)
    assert first.shape == second.shape == (1, 154, 8)
    assert torch.equal(second[:, 77:], pad)
