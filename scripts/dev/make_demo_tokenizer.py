#!/usr/bin/env python3
"""Learns the byte-level BPE tokenizer of the bundled demo model (models/omni-shapes) from the
shapes data set's text, and writes it in Hugging Face's format (tokenizer.json,
tokenizer_config.json, vocab.json, merges.txt) with SenseNova-U1's special tokens.

A developer script (needs Python 3 and the `regex` module); its output is committed under
configs/demo/omni-shapes/, so building, training and testing never run it.

    build/omni shapes --output /tmp/shapes --seed 0
    python3 scripts/dev/make_demo_tokenizer.py /tmp/shapes/*.jsonl --output configs/demo/omni-shapes

The tokenizer is Qwen2's in kind: NFC, the same pre-tokenizer split and byte-level mapping, BPE
merges learned here by the classic rule (the most frequent adjacent pair, ties broken by the
pair's text), until every word of the corpus is one token or --max_merges is reached.
"""
import argparse
import collections
import json
import os
import sys
import unicodedata

import regex

# Qwen2's split, as in the SenseNova-U1 tokenizer.json (digits one at a time).
SPLIT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
# SenseNova-U1's added tokens, in its order (the ids the pipelines look up by name).
SPECIAL = [("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True), ("<|box_start|>", True),
           ("<|vision_pad|>", True), ("<think>", False), ("</think>", False), ("<IMG_CONTEXT>", True),
           ("<img>", True), ("</img>", True)]
# The chat scaffolding every sample is wrapped in (neo1_0): learned like the data's own text.
SCAFFOLD = ["system\n", "user\n", "assistant\n", "\n", "\n\n", "Image-1:", "Image-2:"]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def texts_of(value, key=None):
    """Every string in a JSON value except file names and ids."""
    if isinstance(value, str):
        if key not in ("image", "images", "id", "path") and not value.endswith((".png", ".jpg", ".jpeg", ".webp")):
            yield value
    elif isinstance(value, list):
        for v in value:
            yield from texts_of(v, key)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from texts_of(v, k)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("jsonl", nargs="+")
    ap.add_argument("--output", required=True)
    ap.add_argument("--max_merges", type=int, default=1024)
    args = ap.parse_args()

    b2u = bytes_to_unicode()
    special_split = regex.compile("(" + "|".join(regex.escape(s) for s, _ in SPECIAL) + ")")
    words = collections.Counter()

    def add(text, times=1):
        for piece in special_split.split(unicodedata.normalize("NFC", text)):
            if any(piece == s for s, _ in SPECIAL):
                continue
            for w in regex.findall(SPLIT, piece):
                words["".join(b2u[b] for b in w.encode("utf-8"))] += times

    n_lines = 0
    for path in args.jsonl:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    for t in texts_of(json.loads(line)):
                        add(t)
                    n_lines += 1
    for s in SCAFFOLD:
        add(s, max(1, n_lines))

    # Classic BPE over the word counts.
    seqs = {w: list(w) for w in words}
    merges = []
    while len(merges) < args.max_merges:
        pairs = collections.Counter()
        for w, n in words.items():
            s = seqs[w]
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], [-ord(c) for c in kv[0][0] + " " + kv[0][1]]))
        if best[1] < 2:
            break
        a, b = best[0]
        merges.append((a, b))
        for w, s in seqs.items():
            i, out = 0, []
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out

    vocab = {}
    for ch in b2u.values():
        vocab[ch] = len(vocab)
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    added = []
    for content, special in SPECIAL:
        added.append({"id": len(vocab) + len(added), "content": content, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": special})

    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": SPLIT}, "behavior": "Isolated", "invert": False}, byte_level]},
        "post_processor": byte_level, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [a + " " + b for a, b in merges]},
    }
    cfg = {
        "add_bos_token": False, "add_prefix_space": False,
        "added_tokens_decoder": {str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                                     "single_word", "special")} for a in added},
        "additional_special_tokens": ["<|im_start|>", "<|box_start|>", "<|vision_pad|>", "<IMG_CONTEXT>", "<img>",
                                      "</img>"],
        "bos_token": None, "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>", "errors": "replace",
        "model_max_length": 4096, "pad_token": "<|endoftext|>", "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
    }
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, indent=1)
        f.write("\n")
    with open(os.path.join(args.output, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=1)
        f.write("\n")
    with open(os.path.join(args.output, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(args.output, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(a + " " + b + "\n")
    unmerged = sum(1 for w in words if len(seqs[w]) > 1)
    print(f"{len(words)} distinct words, {len(merges)} merges, vocabulary {len(vocab) + len(added)} "
          f"({len(added)} added tokens); words still in pieces: {unmerged}", file=sys.stderr)


if __name__ == "__main__":
    main()
