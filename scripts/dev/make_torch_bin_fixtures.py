#!/usr/bin/env python3
"""Developer script: writes the torch.save fixtures of tests/fixtures/torch_bin/ and checks files
written by omni's C++ save_torch_bin with Python's torch.load.

Needs Debian's python3-torch (1.13); run it with /usr/bin/python3 if another python3 shadows it.
The C++ tests never run Python: every tensor here is a deterministic function of torch.arange,
and tests/unit/test_torch_bin_torch.cpp recomputes the same values (recipe in README.md there).

    /usr/bin/python3 scripts/dev/make_torch_bin_fixtures.py            # (re)write the fixtures
    /usr/bin/python3 scripts/dev/make_torch_bin_fixtures.py --check-written FILE
        # FILE written by the TorchBinWriter.WritesRecipeForPython test
        # (build-dir/torch_bin_written/recipe.bin): torch.load it (weights_only=True too)
        # and compare with tiny_state_dict() + plain_dict() merged.
"""
import argparse
import collections
import json
import os
import sys
import zipfile

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "..", "tests", "fixtures", "torch_bin"))


def ar(n, dtype=torch.float32):
    return torch.arange(n, dtype=torch.float64).to(dtype)


class Tiny(nn.Module):
    """F32 / BF16 / F16 / I64 / BOOL / U8 params and buffers, a tied weight, views, a 0-d tensor."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.emb = nn.Embedding(5, 4).to(torch.bfloat16)
        self.head = nn.Linear(4, 5, bias=False).to(torch.bfloat16)
        self.head.weight = self.emb.weight  # tied: one storage, two names
        self.half_w = nn.Parameter(torch.zeros(2, 3, dtype=torch.float16))
        with torch.no_grad():
            self.lin.weight.copy_((ar(12) * 0.5 - 3).reshape(3, 4))
            self.lin.bias.copy_(ar(3) + 100)
            self.emb.weight.copy_(((ar(20) - 10) * 0.25).reshape(5, 4))
            self.half_w.copy_((ar(6) * 0.125).reshape(2, 3))
        self.register_buffer("pos", ar(6, torch.int64) * 1000000000000)
        self.register_buffer("mask", (ar(6, torch.int64) % 2 == 0).reshape(2, 3))
        self.register_buffer("raw", ar(4, torch.uint8) * 60)
        self.register_buffer("scale", torch.tensor(2.5))
        # Views: a transpose sharing lin.weight's storage, and two slices of one 10-element storage.
        self.register_buffer("lin_t", self.lin.weight.detach().t())
        base = ar(10) * 1.5
        self.register_buffer("tail", base[4:])  # storage offset 4
        self.register_buffer("every_other", base[1::3])  # offset 1, stride 3


def tiny_state_dict():
    return Tiny().state_dict()


def plain_dict():
    """A plain dict (not an OrderedDict) with the remaining dtypes, an nn.Parameter, an empty tensor."""
    return {
        "f64": ar(5, torch.float64) / 4,
        "i32": (ar(6, torch.int32) - 3).reshape(2, 3),
        "i16": ar(4, torch.int16) * -1000,
        "i8": ar(8, torch.int8) - 4,
        "param": nn.Parameter(ar(3)),  # pickled through torch._utils._rebuild_parameter
        "empty": torch.zeros(0, 3),
    }


def shard_tensors():
    s1 = {
        "model.embed.weight": ar(8).reshape(2, 4),
        "model.layers.0.w": (ar(6) / 8).to(torch.bfloat16).reshape(3, 2),
    }
    s2 = collections.OrderedDict()
    s2["model.layers.1.w"] = (ar(6) - 2).to(torch.float16)
    s2["lm_head.weight"] = (ar(8) * -1).reshape(4, 2)
    return s1, s2


def write_malicious(path):
    # Hand-assembled protocol-2 pickle of os.system("echo pwned"): GLOBAL, BINUNICODE, TUPLE1,
    # REDUCE, STOP. It is only written, never unpickled.
    arg = b"echo pwned"
    pkl = (b"\x80\x02" + b"cos\nsystem\n" + b"q\x00" + b"X" + len(arg).to_bytes(4, "little") + arg +
           b"\x85" + b"R" + b".")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/version", b"3\n")


def write_fixtures():
    os.makedirs(OUT, exist_ok=True)
    torch.save(tiny_state_dict(), os.path.join(OUT, "tiny.bin"))
    torch.save(plain_dict(), os.path.join(OUT, "plain_dict.bin"))
    torch.save(plain_dict(), os.path.join(OUT, "proto4.bin"), pickle_protocol=4)
    torch.save(plain_dict(), os.path.join(OUT, "legacy.bin"), _use_new_zipfile_serialization=False)

    s1, s2 = shard_tensors()
    names = ["pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"]
    total = 0
    weight_map = {}
    for shard, name in zip((s1, s2), names):
        torch.save(shard, os.path.join(OUT, name))
        for k, v in shard.items():
            weight_map[k] = name
            total += v.numel() * v.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    with open(os.path.join(OUT, "pytorch_model.bin.index.json"), "w") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")

    write_malicious(os.path.join(OUT, "malicious.bin"))
    with open(os.path.join(OUT, "tiny.bin"), "rb") as f:
        data = f.read()
    with open(os.path.join(OUT, "truncated.bin"), "wb") as f:
        f.write(data[: len(data) // 2])
    with open(os.path.join(OUT, "not_a_zip.bin"), "wb") as f:
        f.write(b"this is not a checkpoint\n")

    # Sanity: torch.load reads back what was written.
    for k, v in torch.load(os.path.join(OUT, "tiny.bin")).items():
        assert torch.equal(v, tiny_state_dict()[k]), k
    for name in sorted(os.listdir(OUT)):
        print(f"{os.path.getsize(os.path.join(OUT, name)):8d}  {name}")
    print("tiny.bin order:", list(tiny_state_dict().keys()))


def check_written(path):
    expected = dict(tiny_state_dict())
    expected.update(plain_dict())
    ok = True
    for weights_only in (False, True):
        got = torch.load(path, weights_only=weights_only)
        if list(got.keys()) != list(expected.keys()):
            print("key mismatch:", list(got.keys()), "vs", list(expected.keys()))
            ok = False
            continue
        for k, v in expected.items():
            g = got[k]
            same = (g.dtype == v.dtype and g.shape == v.shape and g.stride() == v.stride() and
                    torch.equal(g, v.detach()))
            if not same:
                print(f"mismatch in {k}: {g.dtype} {tuple(g.shape)} {g.stride()} vs "
                      f"{v.dtype} {tuple(v.shape)} {v.stride()}")
                ok = False
        # Sharing survives: the tied weight and the views point into one storage.
        if got["emb.weight"].data_ptr() != got["head.weight"].data_ptr():
            print("emb.weight / head.weight no longer share storage")
            ok = False
        if got["lin_t"].storage().data_ptr() != got["lin.weight"].storage().data_ptr():
            print("lin_t / lin.weight no longer share storage")
            ok = False
        if got["tail"].storage_offset() != 4 or got["every_other"].storage_offset() != 1:
            print("slice offsets lost")
            ok = False
    print(("OK: " if ok else "FAILED: ") + path + " read by torch.load " + torch.__version__)
    return ok


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--check-written", metavar="FILE")
    args = ap.parse_args()
    if args.check_written:
        sys.exit(0 if check_written(args.check_written) else 1)
    write_fixtures()
