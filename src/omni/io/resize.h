// Geometric image operations that reproduce the Python preprocessing pipelines bit for bit.
//
// resize() equals Pillow 9.4's `Image.resize((w, h), resample)` on an RGB image with the
// defaults box=None, reducing_gap=None (no Image.reduce pre-step):
//   * convolution filters (bilinear, bicubic a=-0.5, lanczos a=3, box, hamming) are applied
//     as two separable passes, horizontal first (only when the width changes), then vertical
//     (only when the height changes); the intermediate is rounded and clipped to uint8;
//   * the support grows with the down-scale factor (support · max(in/out, 1)); weights are
//     normalised in double, then quantised to 22-bit fixed point;
//   * nearest samples the source pixel under each output pixel centre, as Pillow's affine
//     nearest path does;
//   * a resize to the same size is a copy.
// torchvision's `resize` on a PIL image (as used by Janus and many HF processors) calls
// exactly this, so its `antialias=True` flag makes no difference.
#pragma once
#include <string>

#include "omni/io/image.h"

namespace omni::io {

// Values are Pillow's resample codes (Image.Resampling), as stored in HF
// preprocessor_config.json "resample" fields.
enum class Resample { Nearest = 0, Lanczos = 1, Bilinear = 2, Bicubic = 3, Box = 4, Hamming = 5 };

// Maps a Pillow code (0..5) to Resample; throws omni::Error naming `context` otherwise.
Resample resample_from_pil(int code, const std::string& context = "resample");
// Parses "nearest", "bilinear", "bicubic", "lanczos", "box", "hamming" (case-insensitive).
Resample parse_resample(const std::string& name, const std::string& context = "resample");
const char* resample_name(Resample r);

// == PIL Image.resize((width, height), r). width and height must be >= 1.
Image resize(const Image& src, int width, int height, Resample r);

// Janus `expand2square`: a max(w,h)² canvas filled with (r,g,b), the image pasted at
// ((size-w)/2, (size-h)/2) rounded down. A square image is returned unchanged.
Image expand_to_square(const Image& src, uint8_t r, uint8_t g, uint8_t b);

// Pastes src at (x, y) onto a width×height canvas of colour (r,g,b); parts outside are cut.
Image pad_to(const Image& src, int width, int height, int x, int y, uint8_t r, uint8_t g,
             uint8_t b);

// torchvision.transforms.functional.center_crop on a PIL image: when the crop is larger than
// the image, it is first zero-padded by ((cw-w)//2, (ch-h)//2) on the left/top and the rest on
// the right/bottom; the crop offset is Python's round((size - crop) / 2), i.e. halves round
// to even.
Image center_crop(const Image& src, int width, int height);

// Plain crop of the rectangle [x, x+width) × [y, y+height); must lie inside src.
Image crop(const Image& src, int x, int y, int width, int height);

}  // namespace omni::io
