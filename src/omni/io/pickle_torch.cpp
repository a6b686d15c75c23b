// Allow-listed pickle reader / writer for torch.save's data.pkl (see pickle_torch.h).
#include "omni/io/pickle_torch.h"

#include <cstring>
#include <memory>
#include <unordered_map>

#include "omni/core/error.h"

namespace omni::io::torch_pickle {
namespace {

struct StorageType {
  const char* name;  // the attribute of module `torch`
  DType dtype;
};
constexpr StorageType kStorageTypes[] = {
    {"DoubleStorage", DType::F64}, {"FloatStorage", DType::F32}, {"HalfStorage", DType::F16},
    {"BFloat16Storage", DType::BF16}, {"LongStorage", DType::I64}, {"IntStorage", DType::I32},
    {"ShortStorage", DType::I16}, {"CharStorage", DType::I8}, {"ByteStorage", DType::U8},
    {"BoolStorage", DType::BOOL},
};

// The callables and classes a state dict may name.
enum class Global : uint8_t { OrderedDict, RebuildTensorV2, RebuildParameter, Storage };

struct Seq;
struct Dict;

// The value model: just enough of Python's objects for a state dict.
struct Value {
  enum Kind : uint8_t { None, Bool, Int, Float, Str, Tuple, List, DictK, GlobalK, StorageK, TensorK };
  Kind kind = None;
  int64_t i = 0;  // Bool / Int; Storage / Tensor: index into the parser's tables
  double f = 0;
  Global global = Global::OrderedDict;
  DType dtype = DType::F32;  // GlobalK with global == Storage
  std::string s;             // Str; GlobalK: "module.name"
  std::shared_ptr<Seq> seq;  // Tuple, List
  std::shared_ptr<Dict> dict;
};

struct Seq {
  std::vector<Value> items;
};
struct Dict {
  std::vector<std::pair<Value, Value>> items;
  std::unordered_map<std::string, size_t> str_index;  // str key -> position (for overwrites)
};

const char* kind_name(Value::Kind k) {
  switch (k) {
    case Value::None: return "None";
    case Value::Bool: return "bool";
    case Value::Int: return "int";
    case Value::Float: return "float";
    case Value::Str: return "str";
    case Value::Tuple: return "tuple";
    case Value::List: return "list";
    case Value::DictK: return "dict";
    case Value::GlobalK: return "global";
    case Value::StorageK: return "storage";
    case Value::TensorK: return "tensor";
  }
  return "?";
}

// Quotes untrusted text for a message: printable ASCII kept, the rest escaped, length capped.
std::string printable(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < 120; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (s.size() > 120) out += "...";
  return out;
}

bool mul_overflows(int64_t a, int64_t b, int64_t* out) { return __builtin_mul_overflow(a, b, out); }
bool add_overflows(int64_t a, int64_t b, int64_t* out) { return __builtin_add_overflow(a, b, out); }

class Parser {
 public:
  Parser(const uint8_t* data, size_t size, const std::string& context)
      : data_(data), size_(size), ctx_(context) {}

  // Breaks every container's contents first, so that deep nesting or reference cycles built by
  // a hostile stream are released without recursion.
  ~Parser() {
    for (auto& s : seqs_) s->items.clear();
    for (auto& d : dicts_) d->items.clear();
  }

  StateDict run() {
    Value top = execute();
    return to_state_dict(top);
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw Error(ctx_, why + " (opcode at byte " + std::to_string(op_pos_) + ")");
  }

  // ---- input ----
  const uint8_t* take(uint64_t n) {
    if (n > size_ - pos_)
      fail("truncated: needs " + std::to_string(n) + " more bytes, " + std::to_string(size_ - pos_) +
           " left");
    const uint8_t* p = data_ + pos_;
    pos_ += static_cast<size_t>(n);
    return p;
  }
  uint64_t le(int n) {
    const uint8_t* p = take(n);
    uint64_t v = 0;
    for (int k = n - 1; k >= 0; --k) v = (v << 8) | p[k];
    return v;
  }
  std::string line() {
    size_t start = pos_;
    while (pos_ < size_ && data_[pos_] != '\n') {
      if (pos_ - start > 512) fail("GLOBAL name longer than 512 bytes");
      ++pos_;
    }
    if (pos_ >= size_) fail("truncated inside a GLOBAL name");
    std::string s(reinterpret_cast<const char*>(data_ + start), pos_ - start);
    ++pos_;  // the newline
    return s;
  }

  // ---- stack ----
  size_t frame_base() const { return marks_.empty() ? 0 : marks_.back(); }
  Value pop(const char* op) {
    if (stack_.size() <= frame_base()) fail(std::string(op) + ": stack underflow");
    Value v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  Value& top(const char* op) {
    if (stack_.size() <= frame_base()) fail(std::string(op) + ": stack underflow");
    return stack_.back();
  }
  std::vector<Value> pop_mark(const char* op) {
    if (marks_.empty()) fail(std::string(op) + ": no MARK on the stack");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Value> items(std::make_move_iterator(stack_.begin() + m),
                             std::make_move_iterator(stack_.end()));
    stack_.resize(m);
    return items;
  }

  // ---- values ----
  Value make_seq(Value::Kind kind, std::vector<Value> items) {
    Value v;
    v.kind = kind;
    v.seq = std::make_shared<Seq>();
    v.seq->items = std::move(items);
    seqs_.push_back(v.seq);
    return v;
  }
  Value make_dict() {
    Value v;
    v.kind = Value::DictK;
    v.dict = std::make_shared<Dict>();
    dicts_.push_back(v.dict);
    return v;
  }
  static Value make_int(int64_t i) {
    Value v;
    v.kind = Value::Int;
    v.i = i;
    return v;
  }
  static Value make_str(std::string s) {
    Value v;
    v.kind = Value::Str;
    v.s = std::move(s);
    return v;
  }
  static void dict_set(Dict& d, Value k, Value v) {
    if (k.kind == Value::Str) {
      auto it = d.str_index.find(k.s);
      if (it != d.str_index.end()) {
        d.items[it->second].second = std::move(v);
        return;
      }
      d.str_index.emplace(k.s, d.items.size());
    }
    d.items.emplace_back(std::move(k), std::move(v));
  }

  Value resolve_global(const std::string& module, const std::string& name) {
    Value v;
    v.kind = Value::GlobalK;
    v.s = module + "." + name;
    if (v.s == "collections.OrderedDict") {
      v.global = Global::OrderedDict;
      return v;
    }
    if (v.s == "torch._utils._rebuild_tensor_v2") {
      v.global = Global::RebuildTensorV2;
      return v;
    }
    if (v.s == "torch._utils._rebuild_parameter") {
      v.global = Global::RebuildParameter;
      return v;
    }
    if (module == "torch")
      for (const auto& st : kStorageTypes)
        if (name == st.name) {
          v.global = Global::Storage;
          v.dtype = st.dtype;
          return v;
        }
    throw Error(ctx_, "global '" + printable(v.s) + "' is not allowed in a checkpoint");
  }

  // BINPERSID: ('storage', torch.<T>Storage, key, location, numel)
  Value persistent_load(const Value& pid) {
    if (pid.kind != Value::Tuple || pid.seq->items.size() != 5)
      fail("persistent id is not a 5-tuple ('storage', type, key, location, numel)");
    const auto& it = pid.seq->items;
    if (it[0].kind != Value::Str || it[0].s != "storage")
      fail("persistent id does not start with 'storage'");
    if (it[1].kind != Value::GlobalK || it[1].global != Global::Storage)
      fail("persistent id names no typed storage class (got a " +
           std::string(kind_name(it[1].kind)) + (it[1].kind == Value::GlobalK ? " " + it[1].s : "") +
           ")");
    if (it[2].kind != Value::Str) fail("persistent id: storage key is not a str");
    if (it[3].kind != Value::Str) fail("persistent id: storage location is not a str");
    if (it[4].kind != Value::Int || it[4].i < 0)
      fail("persistent id: storage size is not a non-negative int");
    StorageRef ref{it[1].dtype, it[2].s, it[3].s, it[4].i};
    Value v;
    v.kind = Value::StorageK;
    auto found = storage_index_.find(ref.key);
    if (found != storage_index_.end()) {
      const StorageRef& old = storages_[found->second];
      if (old.dtype != ref.dtype || old.numel != ref.numel)
        fail("storage '" + printable(ref.key) + "' is declared twice with different types or sizes");
      v.i = static_cast<int64_t>(found->second);
    } else {
      v.i = static_cast<int64_t>(storages_.size());
      storage_index_.emplace(ref.key, storages_.size());
      storages_.push_back(std::move(ref));
    }
    return v;
  }

  std::vector<int64_t> int_tuple(const Value& v, const char* what) {
    if (v.kind != Value::Tuple && v.kind != Value::List)
      fail(std::string("_rebuild_tensor_v2: ") + what + " is a " + kind_name(v.kind) + ", not a tuple");
    std::vector<int64_t> out;
    for (const Value& e : v.seq->items) {
      if (e.kind != Value::Int || e.i < 0)
        fail(std::string("_rebuild_tensor_v2: ") + what + " holds a " +
             (e.kind == Value::Int ? "negative int" : kind_name(e.kind)));
      out.push_back(e.i);
    }
    return out;
  }

  // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
  Value rebuild_tensor(const std::vector<Value>& a) {
    if (a.size() != 6 && a.size() != 7)
      fail("_rebuild_tensor_v2 takes 6 or 7 arguments, got " + std::to_string(a.size()));
    if (a[0].kind != Value::StorageK)
      fail(std::string("_rebuild_tensor_v2: argument 1 is a ") + kind_name(a[0].kind) + ", not a storage");
    if (a[1].kind != Value::Int || a[1].i < 0)
      fail("_rebuild_tensor_v2: storage offset is not a non-negative int");
    TensorRef t;
    t.storage = static_cast<size_t>(a[0].i);
    t.offset = a[1].i;
    t.sizes = int_tuple(a[2], "size");
    t.strides = int_tuple(a[3], "stride");
    if (t.sizes.size() != t.strides.size())
      fail("_rebuild_tensor_v2: size has " + std::to_string(t.sizes.size()) + " dims but stride has " +
           std::to_string(t.strides.size()));
    if (a[4].kind != Value::Bool) fail("_rebuild_tensor_v2: requires_grad is not a bool");
    t.requires_grad = a[4].i != 0;
    if (a[5].kind != Value::DictK && a[5].kind != Value::None)
      fail("_rebuild_tensor_v2: backward_hooks is not a dict");
    if (a.size() == 7 && a[6].kind != Value::DictK && a[6].kind != Value::None)
      fail("_rebuild_tensor_v2: metadata is not a dict");

    // The view must lie inside the storage.
    const StorageRef& st = storages_[t.storage];
    int64_t numel = 1, last = t.offset;
    for (size_t d = 0; d < t.sizes.size(); ++d) {
      int64_t span;
      if (mul_overflows(numel, t.sizes[d], &numel) ||
          (t.sizes[d] > 0 && (mul_overflows(t.sizes[d] - 1, t.strides[d], &span) ||
                              add_overflows(last, span, &last))))
        fail("_rebuild_tensor_v2: size/stride overflow");
    }
    int64_t nbytes;
    if (mul_overflows(numel, static_cast<int64_t>(dtype_size(st.dtype)), &nbytes))
      fail("_rebuild_tensor_v2: size/stride overflow (tensor larger than 2^63 bytes)");
    if (numel > 0 ? last >= st.numel : t.offset > st.numel)
      fail("_rebuild_tensor_v2: view (offset " + std::to_string(t.offset) + ", size " +
           shape_str(t.sizes) + ", stride " + shape_str(t.strides) + ") runs past the end of storage '" +
           printable(st.key) + "' (" + std::to_string(st.numel) + " elements)");

    Value v;
    v.kind = Value::TensorK;
    v.i = static_cast<int64_t>(tensors_.size());
    tensors_.push_back(std::move(t));
    return v;
  }

  Value reduce(const Value& fn, const Value& args) {
    if (fn.kind != Value::GlobalK)
      fail(std::string("REDUCE: callable is a ") + kind_name(fn.kind) + ", not an allowed global");
    if (args.kind != Value::Tuple)
      fail(std::string("REDUCE: arguments are a ") + kind_name(args.kind) + ", not a tuple");
    const auto& a = args.seq->items;
    switch (fn.global) {
      case Global::OrderedDict:
        if (!a.empty()) fail("collections.OrderedDict called with arguments");
        return make_dict();
      case Global::RebuildTensorV2:
        return rebuild_tensor(a);
      case Global::RebuildParameter: {
        // _rebuild_parameter(data, requires_grad, backward_hooks)
        if (a.size() != 3 || a[0].kind != Value::TensorK || a[1].kind != Value::Bool ||
            (a[2].kind != Value::DictK && a[2].kind != Value::None))
          fail("_rebuild_parameter expects (tensor, bool, dict)");
        TensorRef t = tensors_[static_cast<size_t>(a[0].i)];
        t.requires_grad = a[1].i != 0;
        Value v;
        v.kind = Value::TensorK;
        v.i = static_cast<int64_t>(tensors_.size());
        tensors_.push_back(std::move(t));
        return v;
      }
      case Global::Storage:
        break;
    }
    fail("'" + fn.s + "' may only appear inside a storage persistent id");
  }

  Value execute() {
    while (true) {
      if (pos_ >= size_) {
        op_pos_ = pos_;
        fail("truncated: the stream ends before STOP");
      }
      op_pos_ = pos_;
      const uint8_t op = data_[pos_++];
      switch (op) {
        case 0x80: {  // PROTO
          uint64_t v = le(1);
          if (v < 2 || v > 5) fail("unsupported pickle protocol " + std::to_string(v));
          break;
        }
        case 0x95:  // FRAME (protocol 4): an 8-byte length; frames are just a buffering hint
          le(8);
          break;
        case '.':  // STOP
          return pop("STOP");
        case '(':  // MARK
          marks_.push_back(stack_.size());
          break;
        case '0':  // POP (also drops a MARK right at the top, as Python does)
          if (!marks_.empty() && marks_.back() == stack_.size()) marks_.pop_back();
          else pop("POP");
          break;
        case '1':  // POP_MARK
          pop_mark("POP_MARK");
          break;
        case '2': {  // DUP
          Value v = top("DUP");
          stack_.push_back(std::move(v));
          break;
        }
        case 'N':
          stack_.emplace_back();
          break;
        case 0x88:
        case 0x89: {  // NEWTRUE / NEWFALSE
          Value v;
          v.kind = Value::Bool;
          v.i = op == 0x88;
          stack_.push_back(std::move(v));
          break;
        }
        case 'J':  // BININT: signed 4 bytes
          stack_.push_back(make_int(static_cast<int32_t>(static_cast<uint32_t>(le(4)))));
          break;
        case 'K':  // BININT1
          stack_.push_back(make_int(static_cast<int64_t>(le(1))));
          break;
        case 'M':  // BININT2
          stack_.push_back(make_int(static_cast<int64_t>(le(2))));
          break;
        case 0x8a:    // LONG1
        case 0x8b: {  // LONG4
          uint64_t n = op == 0x8a ? le(1) : le(4);
          if (n > 8) fail("integer wider than 64 bits");
          const uint8_t* p = take(n);
          uint64_t u = 0;
          for (int k = static_cast<int>(n) - 1; k >= 0; --k) u = (u << 8) | p[k];
          if (n > 0 && n < 8 && (p[n - 1] & 0x80)) u |= ~uint64_t(0) << (8 * n);  // sign-extend
          stack_.push_back(make_int(static_cast<int64_t>(u)));
          break;
        }
        case 'G': {  // BINFLOAT: big-endian double
          const uint8_t* p = take(8);
          uint64_t u = 0;
          for (int k = 0; k < 8; ++k) u = (u << 8) | p[k];
          Value v;
          v.kind = Value::Float;
          std::memcpy(&v.f, &u, 8);
          stack_.push_back(std::move(v));
          break;
        }
        case 'X':     // BINUNICODE
        case 0x8c:    // SHORT_BINUNICODE
        case 0x8d: {  // BINUNICODE8
          uint64_t n = op == 'X' ? le(4) : op == 0x8c ? le(1) : le(8);
          const uint8_t* p = take(n);
          stack_.push_back(make_str(std::string(reinterpret_cast<const char*>(p), n)));
          break;
        }
        case ')':
          stack_.push_back(make_seq(Value::Tuple, {}));
          break;
        case 't':
          stack_.push_back(make_seq(Value::Tuple, pop_mark("TUPLE")));
          break;
        case 0x85:
        case 0x86:
        case 0x87: {  // TUPLE1..3
          size_t n = op - 0x84;
          std::vector<Value> items(n);
          for (size_t k = n; k-- > 0;) items[k] = pop("TUPLEn");
          stack_.push_back(make_seq(Value::Tuple, std::move(items)));
          break;
        }
        case ']':
          stack_.push_back(make_seq(Value::List, {}));
          break;
        case 'l':
          stack_.push_back(make_seq(Value::List, pop_mark("LIST")));
          break;
        case 'a': {  // APPEND
          Value v = pop("APPEND");
          Value& l = top("APPEND");
          if (l.kind != Value::List) fail(std::string("APPEND to a ") + kind_name(l.kind));
          l.seq->items.push_back(std::move(v));
          break;
        }
        case 'e': {  // APPENDS
          std::vector<Value> items = pop_mark("APPENDS");
          Value& l = top("APPENDS");
          if (l.kind != Value::List) fail(std::string("APPENDS to a ") + kind_name(l.kind));
          for (auto& v : items) l.seq->items.push_back(std::move(v));
          break;
        }
        case '}':
          stack_.push_back(make_dict());
          break;
        case 'd': {  // DICT
          std::vector<Value> items = pop_mark("DICT");
          if (items.size() % 2) fail("DICT: odd number of items");
          Value d = make_dict();
          for (size_t k = 0; k < items.size(); k += 2)
            dict_set(*d.dict, std::move(items[k]), std::move(items[k + 1]));
          stack_.push_back(std::move(d));
          break;
        }
        case 's': {  // SETITEM
          Value v = pop("SETITEM");
          Value k = pop("SETITEM");
          Value& d = top("SETITEM");
          if (d.kind != Value::DictK) fail(std::string("SETITEM on a ") + kind_name(d.kind));
          dict_set(*d.dict, std::move(k), std::move(v));
          break;
        }
        case 'u': {  // SETITEMS
          std::vector<Value> items = pop_mark("SETITEMS");
          if (items.size() % 2) fail("SETITEMS: odd number of items");
          Value& d = top("SETITEMS");
          if (d.kind != Value::DictK) fail(std::string("SETITEMS on a ") + kind_name(d.kind));
          for (size_t k = 0; k < items.size(); k += 2)
            dict_set(*d.dict, std::move(items[k]), std::move(items[k + 1]));
          break;
        }
        case 'q':  // BINPUT
        case 'r': {  // LONG_BINPUT
          uint64_t idx = op == 'q' ? le(1) : le(4);
          memo_[idx] = top("BINPUT");
          break;
        }
        case 0x94: {  // MEMOIZE
          uint64_t idx = memo_.size();
          memo_[idx] = top("MEMOIZE");
          break;
        }
        case 'h':  // BINGET
        case 'j': {  // LONG_BINGET
          uint64_t idx = op == 'h' ? le(1) : le(4);
          auto it = memo_.find(idx);
          if (it == memo_.end()) fail("memo index " + std::to_string(idx) + " is not defined");
          stack_.push_back(it->second);
          break;
        }
        case 'c': {  // GLOBAL
          std::string module = line();
          std::string name = line();
          stack_.push_back(resolve_global(module, name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          Value name = pop("STACK_GLOBAL");
          Value module = pop("STACK_GLOBAL");
          if (name.kind != Value::Str || module.kind != Value::Str)
            fail("STACK_GLOBAL: module and name are not strs");
          stack_.push_back(resolve_global(module.s, name.s));
          break;
        }
        case 'R': {  // REDUCE
          Value args = pop("REDUCE");
          Value fn = pop("REDUCE");
          stack_.push_back(reduce(fn, args));
          break;
        }
        case 'b': {  // BUILD: only dict attributes (OrderedDict._metadata), which are dropped
          Value state = pop("BUILD");
          Value& obj = top("BUILD");
          if (obj.kind != Value::DictK || (state.kind != Value::DictK && state.kind != Value::None))
            fail(std::string("BUILD on a ") + kind_name(obj.kind) + " with a " + kind_name(state.kind) +
                 " state (only dict attributes such as _metadata are accepted)");
          break;
        }
        case 'Q': {  // BINPERSID
          Value pid = pop("BINPERSID");
          stack_.push_back(persistent_load(pid));
          break;
        }
        default: {
          char buf[64];
          if (op >= 0x20 && op < 0x7f)
            std::snprintf(buf, sizeof buf, "unsupported pickle opcode 0x%02x ('%c')", op, op);
          else
            std::snprintf(buf, sizeof buf, "unsupported pickle opcode 0x%02x", op);
          fail(buf);
        }
      }
    }
  }

  StateDict to_state_dict(const Value& top) {
    op_pos_ = pos_ ? pos_ - 1 : 0;
    if (top.kind != Value::DictK)
      throw Error(ctx_, std::string("the pickled object is a ") + kind_name(top.kind) +
                            ", not a state dict (a dict of tensors)");
    StateDict sd;
    sd.storages = storages_;
    for (const auto& [k, v] : top.dict->items) {
      if (k.kind != Value::Str)
        throw Error(ctx_, std::string("state dict key is a ") + kind_name(k.kind) + ", not a str");
      if (v.kind != Value::TensorK)
        throw Error(ctx_, "entry '" + printable(k.s) + "' is a " + kind_name(v.kind) +
                              ", not a tensor" +
                              (v.kind == Value::DictK
                                   ? " (a training checkpoint? only flat state dicts are supported)"
                                   : ""));
      sd.tensors.emplace_back(k.s, tensors_[static_cast<size_t>(v.i)]);
    }
    return sd;
  }

  const uint8_t* data_;
  size_t size_;
  std::string ctx_;
  size_t pos_ = 0;
  size_t op_pos_ = 0;
  std::vector<Value> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Value> memo_;
  std::vector<std::shared_ptr<Seq>> seqs_;
  std::vector<std::shared_ptr<Dict>> dicts_;
  std::vector<StorageRef> storages_;
  std::unordered_map<std::string, size_t> storage_index_;
  std::vector<TensorRef> tensors_;
};

// ---- writer ----

const char* storage_class(DType t) {
  for (const auto& st : kStorageTypes)
    if (st.dtype == t) return st.name;
  return "FloatStorage";  // unreachable: every DType has a storage class
}

class Emitter {
 public:
  std::string out;

  void op(uint8_t c) { out.push_back(static_cast<char>(c)); }
  void le(uint64_t v, int n) {
    for (int k = 0; k < n; ++k) out.push_back(static_cast<char>((v >> (8 * k)) & 0xff));
  }
  void integer(int64_t v) {
    if (v >= 0 && v < 256) {
      op('K');
      le(static_cast<uint64_t>(v), 1);
    } else if (v >= 0 && v < 65536) {
      op('M');
      le(static_cast<uint64_t>(v), 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      op('J');
      le(static_cast<uint32_t>(static_cast<int32_t>(v)), 4);
    } else {
      op(0x8a);  // LONG1, 8 bytes two's complement
      le(8, 1);
      le(static_cast<uint64_t>(v), 8);
    }
  }
  void str(const std::string& s) {
    op('X');
    le(s.size(), 4);
    out += s;
  }
  void put(uint32_t idx) {
    if (idx < 256) {
      op('q');
      le(idx, 1);
    } else {
      op('r');
      le(idx, 4);
    }
  }
  void get(uint32_t idx) {
    if (idx < 256) {
      op('h');
      le(idx, 1);
    } else {
      op('j');
      le(idx, 4);
    }
  }
  // A global, memoized on first use.
  void global(const std::string& module, const std::string& name) {
    std::string key = module + "\n" + name + "\n";
    auto it = memo.find(key);
    if (it != memo.end()) {
      get(it->second);
      return;
    }
    op('c');
    out += key;
    uint32_t idx = next_memo++;
    put(idx);
    memo.emplace(key, idx);
  }
  void int_tuple(const std::vector<int64_t>& v) {
    if (v.empty()) {
      op(')');
      return;
    }
    if (v.size() > 3) op('(');
    for (int64_t x : v) integer(x);
    op(v.size() == 1 ? 0x85 : v.size() == 2 ? 0x86 : v.size() == 3 ? 0x87 : 't');
  }

 private:
  std::unordered_map<std::string, uint32_t> memo;
  uint32_t next_memo = 0;
};

}  // namespace

std::string storage_type_name(DType t) { return std::string("torch.") + storage_class(t); }

StateDict parse_state_dict(const uint8_t* data, size_t size, const std::string& context) {
  Parser p(data, size, context);
  return p.run();
}

std::string write_state_dict(const StateDict& sd) {
  Emitter e;
  e.op(0x80);  // PROTO 2
  e.le(2, 1);
  e.global("collections", "OrderedDict");
  e.op(')');
  e.op('R');
  constexpr size_t kBatch = 1000;  // SETITEMS batch size, as Python's pickler does
  for (size_t start = 0; start < sd.tensors.size(); start += kBatch) {
    e.op('(');
    for (size_t i = start; i < sd.tensors.size() && i < start + kBatch; ++i) {
      const auto& [name, t] = sd.tensors[i];
      const StorageRef& st = sd.storages.at(t.storage);
      e.str(name);
      e.global("torch._utils", "_rebuild_tensor_v2");
      e.op('(');
      e.op('(');  // persistent id
      e.str("storage");
      e.global("torch", storage_class(st.dtype));
      e.str(st.key);
      e.str(st.location.empty() ? "cpu" : st.location);
      e.integer(st.numel);
      e.op('t');
      e.op('Q');
      e.integer(t.offset);
      e.int_tuple(t.sizes);
      e.int_tuple(t.strides);
      e.op(t.requires_grad ? 0x88 : 0x89);
      e.global("collections", "OrderedDict");  // backward_hooks = OrderedDict()
      e.op(')');
      e.op('R');
      e.op('t');
      e.op('R');
    }
    e.op('u');
  }
  e.op('.');
  return std::move(e.out);
}

}  // namespace omni::io::torch_pickle
