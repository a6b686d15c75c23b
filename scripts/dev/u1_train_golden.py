#!/usr/bin/env python3
"""Step-0 training golden for SenseNova-U1 (optional developer script; never run by the build or tests).

It runs the *official* SenseNova-U1 code at commit d5c3148 on a small packed batch of four documents
(understanding, text-to-image with a think block, edit, interleave with two duplicated images) with the
tiny checkpoint of tests/fixtures/u1_tiny, in float32 on the CPU, and writes
tests/fixtures/u1_tiny/train_step0.safetensors: the batch, the random draws, the flow targets, the
losses and the gradients at step 0. tests/fixtures/u1_tiny/README.md ("Training golden") says which
official lines each value follows.

What is official and what is not:
  * official, imported unedited from training/sensenovavl/model/sensenovavl_moe_chat/
    modeling_sensenovavl_chat_mot.py (MOT): prepare_image_gen_targets (noising, t, targets; MOT:582-676),
    _apply_time_schedule, get_per_image_pos_ids, build_image_gen_indicators, build_dup_boundary,
    _offsets_to_doc_ids_tensor, pack_two_branch_sequence / unpack_two_branch_sequence and the attention
    rule create_flex_mask_padding_image_gen (evaluated densely, see the stand-ins);
    training/sensenovavl/utils/utils.py build_abs_positions_from_grid_hw;
    training/sensenovalm/model/losses/ce_loss.py FlashGPTLMLoss (the weighted CE, CE:51-84).
  * official modules, from the inference package src/sensenova_u1/models/neo_unify/ (the training
    LLM lives on the internal sensenovalm framework, which does not run here): NEOVisionModel (both
    patch embedders), TimestepEmbedder, the fm_head Sequential, Qwen3Model (the MoT decoder) and
    lm_head. The decoder runs the packed [generation | other] sequence through the mixed und/gen path
    of Qwen3Attention.forward / Qwen3DecoderLayer.forward, whose bodies are official but begin with a
    `raise NotImplementedError` guard (upstream issue #207: "no parity test and no production
    caller"); the stand-in below recompiles those two methods with only that statement removed.
  * restated here from the official code (not importable): the sequence of each sample (template,
    image placeholders, duplication, labels, t/h/w indexes; docs/dev/u1_training_rules.md sections 1-3
    with the official file:line of every rule), the forward glue of MOT:784-1137 for one process
    without tensor/pipeline parallelism, the CE weights of loss_reduction 'square' (DII:1723-1726,
    1855) and the generation loss of MOT:1331-1384 (one data-parallel rank: the AVG all-reduce of the
    normaliser is the identity).

Stand-ins (torch 1.13 / no transformers 4.57 / no sensenovalm here):
  * torch.nn.attention.flex_attention and_masks / or_masks / create_block_mask: the mask functions
    evaluated on the full (q, kv) grid, giving the dense boolean mask (MOT's own dense_from_flex_mask
    does the same); the 128-padding rows are their own document and are cut off.
  * transformers: import-only modules for the names the official files import (PreTrainedModel =
    nn.Module holding the config; PretrainedConfig / Qwen3Config = attribute bags with the 4.57
    defaults the code reads; decorators are identities; ACT2FN silu / gelu).
  * sensenovalm: gpc with config {pad_dummy_image_gen: False} (the 8B script sets it True: it adds 128
    zero-loss rows in a separate document, which changes no value), ParallelMode names, logger;
    new_cross_entropy = torch.nn.CrossEntropyLoss (the fused kernel's math, ignore_index -100).
  * tokenization: `omni tokenize --no-special` (the toy tokenizer, which tests/unit checks against the
    official slow Qwen2Tokenizer ids in tokenizer_cases.json).

Usage:
  git -C <SenseNova-U1 clone> archive d5c3148 src/sensenova_u1 training/sensenovavl \\
      training/sensenovalm/model/losses | tar -x -C /tmp/u1src
  /usr/bin/python3 scripts/dev/u1_train_golden.py --official /tmp/u1src --omni build/omni
Needs Debian's python3-torch, python3-numpy, python3-pil.
"""
import argparse
import ast
import enum
import importlib.util
import inspect
import json
import logging
import math
import os
import subprocess
import sys
import textwrap
import types

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

IGNORE = -100
PACK_TOKENS = 28672  # official seq_len: the multi-image pixel budget (MD:776-800)
MIN_PX, MAX_PX_UND, MAX_PX_GEN = 256 * 256, 2048 * 2048, 512 * 512


# ----------------------------------------------------------------------------------------------
# stand-ins
def _module(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    parent, _, child = name.rpartition(".")
    if parent:
        if parent not in sys.modules:
            _module(parent)
        setattr(sys.modules[parent], child, m)
    return m


def _identity_decorator(*args, **kwargs):
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda f: f


class _Bag:
    def __init__(self, **kwargs):
        self.output_hidden_states = False
        self.use_return_dict = True
        for k, v in kwargs.items():
            setattr(self, k, v)


class _Output(dict):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.__dict__.update(kwargs)


class _Unpack:
    def __class_getitem__(cls, item):
        return item


class _PreTrainedModel(nn.Module):
    def __init__(self, config, *args, **kwargs):
        super().__init__()
        self.config = config

    def post_init(self):
        pass


def install_transformers_stub():
    if not hasattr(torch, "_dynamo"):  # import-only in modeling_qwen3.py
        torch._dynamo = _module("torch._dynamo", is_compiling=lambda: False)
    _module("transformers", __version__="4.57.1", GenerationConfig=_Bag, Qwen3Config=_Bag, Qwen3MoeConfig=_Bag)
    _module("transformers.activations", ACT2FN={"silu": nn.SiLU(), "gelu": nn.GELU()})
    _module("transformers.cache_utils", Cache=type("Cache", (), {}), DynamicCache=type("DynamicCache", (), {}))
    _module("transformers.generation", GenerationMixin=type("GenerationMixin", (), {}))
    _module("transformers.integrations", use_kernel_forward_from_hub=lambda name: (lambda cls: cls))
    _module("transformers.masking_utils", create_causal_mask=None)
    _module("transformers.modeling_flash_attention_utils", FlashAttentionKwargs=dict)
    generic = {n: type(n, (), {}) for n in ("GenericForQuestionAnswering", "GenericForSequenceClassification",
                                            "GenericForTokenClassification")}
    _module("transformers.modeling_layers", GradientCheckpointingLayer=nn.Module, **generic)
    _module("transformers.modeling_outputs", **{n: _Output for n in (
        "BaseModelOutputWithPast", "CausalLMOutputWithPast", "BaseModelOutputWithPooling", "BaseModelOutput")})
    _module("transformers.modeling_rope_utils", ROPE_INIT_FUNCTIONS={}, dynamic_rope_update=lambda f: f)
    _module("transformers.modeling_utils", ALL_ATTENTION_FUNCTIONS={}, PreTrainedModel=_PreTrainedModel)
    _module("transformers.processing_utils", Unpack=_Unpack)
    _module("transformers.utils", TransformersKwargs=dict, auto_docstring=_identity_decorator,
            can_return_tuple=_identity_decorator, logging=types.SimpleNamespace(get_logger=logging.getLogger))
    _module("transformers.utils.deprecation", deprecate_kwarg=lambda *a, **k: (lambda f: f))
    _module("transformers.utils.generic", check_model_inputs=_identity_decorator)
    _module("transformers.configuration_utils", PretrainedConfig=_Bag)


class _ParallelMode(enum.Enum):
    GLOBAL = "global"
    DATA = "data"
    TENSOR = "tensor"
    PIPELINE = "pipe"


class _Gpc:
    config = types.SimpleNamespace(get=lambda key, default=None: {"pad_dummy_image_gen": False}.get(key, default),
                                   model=types.SimpleNamespace(dtype=torch.float32))

    def is_using_parallel_mode(self, mode):
        return False

    def is_rank_for_log(self):
        return False


def install_sensenovalm_stub():
    gpc = _Gpc()
    _module("sensenovalm.core.context", ParallelMode=_ParallelMode, global_context=gpc, IS_REPLICA_ZERO_PARALLEL="")
    _module("sensenovalm.core.context.parallel_context", global_context=gpc)
    _module("sensenovalm.model.builder", create_model=None)
    _module("sensenovalm.model.moe.utils", SenseNovaVLMoEOutput=None)
    _module("sensenovalm.utils.common", get_current_device=lambda: torch.device("cpu"))
    _module("sensenovalm.utils.logger", get_logger=logging.getLogger)
    _module("sensenovalm.utils.parallel", is_using_isp=lambda: False)

    def new_cross_entropy(reduction, label_smoothing, parallel_output, inplace_backward):
        return nn.CrossEntropyLoss(reduction=reduction, label_smoothing=label_smoothing, ignore_index=IGNORE)

    _module("sensenovalm.model.ops.cross_entropy", new_cross_entropy=new_cross_entropy)


def load_file(name, path, package_dir=None):
    if package_dir is not None:
        pkg = name.rpartition(".")[0]
        if pkg not in sys.modules:
            _module(pkg).__path__ = [package_dir]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def without_guard(cls, method_name, module):
    """The method recompiled with its `raise NotImplementedError(...)` statement(s) removed."""
    src = textwrap.dedent(inspect.getsource(getattr(cls, method_name)))
    tree = ast.parse(src)
    fn = tree.body[0]
    fn.decorator_list = []
    before = len(fn.body)
    fn.body = [s for s in fn.body if not (isinstance(s, ast.Raise) and isinstance(s.exc, ast.Call)
                                          and getattr(s.exc.func, "id", "") == "NotImplementedError")]
    assert len(fn.body) == before - 1, f"{cls.__name__}.{method_name}: expected one guard"
    ns = {}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), module.__file__, "exec"), module.__dict__, ns)
    setattr(cls, method_name, ns[method_name])


def flex_stand_ins(mot):
    def and_masks(*fns):
        def f(b, h, q, k):
            out = fns[0](b, h, q, k)
            for g in fns[1:]:
                out = out & g(b, h, q, k)
            return out
        return f

    def or_masks(*fns):
        def f(b, h, q, k):
            out = fns[0](b, h, q, k)
            for g in fns[1:]:
                out = out | g(b, h, q, k)
            return out
        return f

    def create_block_mask(mask_mod, B, H, Q_LEN, KV_LEN, BLOCK_SIZE, _compile):
        return mot.dense_from_flex_mask(mask_mod, Q_LEN, device="cpu")

    mot.and_masks, mot.or_masks, mot.create_block_mask = and_masks, or_masks, create_block_mask


# ----------------------------------------------------------------------------------------------
# checkpoint and safetensors
def read_safetensors(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = np.frombuffer(data[a:b], dtype=np.uint8)
        if info["dtype"] == "BF16":
            arr = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] == "F32":
            arr = raw.view(np.float32)
        elif info["dtype"] == "I64":
            arr = raw.view(np.int64)
        else:
            raise ValueError(info["dtype"])
        out[name] = torch.from_numpy(arr.copy()).reshape(info["shape"])
    return out


def write_safetensors(path, tensors, metadata):
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        if t.dtype == torch.float32:
            dt, b = "F32", t.numpy().astype("<f4").tobytes()
        elif t.dtype == torch.int64:
            dt, b = "I64", t.numpy().astype("<i8").tobytes()
        else:
            raise ValueError(f"{name}: {t.dtype}")
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


# ----------------------------------------------------------------------------------------------
# the batch (restated data pipeline; docs/dev/u1_training_rules.md)
class Tokenizer:
    def __init__(self, omni, folder):
        self.omni, self.folder, self.cache = omni, folder, {}

    def encode(self, text):
        if text not in self.cache:
            out = subprocess.run([self.omni, "tokenize", "--tokenizer", self.folder, "--no-special", "--jsonl"],
                                 input=json.dumps(text) + "\n", capture_output=True, text=True, check=True).stdout
            self.cache[text] = [int(x) for x in out.split()]
        return self.cache[text]

    def id(self, token):
        ids = self.encode(token)
        assert len(ids) == 1, token
        return ids[0]


def smart_resize(h, w, factor, min_px, max_px):
    hb, wb = max(factor, round(h / factor) * factor), max(factor, round(w / factor) * factor)
    if hb * wb > max_px:
        beta = math.sqrt(h * w / max_px)
        hb, wb = math.floor(h / beta / factor) * factor, math.floor(w / beta / factor) * factor
    elif hb * wb < min_px:
        beta = math.sqrt(min_px / (h * w))
        hb, wb = math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    return hb, wb


def load_pixels(path, min_px, max_px):
    """DS:740-779 + DS:696-723: RGB, smart resize (factor 32), bicubic, ToTensor, ImageNet, 16-px patch rows."""
    im = Image.open(path).convert("RGB")
    h, w = smart_resize(im.height, im.width, 32, min_px, max_px)
    im = im.resize((w, h))  # PIL's default filter for RGB: BICUBIC
    x = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    x = (x - mean) / std
    rows = x.view(3, h // 16, 16, w // 16, 16).permute(1, 3, 0, 2, 4).reshape(-1, 3 * 16 * 16)
    return rows, (h // 16, w // 16)


def build_sample(sample, tok, images_dir, system_message):
    """One document: ids, unshifted labels, t/h/w, and its images (pixel rows, grid, gen, dup)."""
    task = sample["task"]  # "und" | "t2i" | "edit" | "interleave"
    gen_task = task != "und"
    sid = {n: tok.id(n) for n in ("<img>", "<IMG_CONTEXT>", "</img>")}
    files = list(sample["images"])
    max_px = MAX_PX_GEN if gen_task else MAX_PX_UND
    if len(files) > 1:
        max_px = max(min(max_px, (PACK_TOKENS - 3072) * 1024 // len(files)), MIN_PX)
    loaded = [load_pixels(os.path.join(images_dir, f), MIN_PX, max_px) for f in files]

    turns = list(sample["turns"])
    if task in ("t2i", "edit"):  # MD:389-391, 473-476 (not CFG-dropped)
        turns = [("system", system_message)] + turns
    ids, labels, t_idx, h_idx, w_idx, images = [], [], [], [], [], []
    state = {"t": -1, "next_file": 0}

    def push(i, lab, t, h=0, w=0):
        ids.append(i)
        labels.append(lab)
        t_idx.append(t)
        h_idx.append(h)
        w_idx.append(w)

    def emit(text, supervised, image_specs):
        """Tokenize one part (DS:642, 657, 663) with each <image> expanded (DS:559-567)."""
        pieces = text.split("<image>")
        assert len(pieces) == len(image_specs) + 1
        s = pieces[0]
        for spec, piece in zip(image_specs, pieces[1:]):
            s += "<img>" + "<IMG_CONTEXT>" * spec["tokens"] + "</img>" + piece
        toks = tok.encode(s)
        k_of_gen, img_i, i = None, 0, 0
        gap_supervised = supervised
        while i < len(toks):
            if toks[i] != sid["<img>"]:
                push(toks[i], toks[i] if gap_supervised else IGNORE, state["t"] + 1)
                state["t"] += 1
                i += 1
                continue
            spec = image_specs[img_i]
            img_i += 1
            n = spec["tokens"]
            gw = spec["grid"][1] // 2
            # DII:1671-1716: <img> = k, ctx = k + 1, </img> = k + 2; a clean copy reuses its gen copy's k
            k = k_of_gen if spec["dup"] else state["t"] + 1
            push(sid["<img>"], sid["<img>"] if spec["start_label"] else IGNORE, k)
            for j in range(n):
                push(sid["<IMG_CONTEXT>"], IGNORE, k + 1, j // gw, j % gw)
            push(sid["</img>"], IGNORE, k + 2)
            if not spec["dup"]:
                state["t"] = k + 2
            k_of_gen = k if spec["gen"] else None
            gap_supervised = supervised and spec["text_after_supervised"]
            images.append(spec)
            i += n + 2

    def spec_for(gen, dup, start_label, text_after_supervised):
        if not dup:  # a clean copy reuses the file of the generation copy before it (MD:732-741)
            state["next_file"] += 1
        rows, grid = loaded[state["next_file"] - 1]
        return {"rows": rows, "grid": grid, "tokens": grid[0] * grid[1] // 4, "gen": gen, "dup": dup,
                "start_label": start_label, "text_after_supervised": text_after_supervised}

    for ti, (role, text) in enumerate(turns):
        if role != "assistant":
            specs = [spec_for(False, False, False, False) for _ in range(text.count("<image>"))]
            emit(f"<|im_start|>{role}\n{text}<|im_end|>\n", False, specs)
            continue
        # DS:645-667: the start part (IGNORE), then the body (its own tokens are the labels)
        opening = "<|im_start|>assistant\n" if text.startswith("<think>") else "<|im_start|>assistant\n<think>\n\n</think>\n\n"
        emit(opening, False, [])
        n_img = text.count("<image>")
        specs, body = [], text
        if task in ("t2i", "edit"):
            # one target, the last content; MD:889-896: everything from its <img> on is IGNORE
            assert n_img == 1 and text.endswith("<image>")
            specs = [spec_for(True, False, False, False)]
        elif task == "interleave":
            last_turn = ti == len(turns) - 1
            assert not (last_turn and text.endswith("<image>")), "this golden keeps every image duplicated"
            # MD:557-573: every assistant image -> noisy gen copy + clean und copy (same file);
            # MD:913-931: the gen copy's <img> is a target, the rest of both spans IGNORE
            body = text.replace("<image>", "<image><image>")
            for _ in range(n_img):
                specs.append(spec_for(True, False, True, False))
                specs.append(spec_for(False, True, False, True))
        emit(body + "<|im_end|>\n", True, specs)
    return {"ids": ids, "labels": labels, "t": t_idx, "h": h_idx, "w": w_idx, "images": images}


# ----------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official", required=True, help="folder with src/sensenova_u1 and training/ at d5c3148")
    ap.add_argument("--omni", default="build/omni")
    ap.add_argument("--fixture", default="tests/fixtures/u1_tiny")
    ap.add_argument("--out", default=None)
    ap.add_argument("--seed", type=int, default=20261204)
    args = ap.parse_args()
    out_path = args.out or os.path.join(args.fixture, "train_step0.safetensors")
    off = args.official
    torch.set_num_threads(2)

    install_transformers_stub()
    install_sensenovalm_stub()
    neo = os.path.join(off, "src/sensenova_u1/models/neo_unify")
    cfg_vit = load_file("neo_unify.configuration_neo_vit", os.path.join(neo, "configuration_neo_vit.py"), neo)
    vit = load_file("neo_unify.modeling_neo_vit", os.path.join(neo, "modeling_neo_vit.py"), neo)
    fmm = load_file("neo_unify.modeling_fm_modules", os.path.join(neo, "modeling_fm_modules.py"), neo)
    qwen = load_file("neo_unify.modeling_qwen3", os.path.join(neo, "modeling_qwen3.py"), neo)
    neo_utils = load_file("neo_unify.utils", os.path.join(neo, "utils.py"), neo)
    without_guard(qwen.Qwen3Attention, "forward", qwen)
    without_guard(qwen.Qwen3DecoderLayer, "forward", qwen)

    vl = os.path.join(off, "training/sensenovavl")
    sv_utils = load_file("sensenovavl.utils.utils", os.path.join(vl, "utils/utils.py"), os.path.join(vl, "utils"))
    load_file("sensenovavl.model.modules.fm_modules", os.path.join(vl, "model/modules/fm_modules.py"),
              os.path.join(vl, "model/modules"))
    chat_dir = os.path.join(vl, "model/sensenovavl_moe_chat")
    _module("sensenovavl.model.sensenovavl_moe_chat").__path__ = [chat_dir]
    _module("sensenovavl.model.sensenovavl_moe_chat.configuration_sensenovavl_chat", SenseNovaVLChatConfig=_Bag)
    _module("sensenovavl.model.sensenovavl_moe_chat.modeling_neo_vit", NEOVisionModel=None)
    _module("sensenovavl.model.sensenovavl_moe_chat.utils", gather_forward_split_backward=None,
            get_split_size=None, split_forward_gather_backward=None)
    mot = load_file("sensenovavl.model.sensenovavl_moe_chat.modeling_sensenovavl_chat_mot",
                    os.path.join(chat_dir, "modeling_sensenovavl_chat_mot.py"))
    flex_stand_ins(mot)
    ce_mod = load_file("sensenovalm.model.losses.ce_loss", os.path.join(off, "training/sensenovalm/model/losses/ce_loss.py"))
    prompts = load_file("sensenovavl.data.t2i_prompts", os.path.join(vl, "data/t2i_prompts.py"))
    assert prompts.T2I_EDITING_SYSTEM_MESSAGE == neo_utils.SYSTEM_MESSAGE_FOR_GEN

    # ---- the model (official modules, the tiny checkpoint's values, float32)
    conf = json.load(open(os.path.join(args.fixture, "config.json")))
    lc = dict(conf["llm_config"])
    lc.setdefault("pad_token_id", None)
    lc["layer_types"] = ["full_attention"] * lc["num_hidden_layers"]
    lc["_attn_implementation"] = "eager"
    llm_cfg = _Bag(**lc)
    vcfg = cfg_vit.NEOVisionConfig(**conf["vision_config"])
    H = lc["hidden_size"]
    root = nn.Module()
    root.vision_model = vit.NEOVisionModel(vcfg)
    root.language_model = nn.Module()
    root.language_model.model = qwen.Qwen3Model(llm_cfg)
    root.language_model.lm_head = nn.Linear(H, lc["vocab_size"], bias=False)
    out_dim = 3 * (vcfg.patch_size * 2) ** 2
    root.fm_modules = nn.ModuleDict({
        "vision_model_mot_gen": vit.NEOVisionModel(vcfg),
        "timestep_embedder": fmm.TimestepEmbedder(H),
        "noise_scale_embedder": fmm.TimestepEmbedder(H),
        "fm_head": nn.Sequential(nn.Linear(H, 4096), nn.GELU(), nn.Linear(4096, out_dim)),
    })
    weights = read_safetensors(os.path.join(args.fixture, "model.safetensors"))
    missing, unexpected = root.load_state_dict(weights, strict=False)
    assert not unexpected, unexpected
    assert all("inv_freq" in m or "cached" in m for m in missing), missing
    root.float().train()

    # ---- the batch
    tok = Tokenizer(args.omni, args.fixture)
    samples = [
        {"task": "und", "images": ["und_image.png"],
         "turns": [("user", "<image>\nWhich shapes do you see?"), ("assistant", "A circle and a square, side by side.")]},
        {"task": "t2i", "images": ["edit_image.png"],
         "turns": [("user", "A lake under a blue sky."),
                   ("assistant", "<think>\nWater, sky.\n</think>\n\n<image>")]},
        {"task": "edit", "images": ["und_image.png", "edit_image.png"],
         "turns": [("user", "<image>\nTurn it into a lake scene."), ("assistant", "<image>")]},
        {"task": "interleave", "images": ["und_image.png"],
         "turns": [("user", "Draw two shapes and name them."),
                   ("assistant", "Here:<image>A circle and a square.")]},
    ]
    docs = [build_sample(s, tok, args.fixture, prompts.T2I_EDITING_SYSTEM_MESSAGE) for s in samples]
    ids, labels, t_idx, doc_of, type_of, images = [], [], [], [], [], []
    type_id = {"und": 0, "t2i": 3, "edit": 4, "interleave": 5}  # MD:1378-1396
    cu = [0]
    for d, (s, doc) in enumerate(zip(samples, docs)):
        ids += doc["ids"]
        labels += doc["labels"]
        t_idx += doc["t"]
        doc_of += [d] * len(doc["ids"])
        type_of += [type_id[s["task"]]] * len(doc["ids"])
        images += doc["images"]
        cu.append(len(ids))
    L = len(ids)
    input_ids = torch.tensor([ids])
    pixel_values = torch.cat([im["rows"] for im in images])
    grid_hw = torch.tensor([list(im["grid"]) for im in images])
    gen_flags = torch.tensor([im["gen"] for im in images])
    dup_flags = torch.tensor([im["dup"] for im in images])
    h_all = sum((doc["h"] for doc in docs), [])
    w_all = sum((doc["w"] for doc in docs), [])

    # CE weights, loss_reduction 'square' (DII:1723-1726, BDL:58-67, DII:1855): per document
    # 1/sqrt(N_d) over its non-IGNORE labels, then zero where the shifted label is IGNORE.
    shifted = labels[1:] + [IGNORE]
    weight = []
    for i in range(L):
        n_d = sum(1 for j in range(cu[doc_of[i]], cu[doc_of[i] + 1]) if labels[j] != IGNORE)
        weight.append(0.0 if n_d == 0 or shifted[i] == IGNORE else 1.0 / math.sqrt(n_d))

    # ---- the official draws (recorded: noise per generation image, then u)
    torch.manual_seed(args.seed)
    draws = []
    real_randn_like, real_normal = torch.randn_like, torch.normal

    def randn_like(x, *a, **k):
        r = real_randn_like(x, *a, **k)
        draws.append(("noise", r.clone()))
        return r

    def normal(*a, **k):
        r = real_normal(*a, **k)
        draws.append(("u", r.clone()))
        return r

    shim = types.SimpleNamespace(
        config=types.SimpleNamespace(vision_config=vcfg), patch_size=vcfg.patch_size,
        downsample_ratio=conf["downsample_ratio"], noise_scale=conf["noise_scale"],
        noise_scale_mode=conf["noise_scale_mode"], noise_scale_base_image_seq_len=conf["noise_scale_base_image_seq_len"],
        noise_scale_max_value=conf["noise_scale_max_value"], P_mean=conf["P_mean"], P_std=conf["P_std"],
        tp_size=1, time_schedule=conf["time_schedule"], timestep_shift=conf["timestep_shift"], t_eps=conf["t_eps"],
        max_image_seq_len=conf["max_image_seq_len"], base_image_seq_len=conf["base_image_seq_len"],
        base_shift=conf["base_shift"], max_shift=conf["max_shift"], time_shift_type=conf["time_shift_type"])
    Chat = [v for v in vars(mot).values() if isinstance(v, type) and hasattr(v, "prepare_image_gen_targets")][0]
    for name in ("_apply_time_schedule", "_calculate_dynamic_mu", "get_per_image_pos_ids"):
        setattr(shim, name, types.MethodType(getattr(Chat, name), shim))
    torch.randn_like, torch.normal = randn_like, normal
    try:
        pv_updated, gen_z, gen_v, gen_t, _, gen_ns = Chat.prepare_image_gen_targets(shim, pixel_values, gen_flags, grid_hw)
    finally:
        torch.randn_like, torch.normal = real_randn_like, real_normal

    # ---- the forward (MOT:784-1137 for one process, no tensor / pipeline parallelism)
    vit_embeds = root.vision_model(pixel_values=pixel_values, grid_hw=grid_hw).last_hidden_state
    vit_embeds_gen = root.fm_modules["vision_model_mot_gen"](pixel_values=pv_updated, grid_hw=grid_hw).last_hidden_state
    llm = root.language_model.model
    ctx_id = tok.id("<IMG_CONTEXT>")
    img_start_id = tok.id("<img>")
    selected = input_ids == ctx_id
    hidden = llm.embed_tokens(input_ids)
    indexes = torch.tensor(t_idx)
    abs_w, abs_h = sv_utils.build_abs_positions_from_grid_hw(grid_hw // 2)
    pos_h, pos_w = torch.zeros_like(indexes), torch.zeros_like(indexes)
    pos_h[selected[0]] = abs_h
    pos_w[selected[0]] = abs_w
    indexes = torch.stack([indexes, pos_h, pos_w], dim=-1)  # [L, 3]
    starts = (input_ids[0] == img_start_id).long()
    modality = torch.cat([torch.zeros(1, dtype=torch.long), starts])[:-1].cumsum(0)
    modality[input_ids[0] != ctx_id] = -1
    gen_ind = Chat.build_image_gen_indicators(None, modality, gen_flags).view(1, -1)
    dup_ind = Chat.build_image_gen_indicators(None, modality, dup_flags).view(1, -1)
    dup_boundary = mot.build_dup_boundary(modality.view(-1), gen_ind.view(-1), dup_ind.view(-1))
    assert int(gen_ind.sum()) == gen_z.shape[0]
    hidden = hidden.clone()
    hidden[selected] = torch.where(gen_ind[selected][:, None], vit_embeds_gen, vit_embeds)
    t_emb = root.fm_modules["timestep_embedder"](gen_t) + root.fm_modules["noise_scale_embedder"](gen_ns)
    hidden[gen_ind] += t_emb
    doc_ids = mot._offsets_to_doc_ids_tensor(torch.tensor(cu), has_pad=bool(input_ids[0][-1] == 0))
    (h_packed, idx_packed, doc_packed, mod_packed, gen_packed, perm, inv_perm, pos_packed,
     dupb_packed) = mot.pack_two_branch_sequence(hidden, indexes, doc_ids, modality, gen_ind, dup_boundary)
    mask, padlen = mot.create_flex_mask_padding_image_gen(doc_packed, mod_packed, gen_packed.view(-1), pos_packed,
                                                          dupb_packed, div_num=128, compile_mask=False)
    mask = mask[:L, :L]
    mask_in_order = mask[inv_perm][:, inv_perm]  # rows / columns back in sequence order
    additive = torch.zeros(L, L).masked_fill(~mask, torch.finfo(torch.float32).min)[None, None]
    out = llm(inputs_embeds=h_packed, image_gen_indicators=gen_packed.view(1, -1), indexes=idx_packed.t(),
              attention_mask={"full_attention": additive}, use_cache=False)
    final = mot.unpack_two_branch_sequence(out.last_hidden_state, inv_perm)  # norm / norm_mot_gen applied

    # ---- losses
    logits = root.language_model.lm_head(final)[0]
    ce_fn = ce_mod.FlashGPTLMLoss(parallel_output=False, label_smoothing=0, ce_loss_weight=0.1)
    ce = ce_fn(logits, torch.tensor(shifted), loss_weight=weight, loss_reduction_all_gather=False)
    pred_x = root.fm_modules["fm_head"](final[0][gen_ind[0]])
    pred_v = (pred_x - gen_z) / (1 - gen_t.view(-1, 1)).clamp_min(conf["t_eps"])
    per_row = torch.nn.functional.mse_loss(pred_v, gen_v, reduction="none").mean(dim=1)  # image_gen_loss_weight 1
    row_w = []
    for im in images:
        if im["gen"]:
            n = im["tokens"]
            row_w += [1 / n ** 0.5] * n
    row_w = torch.tensor(row_w, dtype=torch.float32)
    gen_loss = (per_row * row_w).sum() / row_w.sum().clamp_min(1)
    total = ce + gen_loss
    total.backward()

    # ---- write (kept small: pixels as per-image sums, logits at the CE positions only)
    ce_rows = torch.tensor([i for i in range(L) if weight[i] > 0])
    tensors = {
        "input_ids": input_ids, "labels": torch.tensor(labels), "indexes": indexes.t().contiguous(),
        "doc_ids": torch.tensor(doc_of), "type_ids": torch.tensor(type_of), "ce_weight": torch.tensor(weight),
        "pixel_sum": torch.stack([im["rows"].double().sum() for im in images]).float(),
        "pixel_sq_sum": torch.stack([im["rows"].double().pow(2).sum() for im in images]).float(),
        "grid_hw": grid_hw, "gen_flags": gen_flags.long(), "dup_flags": dup_flags.long(),
        "image_gen_t": gen_t, "ce_rows": ce_rows, "ce_logits": logits.detach()[ce_rows],
        "ce_loss": ce.detach().reshape(1), "gen_loss": gen_loss.detach().reshape(1),
        "gen_loss_per_row": per_row.detach(), "total_loss": total.detach().reshape(1),
        "attention_visible_per_row": mask_in_order.sum(1).long(),
        "attention_visible_per_col": mask_in_order.sum(0).long(),
    }
    gi = 0
    for kind, r in draws:  # per generation image: its noise [rows, 768], then u [1]
        if kind == "noise":
            tensors[f"draw_noise_{gi}"] = r
        else:
            tensors[f"draw_u_{gi}"] = r
            gi += 1
    for name, p in root.named_parameters():
        assert p.grad is not None, name
        tensors[f"grad_norm/{name}"] = p.grad.norm().reshape(1)
        if p.numel() <= 32768:
            tensors[f"grad/{name}"] = p.grad
    meta = {"official_commit": "d5c3148ca6ffd904ac55066909980f2ad0342dc7", "seed": str(args.seed),
            "samples": json.dumps(samples), "torch": torch.__version__,
            "cu_seqlens": json.dumps(cu), "padlen": str(padlen)}
    write_safetensors(out_path, tensors, meta)
    print(f"{out_path}: L={L} images={len(images)} gen rows={gen_z.shape[0]} ce={ce.item():.6f} "
          f"gen={gen_loss.item():.6f} total={total.item():.6f}")


if __name__ == "__main__":
    main()
