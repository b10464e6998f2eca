"""Text Encode: prompt text -> CONDITIONING through a checkpoint's CLIP text encoder."""

from __future__ import annotations

from app.graph import types as T
from app.graph.spec import Input, Output, Param, node
from app.runtime import text as prompts
from app.runtime.values import Conditioning
from nodes._diffusion import inference, load


@node(
    "conditioning.text_encode",
    title="Text Encode",
    category="conditioning",
    inputs=[Input("clip", T.CLIP, "Tokenizer + text encoder from Load Checkpoint.")],
    outputs=[Output("conditioning", T.CONDITIONING, "Text embeddings for the Sampler.")],
    params=[
        Param(
            "text",
            T.STRING,
            "",
            multiline=True,
            linkable=True,
            description="The prompt. (word:1.3) weights words, (word) = x1.1, [word] = /1.1; longer than 75 "
            "tokens is fine (encoded in 75-token chunks).",
        ),
        Param(
            "clip_skip",
            T.INT,
            1,
            min=1,
            max=12,
            description="Which text encoder layer to use: 1 = the last (default), 2 = the penultimate (A1111's 'clip skip 2').",
        ),
    ],
)
def text_encode(ctx, clip, text, clip_skip):
    """Encodes a prompt the way AUTOMATIC1111 does: weights are multiplied into the token embeddings and each
    75-token chunk is rescaled back to its unweighted mean; long prompts become several 77-token chunks side
    by side. A prompt without weights gives exactly what diffusers' StableDiffusionPipeline computes."""
    loaded, device = load(ctx, clip.source)
    with inference():
        encoder = loaded.on("text_encoder", device)
        embeddings, pooled = prompts.encode(encoder, loaded.tokenizer, text, clip_skip, device)
        key = ("empty_chunk", clip_skip, str(device))
        if key not in loaded.cache:
            loaded.cache[key] = prompts.encode(encoder, loaded.tokenizer, "", clip_skip, device)[0]
    return {"conditioning": Conditioning(embeddings, clip.family, pooled=pooled, pad=loaded.cache[key])}
