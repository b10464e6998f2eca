"""RAS, region-adaptive sampling (Liu et al. 2025, arXiv 2502.10389), on SD3 and Flux transformers: at a cached step
only the image tokens the model is busiest with go through the transformer; the others keep their output
from the step before.

- Which tokens: the `ratio` with the largest model output (the norm of each patch's predicted velocity at the
  previous step, the paper's heuristic), the same set for every sample of a CFG batch.
- How: the patch embedding's output is cut to those tokens and the final projection's output is put back
  into the previous step's full output; every attention layer attends over all image tokens, the others'
  keys and values coming from its cache (updated where tokens ran), so the active tokens still see the
  whole picture. On Flux each token keeps its own rotary position; a ControlNet's per-token residuals are
  cut to the active tokens too.
- When: full steps first (`start`), last (`end`) and every `interval`-th step between; those refresh every
  cache. Skipped work is reported as blocks: each block at a cached step skips the share of tokens left out.

Wrapped on the model for one loop (attention processors, two forward hooks) and restored when it ends, also
on an error. torch is used on the model's tensors; never import Qt here.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from app.runtime.step_cache.base import CacheError, Denoiser

CONTROLS = ("block_controlnet_hidden_states", "controlnet_block_samples", "controlnet_single_block_samples")


class RasDenoiser(Denoiser):
    def __init__(self, model: Any, total_steps: int, policy: Any) -> None:
        super().__init__(model, total_steps)
        flux = hasattr(model, "single_transformer_blocks") and hasattr(model, "x_embedder")
        if not flux and not (hasattr(model, "pos_embed") and hasattr(model, "proj_out")):
            raise CacheError(f"ras runs on SD3 and Flux transformers, not {type(model).__name__}")
        self.policy = policy
        self.blocks = [*model.transformer_blocks, *getattr(model, "single_transformer_blocks", ())]
        self.text_tokens = 0  # Flux: the text tokens before the image ones in each attention
        self.active: Any = None  # token indices of this call, None = all
        self.slot: Any = None
        self._outputs: dict[Any, Any] = {}  # slot -> the last full projection output (B, tokens, D)
        self._scores: dict[Any, Any] = {}  # slot -> per-token score from the last output
        self.keys: dict[Any, tuple[Any, Any]] = {}  # (slot, layer) -> (keys, values) of all image tokens
        self._processors = []
        for index, block in enumerate(self.blocks):
            for name in ("attn", "attn2"):
                attn = getattr(block, name, None)
                if attn is not None:
                    self._processors.append((attn, attn.processor))
                    attn.set_processor((_FluxAttention if flux else _Attention)(self, (index, name)))
        self._hooks = [
            (model.x_embedder if flux else model.pos_embed).register_forward_hook(self._cut),
            model.proj_out.register_forward_hook(self._fill),
            model.register_forward_pre_hook(self._controls, with_kwargs=True),
        ]

    def full(self, step: int) -> bool:
        p = self.policy
        if step < p.start or step >= self.total_steps - p.end:
            return True
        return (step - p.start) % p.interval == 0

    def denoise(self, slot, step_index, sample, timestep, encoder_hidden_states, **kwargs):
        self.slot = slot
        self.active = None
        self.text_tokens = encoder_hidden_states.shape[1]
        if not self.full(step_index) and slot in self._outputs:
            scores = self._scores[slot]
            count = max(1, round(scores.shape[-1] * self.policy.ratio))
            self.active = scores.topk(count).indices.sort().values
        prediction = super().denoise(slot, step_index, sample, timestep, encoder_hidden_states, **kwargs)
        self.total_blocks += len(self.blocks)
        if self.active is not None:
            tokens = self._scores[slot].shape[-1]
            self.skipped_blocks += round(len(self.blocks) * (tokens - len(self.active)) / tokens)
        return prediction

    def _controls(self, module: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        """A ControlNet's residuals for the image tokens that run now (theirs are per token too)."""
        if self.active is None or not any(kwargs.get(name) is not None for name in CONTROLS):
            return None
        for name in CONTROLS:
            if kwargs.get(name) is not None:
                kwargs[name] = [sample[:, self.active] for sample in kwargs[name]]
        return args, kwargs

    def _cut(self, module: Any, args: Any, output: Any) -> Any:
        return output if self.active is None else output[:, self.active]

    def _fill(self, module: Any, args: Any, output: Any) -> Any:
        if self.active is not None:
            full = self._outputs[self.slot].clone()
            full[:, self.active] = output
            output = full
        self._outputs[self.slot] = output.detach()
        self._scores[self.slot] = output.detach().float().norm(dim=-1).mean(dim=0)
        return output

    def close(self) -> None:
        super().close()
        for handle in self._hooks:
            handle.remove()
        for attn, processor in self._processors:
            attn.set_processor(processor)
        self._hooks, self._processors = [], []
        self._outputs.clear()
        self._scores.clear()
        self.keys.clear()


class _Attention:
    """Joint (or image-only) attention over the active image tokens' queries and every image token's keys
    and values: the active ones fresh, the rest from the cache of the last call."""

    def __init__(self, owner: RasDenoiser, layer: Any) -> None:
        self.owner, self.layer = owner, layer

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        batch, tokens = hidden_states.shape[:2]

        def heads(x: Any) -> Any:
            return x.view(batch, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)

        q, k, v = (
            heads(attn.to_q(hidden_states)),
            heads(attn.to_k(hidden_states)),
            heads(attn.to_v(hidden_states)),
        )
        if attn.norm_q is not None:
            q, k = attn.norm_q(q), attn.norm_k(k)
        owner, key = self.owner, (self.owner.slot, self.layer)
        if owner.active is not None:
            cached_k, cached_v = owner.keys[key]
            k_all, v_all = cached_k.clone(), cached_v.clone()
            k_all[:, :, owner.active], v_all[:, :, owner.active] = k, v
            k, v = k_all, v_all
        owner.keys[key] = (k, v)
        if encoder_hidden_states is not None:
            cq = heads(attn.add_q_proj(encoder_hidden_states))
            ck = heads(attn.add_k_proj(encoder_hidden_states))
            cv = heads(attn.add_v_proj(encoder_hidden_states))
            if attn.norm_added_q is not None:
                cq, ck = attn.norm_added_q(cq), attn.norm_added_k(ck)
            q, k, v = torch.cat([q, cq], 2), torch.cat([k, ck], 2), torch.cat([v, cv], 2)
        out = (
            F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, q.shape[2], -1).to(q.dtype)
        )
        image = attn.to_out[1](attn.to_out[0](out[:, :tokens]))
        if encoder_hidden_states is None:
            return image
        text = out[:, tokens:]
        if not attn.context_pre_only:
            text = attn.to_add_out(text)
        return image, text


class _FluxAttention:
    """Flux's attention (double blocks: image and text streams; single blocks: [text, image] in one
    sequence) over the active image tokens' queries and every image token's keys and values, each token
    rotated by its own position, as in _Attention."""

    def __init__(self, owner: RasDenoiser, layer: Any) -> None:
        self.owner, self.layer = owner, layer

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None
    ):
        from diffusers.models.embeddings import apply_rotary_emb

        owner, text = self.owner, self.owner.text_tokens

        def project(
            x: Any, to_q: Any, to_k: Any, to_v: Any, norm_q: Any, norm_k: Any
        ) -> tuple[Any, Any, Any]:
            q, k, v = (p(x).unflatten(-1, (-1, attn.head_dim)) for p in (to_q, to_k, to_v))
            return norm_q(q), norm_k(k), v

        if encoder_hidden_states is None:  # a single block: the text tokens come first in one sequence
            q, k, v = project(hidden_states, attn.to_q, attn.to_k, attn.to_v, attn.norm_q, attn.norm_k)
            (tq, iq), (tk, ik), (tv, iv) = ((x[:, :text], x[:, text:]) for x in (q, k, v))
        else:
            iq, ik, iv = project(hidden_states, attn.to_q, attn.to_k, attn.to_v, attn.norm_q, attn.norm_k)
            tq, tk, tv = project(encoder_hidden_states, attn.add_q_proj, attn.add_k_proj, attn.add_v_proj,
                                 attn.norm_added_q, attn.norm_added_k)  # fmt: skip
        cos, sin = image_rotary_emb
        image_rows = torch.arange(text, cos.shape[0], device=cos.device)
        if owner.active is not None:
            image_rows = image_rows[owner.active]

        def turn(x: Any, rows: Any) -> Any:
            return apply_rotary_emb(x, (cos[rows], sin[rows]), sequence_dim=1)

        tq, tk = turn(tq, slice(0, text)), turn(tk, slice(0, text))
        iq, ik = turn(iq, image_rows), turn(ik, image_rows)
        key = (owner.slot, self.layer)
        if owner.active is not None:
            cached_k, cached_v = owner.keys[key]
            k_all, v_all = cached_k.clone(), cached_v.clone()
            k_all[:, owner.active], v_all[:, owner.active] = ik, iv
            ik, iv = k_all, v_all
        owner.keys[key] = (ik, iv)
        q, k, v = (torch.cat(pair, 1).transpose(1, 2) for pair in ((tq, iq), (tk, ik), (tv, iv)))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2, 3).to(q.dtype)
        if encoder_hidden_states is None:
            return out
        image, words = out[:, text:], out[:, :text]
        return attn.to_out[1](attn.to_out[0](image.contiguous())), attn.to_add_out(words.contiguous())
