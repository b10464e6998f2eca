"""The shipped CLIP tokenizer files and the two padding conventions, against reference ids and the hub configs."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil

import pytest

from app.runtime import tokenizers
from tools import build_clip_tokenizer

# Ids from OpenAI's own SimpleTokenizer (open_clip/tokenizer.py, the original BPE implementation) for these
# prompts, without start/end tokens: an independent reference for our files and the HF tokenizer on them.
REFERENCE = {
    "a photo of a cat": "320 1125 539 320 2368",
    "masterpiece, best quality, (1girl:1.2), <lora:foo:0.8>": "12066 267 949 3027 267 263 272 1611 281 272 269 "
    "273 2361 283 2179 320 281 23435 281 271 269 279 285",
    "Ünïcødé café — naïve 東京 Ελληνικά 🙂": "6522 77 35689 66 17483 67 4166 15304 2005 1097 35689 563 48338 "
    "21078 361 138 113 138 119 138 119 138 115 138 121 138 117 138 118 138 361 14860",
    "line1\nline2\ttab": "1148 272 1148 273 14724",
    "an astronaut riding a horse on mars, 8k uhd, highly detailed": "550 18376 6765 320 4558 525 7496 267 279 330 "
    "84 4414 267 5302 12609",
}
START, END = 49406, 49407


def test_shipped_files_are_the_hub_files_byte_for_byte():
    for name in ("vocab.json", "merges.txt"):
        data = (tokenizers.CLIP_FILES / name).read_bytes()
        assert hashlib.md5(data).hexdigest() == build_clip_tokenizer.MD5[name], name
    assert (tokenizers.CLIP_FILES / "LICENSE").read_text().count("MIT") >= 1


def test_the_builder_derives_the_files_from_the_merges_list():
    merges = (tokenizers.CLIP_FILES / "merges.txt").read_text("utf-8").split("\n")[1:-1]
    bpe = gzip.compress(("header\n" + "\n".join(merges) + "\n").encode("utf-8"))
    built = build_clip_tokenizer.build(bpe)
    for name, data in built.items():
        assert data == (tokenizers.CLIP_FILES / name).read_bytes(), name
    vocab = json.loads(built["vocab.json"])
    assert len(vocab) == 49408 and vocab["<|endoftext|>"] == END and vocab["a</w>"] == 320


@pytest.mark.parametrize("prompt", list(REFERENCE))
def test_ids_equal_openai_simple_tokenizer(prompt):
    for pad in ("<|endoftext|>", "!"):
        assert tokenizers.clip(pad)(prompt).input_ids == [START, *map(int, REFERENCE[prompt].split()), END]


def test_clip_l_pads_with_end_and_clip_g_with_exclamation_mark():
    clip_l, clip_g = tokenizers.clip("<|endoftext|>"), tokenizers.clip("!")
    assert clip_l("hi", padding="max_length", max_length=6).input_ids == [START, 1883, END, END, END, END]
    assert clip_g("hi", padding="max_length", max_length=6).input_ids == [START, 1883, END, 0, 0, 0]
    # diffusers' quirk, kept on purpose: "!" is CLIP-G's special pad token, so a typed "!" becomes id 0
    assert clip_l("wow!").input_ids == [START, 2781, 256, END]
    assert clip_g("wow!").input_ids == [START, 2781, 0, END]


HUB_CONFIG = {  # tokenizer_config.json of stabilityai/stable-diffusion-xl-base-1.0 (tokenizer / tokenizer_2)
    "add_prefix_space": False,
    "bos_token": {"__type": "AddedToken", "content": "<|startoftext|>", "lstrip": False, "normalized": True},
    "clean_up_tokenization_spaces": True,
    "do_lower_case": True,
    "eos_token": {"__type": "AddedToken", "content": "<|endoftext|>", "lstrip": False, "normalized": True},
    "errors": "replace",
    "model_max_length": 77,
    "tokenizer_class": "CLIPTokenizer",
    "unk_token": {"__type": "AddedToken", "content": "<|endoftext|>", "lstrip": False, "normalized": True},
}


@pytest.mark.parametrize("pad", ["<|endoftext|>", "!"])
def test_equal_to_a_tokenizer_folder_as_diffusers_ships_it(tmp_path, pad):
    from transformers import CLIPTokenizer

    for name in ("vocab.json", "merges.txt"):
        shutil.copy(tokenizers.CLIP_FILES / name, tmp_path / name)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**HUB_CONFIG, "pad_token": pad}))
    hub = CLIPTokenizer.from_pretrained(tmp_path, local_files_only=True)
    ours = tokenizers.clip(pad)
    for prompt in [*REFERENCE, "style!!! wow!", "&amp; “quoted” ＡＢＣ", "word " * 90]:
        kwargs = {"padding": "max_length", "max_length": 77, "truncation": True}
        assert ours(prompt, **kwargs).input_ids == hub(prompt, **kwargs).input_ids, prompt
    assert ours.pad_token_id == hub.pad_token_id


# Ids of FLUX.1-dev's tokenizer_2/tokenizer.json (the hub file; SD3's tokenizer_3 gives the same) for these
# prompts, end token included: the reference for the shipped T5 tokenizer.
T5_REFERENCE = {
    "a photo of an astronaut riding a horse": [3, 9, 1202, 13, 46, 30059, 7494, 3, 9, 4952, 1],
    "  Hello,  world!! ": [8774, 6, 296, 1603, 1],
    "café naïve ＡＢＣ ﬁ": [11949, 3, 29, 9, 2, 162, 14213, 361, 1],
    "日本語 🎨": [3, 2, 3, 2, 1],
    "": [1],
}


def test_shipped_t5_tokenizer_is_the_checked_build_and_equals_the_hub_ids():
    from tools import build_t5_tokenizer

    data = (tokenizers.T5_FILES / "tokenizer.json").read_bytes()
    assert hashlib.md5(data).hexdigest() == build_t5_tokenizer.MD5["tokenizer.json"]
    assert "Apache License" in (tokenizers.T5_FILES / "LICENSE").read_text()
    assert "MIT License" in (tokenizers.T5_FILES / "NOTICE").read_text()
    t5 = tokenizers.t5()
    assert (t5.pad_token_id, t5.eos_token_id, t5.unk_token_id, len(t5)) == (0, 1, 2, 32100)
    for prompt, ids in T5_REFERENCE.items():
        assert t5(prompt).input_ids == ids, prompt


def test_the_t5_builder_reads_c_arrays_and_writes_the_shipped_form():
    from tools import build_t5_tokenizer

    header = "static const unsigned char other[] = {0x01};\nstatic const unsigned char t5_tokenizer_json_str[] = {\n    0x7b,\n    0x7d};"
    assert build_t5_tokenizer.c_array(header, "t5_tokenizer_json_str") == b"{}"
    shipped = json.loads((tokenizers.T5_FILES / "tokenizer.json").read_text("utf-8"))
    old = dict(
        shipped, pre_tokenizer={"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True}
    )
    old["normalizer"] = {"type": "Sequence", "normalizers": shipped["normalizer"]["normalizers"][:1]}
    rebuilt = build_t5_tokenizer.modernise(json.dumps(old).encode("utf-8"))
    assert rebuilt == (tokenizers.T5_FILES / "tokenizer.json").read_bytes()
