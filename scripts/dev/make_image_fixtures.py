#!/usr/bin/python3
"""Writes tests/fixtures/images/*: inputs and Pillow's outputs for the image tests.

Developer tool only (the tests never run Python). Needs Pillow 9.4 and numpy, e.g. Debian's
python3-pil / python3-numpy (run with /usr/bin/python3 if another python3 comes first).

    /usr/bin/python3 scripts/dev/make_image_fixtures.py [--golden /work/shared/golden/janus_tiny]

Everything is synthetic and seeded, so re-running gives the same files. Every expected
output is what Pillow itself returns (Image.resize, convert("RGB"), paste, crop); see
tests/fixtures/images/README.md for the list.
"""
import argparse
import io
import json
import os
import random
import shutil
import struct
import sys
import zlib

import numpy as np
import PIL
from PIL import Image, ImageDraw

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "images")

FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def path(name):
    return os.path.join(OUT, name)


def save_rgb(im, name):
    assert im.mode == "RGB", (name, im.mode)
    im.save(path(name), "PNG")
    return name


def write_bytes(name, data):
    with open(path(name), "wb") as f:
        f.write(data)
    return name


# ---------------------------------------------------------------- synthetic inputs

def gradient(w, h):
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255) // max(w - 1, 1)
    g = (y * 255) // max(h - 1, 1)
    b = 255 - ((x + y) * 255) // max(w + h - 2, 1)
    return Image.fromarray(np.stack([r, g, b], -1).astype(np.uint8), "RGB")


def noise(w, h, seed):
    rs = np.random.RandomState(seed)
    return Image.fromarray(rs.randint(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def checker(w, h, cell):
    y, x = np.mgrid[0:h, 0:w]
    on = ((x // cell) + (y // cell)) % 2 == 1
    a = np.zeros((h, w, 3), np.uint8)
    a[on] = (250, 240, 10)
    a[~on] = (5, 20, 200)
    im = Image.fromarray(a, "RGB")
    d = ImageDraw.Draw(im)
    d.ellipse((w // 4, h // 4, w // 2, h * 3 // 4), fill=(255, 0, 255))
    return im


def stripes(w, h):
    y, x = np.mgrid[0:h, 0:w]
    band = ((x + 2 * y) // 7) % 3
    a = np.zeros((h, w, 3), np.uint8)
    a[band == 0] = (255, 255, 255)
    a[band == 1] = (0, 0, 0)
    a[band == 2] = (30, 160, 90)
    im = Image.fromarray(a, "RGB")
    d = ImageDraw.Draw(im)
    d.ellipse((20, 40, w - 30, h // 2), fill=(220, 30, 30), outline=(0, 0, 255), width=3)
    d.line((0, h - 1, w - 1, 0), fill=(255, 255, 0), width=5)
    return im


def photo_like(w, h):
    """Gradients, hard edges, thin lines and a noise patch: what resize filters disagree on."""
    im = gradient(w, h)
    d = ImageDraw.Draw(im)
    d.ellipse((40, 30, 300, 260), fill=(250, 250, 245))
    d.rectangle((330, 60, 520, 200), fill=(12, 12, 16))
    d.polygon([(100, 400), (260, 280), (420, 410)], fill=(240, 200, 20))
    for i in range(0, w, 16):
        d.line((i, 0, i + 40, h), fill=(0, 90, 255), width=1)
    im.paste(noise(64, 64, 7), (540, 300))
    return im


# A 1x100 column found by a random search (15k cases): resizing it to 1x22 with HAMMING is
# the one output pixel that tells Pillow's float window constants (0.54f, 0.46f) from double
# ones. Random data hits such a fixed-point rounding boundary very rarely.
HAMMING_PROBE_HEX = (
    "8a5c8e9083b4ca75b4707764b8c896b7a6916ab2a37495706cb4a88e5189c39d848d785586607e535eb9636a"
    "8073847b756f7c6eb0b9bc60b47e91658a767d767186813d708b7f68957eb660b48a7d73755d65768fac7b6c"
    "8473a554755d96a1835391634d45c59865655a80504796ab935a735485574e987ac49aad58587e579c4c77a4"
    "6ab08b718c66775ccd9c93b7a57f7369533d8d8a828681b5437c457a7871734b6f5fbc9e79879e94aa779f7a"
    "8aacac967d9fba915381b345867a5e6495677ebe7fb18794ae909c7f9c5c967070817f8d83856c805e818a86"
    "808380a76e715daa5366868c906a83736e9d918993987b8c4b45cda5a5795b465479865d93578fa75c8baa69"
    "959abc9360659f49b892bf4e83b78f8b966bb09d7fb2b86b778d60907e66aba6ae836b4b"
)


def hamming_probe():
    a = np.frombuffer(bytes.fromhex(HAMMING_PROBE_HEX), np.uint8).reshape(100, 1, 3)
    return Image.fromarray(a.copy(), "RGB")


# ---------------------------------------------------------------- hand-made PNGs

def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def pack_row(samples, depth):
    """samples: 1-D uint array of one row; returns the packed bytes (big-endian for 16)."""
    if depth == 16:
        return samples.astype(">u2").tobytes()
    if depth == 8:
        return samples.astype(np.uint8).tobytes()
    per = 8 // depth
    out = bytearray()
    for i in range(0, len(samples), per):
        byte = 0
        for j in range(per):
            v = int(samples[i + j]) if i + j < len(samples) else 0
            byte |= v << (8 - depth * (j + 1))
        out.append(byte)
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]


def make_png(arr, color_type, depth, interlace=False, plte=None, trns=None, extra=b""):
    """arr: HxWxC (or HxW) integer samples. Filter type 0 rows."""
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    h, w, c = arr.shape

    def scanlines(a):
        raw = b""
        for row in a:
            raw += b"\x00" + pack_row(row.reshape(-1), depth)
        return raw

    if interlace:
        raw = b""
        for xs, ys, dx, dy in ADAM7:
            sub = arr[ys::dy, xs::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += scanlines(sub)
    else:
        raw = scanlines(arr)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 1 if interlace else 0)
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra
    if plte is not None:
        out += png_chunk(b"PLTE", bytes(np.asarray(plte, np.uint8).reshape(-1)))
    if trns is not None:
        out += png_chunk(b"tRNS", trns)
    out += png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b"")
    return out


def chunk_end(png, tag):
    """Offset just past the CRC of the first chunk `tag`."""
    pos = 8
    while pos < len(png):
        n = struct.unpack(">I", png[pos:pos + 4])[0]
        if png[pos + 4:pos + 8] == tag:
            return pos + 12 + n
        pos += 12 + n
    raise KeyError(tag)


def flip(data, pos):
    return data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1:]


# ---------------------------------------------------------------- checks

def pil_rgb(name):
    with Image.open(path(name)) as im:
        im.load()
        return im.convert("RGB")


def assert_pil_fails(name):
    try:
        with Image.open(path(name)) as im:
            im.load()
            im.convert("RGB")
    except Exception as e:  # noqa: BLE001 - any failure is what we want
        return f"{type(e).__name__}: {e}"
    raise SystemExit(f"{name}: Pillow decodes it, expected a failure")


def read_safetensors(fname):
    with open(fname, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        blob = f.read()
    dt = {"U8": np.uint8, "F32": "<f4", "I64": "<i8", "I32": "<i4", "BOOL": np.bool_}
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        out[k] = np.frombuffer(blob[b:e], dtype=dt[v["dtype"]]).reshape(v["shape"])
    assert len(blob) + base >= base
    return out


def expand2square(im, color):
    """Janus' expand2square (deepseek-ai/Janus janus/models/image_processing_vlm.py)."""
    w, h = im.size
    if w == h:
        return im
    s = max(w, h)
    res = Image.new(im.mode, (s, s), color)
    res.paste(im, ((s - w) // 2, (s - h) // 2))
    return res


def tv_center_crop(im, cw, ch):
    """torchvision.transforms.functional.center_crop (0.14) on a PIL image."""
    w, h = im.size
    if cw > w or ch > h:
        l = (cw - w) // 2 if cw > w else 0
        t = (ch - h) // 2 if ch > h else 0
        r = (cw - w + 1) // 2 if cw > w else 0
        b = (ch - h + 1) // 2 if ch > h else 0
        pad = Image.new(im.mode, (w + l + r, h + t + b), (0, 0, 0))
        pad.paste(im, (l, t))
        im = pad
        w, h = im.size
        if (cw, ch) == (w, h):
            return im
    top = int(round((h - ch) / 2.0))
    left = int(round((w - cw) / 2.0))
    return im.crop((left, top, left + cw, top + ch))


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--golden", default="/work/shared/golden/janus_tiny")
    args = ap.parse_args()
    if PIL.__version__ != "9.4.0":
        print(f"warning: Pillow {PIL.__version__}; the fixtures were defined with 9.4.0",
              file=sys.stderr)
    if os.path.isdir(OUT):
        for f in os.listdir(OUT):
            if f != "README.md":
                os.remove(os.path.join(OUT, f))
    os.makedirs(OUT, exist_ok=True)

    # ---- resize inputs
    inputs = {
        "in_grad_33x17.png": gradient(33, 17),
        "in_noise_7x5.png": noise(7, 5, 1),
        "in_noise_64x48.png": noise(64, 48, 2),
        "in_px_1x1.png": Image.new("RGB", (1, 1), (200, 40, 90)),
        "in_checker_480x300.png": checker(480, 300, 10),
        "in_stripes_300x480.png": stripes(300, 480),
        "in_photo_640x427.png": photo_like(640, 427),
        "in_wide_200x9.png": noise(200, 9, 3),
        "in_tall_5x120.png": gradient(5, 120),
        "in_probe_1x100.png": hamming_probe(),
    }
    for name, im in inputs.items():
        save_rgb(im, name)
        assert np.array_equal(np.asarray(pil_rgb(name)), np.asarray(im))

    targets = {
        "in_grad_33x17.png": [(64, 40), (20, 9), (33, 50), (71, 17), (33, 8), (100, 3)],
        "in_noise_7x5.png": [(23, 13), (3, 2), (1, 1), (7, 9), (5, 5)],
        "in_px_1x1.png": [(5, 3)],
        "in_checker_480x300.png": [(384, 240), (37, 23), (123, 300)],
        "in_stripes_300x480.png": [(240, 384), (77, 123), (300, 31)],
        "in_photo_640x427.png": [(37, 25), (256, 171), (224, 224), (97, 430)],
        "in_wide_200x9.png": [(13, 40), (400, 2)],
        "in_tall_5x120.png": [(60, 7), (1, 119)],
        "in_probe_1x100.png": [(1, 22), (2, 22)],
    }
    resize_lines = ["# input width height filter expected  (expected = PIL Image.resize)"]
    n_resize = 0
    for name, sizes in targets.items():
        src = inputs[name]
        for (w, h) in sizes:
            names = ["nearest", "bilinear", "bicubic", "lanczos"]
            if name in ("in_probe_1x100.png", "in_noise_7x5.png", "in_grad_33x17.png"):
                names += ["box", "hamming"]  # the sweep covers them more widely
            for fname in names:
                out = src.resize((w, h), FILTERS[fname])
                exp = f"rs_{name[3:-4]}_{w}x{h}_{fname}.png"
                save_rgb(out, exp)
                resize_lines.append(f"{name} {w} {h} {fname} {exp}")
                n_resize += 1
    with open(path("resize_cases.txt"), "w") as f:
        f.write("\n".join(resize_lines) + "\n")

    # ---- resize sweep: only a CRC32 of Pillow's output bytes (row-major RGB)
    rnd = random.Random(20240611)
    sweep_lines = ["# input width height filter crc32-of-PIL-output-RGB-bytes"]
    sweep_src = [("in_noise_7x5.png", 130), ("in_noise_64x48.png", 130),
                 ("in_grad_33x17.png", 130), ("in_px_1x1.png", 130), ("in_wide_200x9.png", 130),
                 ("in_tall_5x120.png", 130), ("in_photo_640x427.png", 300),
                 ("in_checker_480x300.png", 300)]
    for name, limit in sweep_src:
        src = inputs[name]
        sizes = set()
        while len(sizes) < 24:
            sizes.add((rnd.randint(1, limit), rnd.randint(1, limit)))
        # exact and near-integer ratios
        w0, h0 = src.size
        for f in (2, 3, 0.5):
            sizes.add((max(1, int(w0 * f)), max(1, int(h0 * f))))
        sizes.add((w0 + 1, h0 - 1 if h0 > 1 else 2))
        for (w, h) in sorted(sizes):
            for fname, code in FILTERS.items():
                out = np.ascontiguousarray(np.asarray(src.resize((w, h), code)))
                sweep_lines.append(f"{name} {w} {h} {fname} {zlib.crc32(out.tobytes()):08x}")
    with open(path("resize_sweep.txt"), "w") as f:
        f.write("\n".join(sweep_lines) + "\n")

    # ---- expand2square and centre crop
    sq_lines = ["# input r g b expected  (expected = Janus expand2square with that fill)"]
    for name, col in [("in_grad_33x17.png", (127, 127, 127)), ("in_tall_5x120.png", (255, 0, 10)),
                      ("in_noise_7x5.png", (0, 0, 0)), ("in_px_1x1.png", (1, 2, 3)),
                      ("in_stripes_300x480.png", (127, 127, 127))]:
        exp = f"sq_{name[3:-4]}.png"
        save_rgb(expand2square(inputs[name], col), exp)
        sq_lines.append(f"{name} {col[0]} {col[1]} {col[2]} {exp}")
    with open(path("square_cases.txt"), "w") as f:
        f.write("\n".join(sq_lines) + "\n")

    crop_lines = ["# input width height expected  (expected = torchvision center_crop on PIL)"]
    for name, sizes in [("in_grad_33x17.png", [(10, 10), (32, 16), (40, 20), (33, 5), (31, 17)]),
                        ("in_noise_7x5.png", [(4, 2), (6, 4), (2, 2), (7, 5), (8, 8)]),
                        ("in_tall_5x120.png", [(8, 100), (5, 121)]),
                        ("in_checker_480x300.png", [(224, 224)])]:
        for (w, h) in sizes:
            exp = f"crop_{name[3:-4]}_{w}x{h}.png"
            save_rgb(tv_center_crop(inputs[name], w, h), exp)
            crop_lines.append(f"{name} {w} {h} {exp}")
    with open(path("crop_cases.txt"), "w") as f:
        f.write("\n".join(crop_lines) + "\n")

    # ---- decode cases
    rs = np.random.RandomState(11)
    dec = []  # (input file, note)
    base = photo_like(640, 427).crop((20, 10, 117, 71))  # 97x61, odd sizes, edges + gradients
    arr = np.asarray(base)

    def add(name, data_or_im, fmt=None, **kw):
        if isinstance(data_or_im, bytes):
            write_bytes(name, data_or_im)
        else:
            data_or_im.save(path(name), fmt, **kw)
        dec.append(name)

    # PNGs Pillow writes
    add("dec_rgb8.png", base, "PNG")
    add("dec_rgba8.png", Image.fromarray(np.dstack([arr, rs.randint(0, 256, arr.shape[:2])
                                                    .astype(np.uint8)]), "RGBA"), "PNG")
    add("dec_gray8.png", base.convert("L"), "PNG")
    add("dec_graya8.png", Image.merge("LA", [base.convert("L"), base.getchannel(0)]), "PNG")
    add("dec_gray1.png", base.convert("1"), "PNG")
    add("dec_palette8.png", base.quantize(200), "PNG")
    pal16 = base.quantize(16)
    add("dec_palette4.png", pal16, "PNG", bits=4)
    add("dec_palette_trns.png", base.quantize(64), "PNG", transparency=3)
    add("dec_rgb_trns.png", base, "PNG", transparency=(255, 255, 245))
    g16 = (np.asarray(base.convert("L")).astype(np.uint16) * 7 + rs.randint(0, 300, (61, 97))).astype(np.uint16)
    g16[0, :20] = np.arange(20) * 13  # some values <= 255
    add("dec_gray16.png", Image.fromarray(g16), "PNG")
    # PNGs written by hand: bit depths and layouts Pillow cannot save
    r16 = arr.astype(np.uint16) * 257 + rs.randint(0, 257, arr.shape)
    add("dec_rgb16.png", make_png(r16, 2, 16))
    add("dec_rgba16.png", make_png(np.dstack([r16, rs.randint(0, 65536, arr.shape[:2])]), 6, 16))
    add("dec_graya16.png", make_png(np.dstack([r16[..., 0], r16[..., 1]]), 4, 16))
    add("dec_gray2.png", make_png(np.asarray(base.convert("L")) >> 6, 0, 2))
    add("dec_gray4.png", make_png(np.asarray(base.convert("L")) >> 4, 0, 4))
    add("dec_rgb8_adam7.png", make_png(arr, 2, 8, interlace=True))
    add("dec_gray16_adam7.png", make_png(g16, 0, 16, interlace=True))
    small = np.asarray(noise(3, 2, 5))
    add("dec_rgb8_adam7_3x2.png", make_png(small, 2, 8, interlace=True))
    # 2-bit palette with only 3 PLTE entries, index 3 used (Pillow: grey ramp entry 3),
    # plus tRNS, a gAMA chunk and interlacing.
    idx = (np.arange(61 * 97).reshape(61, 97) // 5) % 4
    add("dec_palette2_short_adam7.png",
        make_png(idx, 3, 2, interlace=True, plte=[(255, 0, 0), (0, 255, 0), (0, 0, 255)],
                 trns=b"\x00\x80", extra=png_chunk(b"gAMA", struct.pack(">I", 100000))))
    # gAMA and sBIT chunks must not change the pixels
    add("dec_rgb8_gamma.png", make_png(arr, 2, 8, extra=png_chunk(b"gAMA", struct.pack(">I", 45455))
                                       + png_chunk(b"sBIT", b"\x05\x06\x05")))
    good_png = open(path("dec_rgb8.png"), "rb").read()
    add("dec_png_no_iend.png", good_png[:-12])  # Pillow reads it fine
    add("dec_png_no_idat_crc.png", good_png[:-16])  # also fine: Pillow stops after the pixels
    # Pillow checks no CRC from the first IDAT on: a broken IDAT CRC still decodes.
    idat_end = chunk_end(good_png, b"IDAT")
    add("dec_png_bad_idat_crc.png", flip(good_png, idat_end - 1))
    # JPEGs
    add("dec_jpeg_420.jpg", base, "JPEG", quality=90, subsampling=2)
    add("dec_jpeg_444.jpg", base, "JPEG", quality=90, subsampling=0)
    add("dec_jpeg_422.jpg", base, "JPEG", quality=75, subsampling=1)
    add("dec_jpeg_progressive.jpg", base, "JPEG", quality=85, progressive=True)
    add("dec_jpeg_gray.jpg", base.convert("L"), "JPEG", quality=90)
    add("dec_jpeg_cmyk.jpg", base.convert("CMYK"), "JPEG", quality=90)
    cm = np.dstack([arr, 255 - arr[..., 1]])
    add("dec_jpeg_cmyk_k.jpg", Image.fromarray(cm, "CMYK"), "JPEG", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW (Pillow's open/convert ignore it)
    add("dec_jpeg_exif_rot.jpg", base, "JPEG", quality=90, exif=exif.tobytes())
    add("dec_jpeg_1x1.jpg", Image.new("RGB", (1, 1), (10, 200, 30)), "JPEG")
    # Without the EOI marker: Pillow succeeds iff the entropy decoder never needs a byte past
    # the end (it does not look for EOI after the last scanline of a baseline image).
    jpg = open(path("dec_jpeg_420.jpg"), "rb").read()
    add("dec_jpeg_no_eoi.jpg", jpg[:-2])
    # A damaged byte in the entropy-coded data: libjpeg warns and goes on; so does Pillow, and
    # both give the same (damaged) pixels.
    add("dec_jpeg_corrupt_data.jpg", flip(jpg, len(jpg) * 3 // 4))
    # WebP
    webp = []
    add("dec_webp_lossy.webp", base, "WEBP", quality=80)
    rgba = np.dstack([arr, (np.arange(97)[None, :].repeat(61, 0) * 3 % 256).astype(np.uint8)])
    rgba[:10, :10, 3] = 0
    add("dec_webp_lossless_rgba.webp", Image.fromarray(rgba, "RGBA"), "WEBP", lossless=True,
        exact=True)
    webp = ["dec_webp_lossy.webp", "dec_webp_lossless_rgba.webp"]

    dec_lines = ["# input expected [webp]  (expected = PIL Image.open(input).convert('RGB'))"]
    modes = {}
    for name in dec:
        with Image.open(path(name)) as im:
            modes[name] = f"{im.format} {im.mode}"
        exp = "exp_" + os.path.splitext(name)[0] + ".png"
        save_rgb(pil_rgb(name), exp)
        dec_lines.append(f"{name} {exp}" + (" webp" if name in webp else ""))
    with open(path("decode_cases.txt"), "w") as f:
        f.write("\n".join(dec_lines) + "\n")

    # ---- bad inputs (Pillow must fail on each, except the formats we refuse)
    gamma_png = open(path("dec_rgb8_gamma.png"), "rb").read()
    buf = io.BytesIO()
    Image.fromarray((np.random.RandomState(0).rand(40, 50, 3) * 255).astype(np.uint8)).save(buf, "JPEG")
    noise_jpg = buf.getvalue()
    prog_jpg = open(path("dec_jpeg_progressive.jpg"), "rb").read()
    bad = [
        ("bad_truncated.png", good_png[: len(good_png) // 2], "truncated PNG"),
        ("bad_truncated_header.png", good_png[:20], "truncated PNG"),
        ("bad_signature_only.png", good_png[:5], "truncated PNG"),
        ("bad_truncated.jpg", jpg[: len(jpg) // 2], "truncated JPEG"),
        ("bad_jpeg_noise_no_eoi.jpg", noise_jpg[:-2], "truncated JPEG"),
        ("bad_jpeg_progressive_no_eoi.jpg", prog_jpg[:-2], "truncated JPEG"),
        ("bad_jpeg_header_only.jpg", jpg[:200], "truncated JPEG"),
        ("bad_garbage.png", bytes(rs.randint(0, 256, 300).astype(np.uint8)), "not an image"),
        ("bad_not_image.txt", b"hello, this is not an image\n", "not an image"),
        ("bad_empty.png", b"", "empty"),
        ("bad_png_crc.png", flip(good_png, 29), "invalid PNG"),  # IHDR CRC
        ("bad_png_ancillary_crc.png", flip(gamma_png, chunk_end(gamma_png, b"gAMA") - 1),
         "invalid PNG"),  # Pillow checks ancillary CRCs before IDAT too
    ]
    bad_lines = ["# input expected-substring-of-the-error  (Pillow fails on each too)"]
    for name, data, msg in bad:
        write_bytes(name, data)
        why = assert_pil_fails(name)
        bad_lines.append(f"{name} {msg}")
        print(f"  {name}: Pillow says {why}")
    # Formats Pillow reads but we refuse (with a clear error)
    base.save(path("bad_gif.gif"), "GIF")
    bad_lines.append("bad_gif.gif unsupported image format: GIF")
    with open(path("bad_cases.txt"), "w") as f:
        f.write("\n".join(bad_lines) + "\n")

    # ---- Janus fixtures
    ip = read_safetensors(os.path.join(args.golden, "image_processor.safetensors"))
    src = ip["nonsquare_input_u8"]  # [300, 480, 3]
    expected = np.ascontiguousarray(ip["nonsquare_resized_u8"].transpose(1, 2, 0))  # HWC
    Image.fromarray(src, "RGB").save(path("janus_nonsquare_input.png"))
    Image.fromarray(expected, "RGB").save(path("janus_nonsquare_resized.png"))
    # the official recipe, here with plain Pillow: (w, h) = (384, int(300 / 480 * 384)) = 240
    mine = expand2square(Image.fromarray(src, "RGB").resize((384, 240), Image.Resampling.BICUBIC),
                         (127, 127, 127))
    assert np.array_equal(np.asarray(mine), expected), "Janus resize fixture != Pillow recipe"

    und = read_safetensors(os.path.join(args.golden, "understanding.safetensors"))
    shutil.copyfile(os.path.join(args.golden, "test_image.png"), path("janus_test_image.png"))
    img = np.asarray(Image.open(path("janus_test_image.png")).convert("RGB"))
    assert np.array_equal(img, und["test_image_u8"])
    pv = np.ascontiguousarray(und["pixel_values"][0, 0])  # [3, 384, 384]
    rule = ((img.transpose(2, 0, 1).astype(np.float64) * 0.00392156862745098).astype(np.float32)
            - np.float32(0.5)) / np.float32(0.5)
    assert rule.dtype == np.float32 and np.array_equal(rule.view(np.uint32), pv.view(np.uint32))
    with open(path("janus_pixel_values.f32"), "wb") as f:
        f.write(pv.astype("<f4").tobytes())

    total = sum(os.path.getsize(path(f)) for f in os.listdir(OUT))
    print(f"Pillow {PIL.__version__}: {n_resize} resize cases, {len(sweep_lines) - 1} sweep "
          f"cases, {len(sq_lines) - 1} square, {len(crop_lines) - 1} crop, {len(dec)} decode, "
          f"{len(bad_lines) - 1} bad inputs; {len(os.listdir(OUT))} files, {total / 1e6:.2f} MB")
    for name in dec:
        print(f"  {name}: {modes[name]}")


if __name__ == "__main__":
    main()
