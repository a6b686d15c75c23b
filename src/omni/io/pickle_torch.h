// An allow-listed reader and writer for the `data.pkl` stream of a torch.save zip archive.
//
// The reader never executes anything: it interprets a fixed subset of pickle opcodes over a small
// value model and only knows the few globals a state dict needs. Everything else is refused with
// omni::Error(context, why). Malformed input of any kind (unknown opcode, stack underflow,
// truncation, bad memo index, wrong argument types, out-of-range views) is an omni::Error too,
// never a crash: parsing is one linear pass over the bytes and never recurses.
//
// Opcodes: PROTO FRAME STOP MARK POP POP_MARK DUP NONE NEWTRUE NEWFALSE BININT BININT1 BININT2
//          LONG1 LONG4 (<= 8 bytes) BINFLOAT BINUNICODE SHORT_BINUNICODE BINUNICODE8 EMPTY_TUPLE
//          TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_LIST LIST APPEND APPENDS EMPTY_DICT DICT SETITEM
//          SETITEMS BINPUT LONG_BINPUT BINGET LONG_BINGET MEMOIZE GLOBAL STACK_GLOBAL REDUCE BUILD
//          BINPERSID.
// Globals: collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter
//          and the typed storages torch.{Double,Float,Half,BFloat16,Long,Int,Short,Char,Byte,Bool}Storage
//          (as the storage type inside a persistent id only).
// BUILD is accepted (and ignored) only on a dict with a dict/None state: that is how
// `state_dict()._metadata` is stored.
//
// This header and its implementation are torch-free; they only sit in the torch library because
// the zip side (torch_bin_torch.cpp) does.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "omni/io/dtype.h"

namespace omni::io::torch_pickle {

// One persistent id ('storage', torch.<T>Storage, key, location, numel): the zip record
// `data/<key>` holds numel elements of dtype.
struct StorageRef {
  DType dtype = DType::F32;
  std::string key;
  std::string location;  // "cpu", "cuda:0", ... (informational; everything loads on the CPU)
  int64_t numel = 0;     // elements
};

// One _rebuild_tensor_v2 call: a strided view into storages[storage].
// The view has been checked to lie inside the storage's declared numel.
struct TensorRef {
  size_t storage = 0;
  int64_t offset = 0;  // in elements
  std::vector<int64_t> sizes;
  std::vector<int64_t> strides;
  bool requires_grad = false;
};

struct StateDict {
  std::vector<StorageRef> storages;                       // distinct keys, in first-use order
  std::vector<std::pair<std::string, TensorRef>> tensors;  // in dict (file) order
};

// Parses a data.pkl stream whose top-level object is a dict / OrderedDict of str -> tensor.
// `context` names the stream in errors (e.g. "model.bin: pickle").
StateDict parse_state_dict(const uint8_t* data, size_t size, const std::string& context);

// Writes the protocol-2 pickle torch.save would write for an OrderedDict of tensors: one
// _rebuild_tensor_v2 call per tensor with persistent id ('storage', torch.<T>Storage, key, 'cpu',
// numel). The result is readable by Python's torch.load (also with weights_only=True).
std::string write_state_dict(const StateDict& sd);

// "torch.FloatStorage" for DType::F32, ...
std::string storage_type_name(DType t);

}  // namespace omni::io::torch_pickle
