#include "layerprobe/io/torch_pickle.hpp"

#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <zip.h>

#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <unordered_map>
#include <vector>

#include "layerprobe/core/common.hpp"

namespace layerprobe {

namespace {

// ---------------------------------------------------------------------------
// Values. Objects live in an arena owned by the machine and refer to each
// other by raw pointer, so cyclic or deeply nested input cannot overflow the
// stack on destruction.

struct Storage {
  std::string key;
  torch::Dtype dtype;
  int64_t numel = 0;
  torch::Tensor data;  // 1-D, filled by the container reader
};

struct TensorRef {
  Storage* storage = nullptr;
  int64_t offset = 0;
  std::vector<int64_t> size, stride;
};

struct Value {
  enum class Kind { None, Bool, Int, BigInt, Float, String, Bytes, Tuple, List, Dict, Global, Storage, Tensor, Opaque };
  Kind kind = Kind::None;
  int64_t integer = 0;
  double real = 0;
  std::string text;  // String/Bytes/BigInt (raw little-endian bytes)/Global module/Opaque description
  std::string name;  // Global name
  std::vector<Value*> items;                       // Tuple, List
  std::vector<std::pair<Value*, Value*>> entries;  // Dict, in insertion order
  Storage* storage = nullptr;
  TensorRef tensor;
};

const char* kind_name(Value::Kind kind) {
  static const char* names[] = {"None",  "bool",  "int",    "int",   "float",   "str",    "bytes",
                                "tuple", "list",  "dict",   "global", "storage", "tensor", "object"};
  return names[static_cast<int>(kind)];
}

struct DtypeStorage {
  const char* name;
  torch::Dtype dtype;
};
constexpr DtypeStorage kStorageTypes[] = {
    {"FloatStorage", torch::kFloat32}, {"HalfStorage", torch::kFloat16},  {"BFloat16Storage", torch::kBFloat16},
    {"DoubleStorage", torch::kFloat64}, {"LongStorage", torch::kInt64},   {"IntStorage", torch::kInt32},
    {"ShortStorage", torch::kInt16},   {"CharStorage", torch::kInt8},     {"ByteStorage", torch::kUInt8},
    {"BoolStorage", torch::kBool},
};

// ---------------------------------------------------------------------------
// The machine: one instance reads one or more consecutive pickles of a file.

class Unpickler {
 public:
  Unpickler(std::string_view bytes, std::string source) : bytes_(bytes), source_(std::move(source)) {}

  // Runs one pickle from the current position up to its STOP.
  Value* load();
  size_t position() const { return pos_; }
  void set_position(size_t pos) { pos_ = pos; }

  // Storages in first-reference order, by key.
  std::vector<Storage*>& storages() { return storage_order_; }
  Storage* find_storage(const std::string& key) {
    auto it = storages_.find(key);
    return it == storages_.end() ? nullptr : it->second.get();
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(source_ + ": " + what + " (at byte " + std::to_string(op_start_) + "; not a torch.save state dict, or corrupt)");
  }

 private:
  Value* make(Value::Kind kind) {
    arena_.push_back(std::make_unique<Value>());
    arena_.back()->kind = kind;
    return arena_.back().get();
  }
  Value* make_int(int64_t v) {
    Value* value = make(Value::Kind::Int);
    value->integer = v;
    return value;
  }
  Value* make_text(Value::Kind kind, std::string text) {
    Value* value = make(kind);
    value->text = std::move(text);
    return value;
  }

  std::string_view take(uint64_t count) {
    if (count > bytes_.size() - pos_) fail("data runs past the end of the input (truncated file?)");
    std::string_view out = bytes_.substr(pos_, count);
    pos_ += count;
    return out;
  }
  uint64_t take_uint(int width) {
    std::string_view raw = take(width);
    uint64_t value = 0;
    for (int i = width - 1; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(raw[i]);
    return value;
  }
  std::string take_line() {
    size_t end = bytes_.find('\n', pos_);
    if (end == std::string_view::npos) fail("unterminated GLOBAL name");
    std::string line(bytes_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return line;
  }

  Value* pop() {
    if (stack_.size() <= stack_floor()) fail("pickle stack underflow");
    Value* top = stack_.back();
    stack_.pop_back();
    return top;
  }
  Value* top() {
    if (stack_.size() <= stack_floor()) fail("pickle stack underflow");
    return stack_.back();
  }
  size_t stack_floor() const { return marks_.empty() ? 0 : marks_.back(); }
  std::vector<Value*> pop_to_mark() {
    if (marks_.empty()) fail("MARK expected");
    size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<Value*> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return items;
  }
  void push(Value* value) {
    if (stack_.size() >= kMaxStack) fail("pickle stack too deep");
    stack_.push_back(value);
  }
  Value* make_tuple(std::vector<Value*> items) {
    Value* tuple = make(Value::Kind::Tuple);
    tuple->items = std::move(items);
    return tuple;
  }

  void set_items(Value* dict, const std::vector<Value*>& flat) {
    if (dict->kind != Value::Kind::Dict) fail(std::string("SETITEM(S) on a ") + kind_name(dict->kind));
    if (flat.size() % 2 != 0) fail("SETITEMS with an odd number of items");
    for (size_t i = 0; i < flat.size(); i += 2) dict->entries.emplace_back(flat[i], flat[i + 1]);
  }
  void append_items(Value* list, const std::vector<Value*>& items) {
    if (list->kind != Value::Kind::List) fail(std::string("APPEND(S) on a ") + kind_name(list->kind));
    list->items.insert(list->items.end(), items.begin(), items.end());
  }

  Value* reduce(Value* callable, Value* args);
  Value* rebuild_tensor(const std::vector<Value*>& args);
  Value* persistent_load(Value* pid);
  int64_t as_int(Value* value, const char* what) {
    if (value->kind != Value::Kind::Int) fail(std::string(what) + " is a " + kind_name(value->kind) + ", not an int");
    return value->integer;
  }
  std::vector<int64_t> as_int_tuple(Value* value, const char* what) {
    if (value->kind != Value::Kind::Tuple) fail(std::string(what) + " is not a tuple");
    std::vector<int64_t> out;
    for (Value* item : value->items) out.push_back(as_int(item, what));
    return out;
  }

  static constexpr size_t kMaxStack = 1 << 20;

  std::string_view bytes_;
  std::string source_;
  size_t pos_ = 0;
  size_t op_start_ = 0;
  std::vector<std::unique_ptr<Value>> arena_;
  std::vector<Value*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Value*> memo_;
  std::unordered_map<std::string, std::unique_ptr<Storage>> storages_;
  std::vector<Storage*> storage_order_;
};

Value* Unpickler::persistent_load(Value* pid) {
  // ('storage', storage_type, key, location, numel[, view_metadata])
  if (pid->kind != Value::Kind::Tuple || pid->items.size() < 5 || pid->items[0]->kind != Value::Kind::String ||
      pid->items[0]->text != "storage")
    fail("persistent id is not a ('storage', type, key, location, numel) tuple");
  Value* type = pid->items[1];
  Value* key = pid->items[2];
  if (type->kind != Value::Kind::Global) fail("storage type is not a global");
  if (key->kind != Value::Kind::String) fail("storage key is not a string");
  if (pid->items.size() > 5 && pid->items[5]->kind != Value::Kind::None)
    fail("storage views (pre-0.4 torch.save) are not supported; re-save the checkpoint with a current PyTorch");
  const torch::Dtype* dtype = nullptr;
  if (type->text == "torch" || type->text == "torch.cuda")
    for (const auto& entry : kStorageTypes)
      if (type->name == entry.name) dtype = &entry.dtype;
  if (!dtype) fail("unsupported storage type " + type->text + "." + type->name);
  int64_t numel = as_int(pid->items[4], "storage size");
  if (numel < 0) fail("negative storage size");

  auto& slot = storages_[key->text];
  if (!slot) {
    slot = std::make_unique<Storage>();
    slot->key = key->text;
    slot->dtype = *dtype;
    slot->numel = numel;
    storage_order_.push_back(slot.get());
  } else if (slot->dtype != *dtype || slot->numel != numel) {
    fail("storage '" + key->text + "' is declared twice with different types or sizes");
  }
  Value* value = make(Value::Kind::Storage);
  value->storage = slot.get();
  return value;
}

// _rebuild_tensor(_v2)(storage, storage_offset, size, stride, ...)
Value* Unpickler::rebuild_tensor(const std::vector<Value*>& args) {
  if (args.size() < 4) fail("tensor rebuild call with fewer than 4 arguments");
  if (args[0]->kind != Value::Kind::Storage) fail("tensor rebuild without a storage");
  Value* tensor = make(Value::Kind::Tensor);
  tensor->tensor.storage = args[0]->storage;
  tensor->tensor.offset = as_int(args[1], "storage offset");
  tensor->tensor.size = as_int_tuple(args[2], "tensor size");
  tensor->tensor.stride = as_int_tuple(args[3], "tensor stride");
  if (tensor->tensor.size.size() != tensor->tensor.stride.size()) fail("tensor size and stride differ in rank");
  return tensor;
}

Value* Unpickler::reduce(Value* callable, Value* args) {
  if (args->kind != Value::Kind::Tuple) fail("REDUCE arguments are not a tuple");
  if (callable->kind == Value::Kind::Global) {
    const std::string qualified = callable->text + "." + callable->name;
    if (qualified == "collections.OrderedDict") return make(Value::Kind::Dict);
    if (qualified == "torch._utils._rebuild_tensor_v2" || qualified == "torch._utils._rebuild_tensor")
      return rebuild_tensor(args->items);
    if (qualified == "torch._utils._rebuild_parameter" ||
        qualified == "torch._utils._rebuild_parameter_with_state") {
      if (args->items.empty() || args->items[0]->kind != Value::Kind::Tensor) fail("parameter without a tensor");
      return args->items[0];
    }
    // Anything else is kept as an inert placeholder: nothing is executed.
    return make_text(Value::Kind::Opaque, qualified + "(...)");
  }
  return make_text(Value::Kind::Opaque, "call result");
}

Value* Unpickler::load() {
  memo_.clear();
  stack_.clear();
  marks_.clear();
  while (true) {
    op_start_ = pos_;
    const auto op = static_cast<unsigned char>(take(1)[0]);
    switch (op) {
      case 0x80: take(1); break;                 // PROTO
      case 0x95: take(8); break;                 // FRAME: framing only
      case '.': {                                // STOP
        Value* result = pop();
        if (!marks_.empty()) fail("unclosed MARK at STOP");
        return result;
      }
      case '(': marks_.push_back(stack_.size()); break;  // MARK
      case '0': pop(); break;                             // POP
      case '1': pop_to_mark(); break;                     // POP_MARK
      case '2': push(top()); break;                       // DUP
      case 'N': push(make(Value::Kind::None)); break;
      case 0x88: case 0x89: {                    // NEWTRUE / NEWFALSE
        Value* value = make(Value::Kind::Bool);
        value->integer = op == 0x88;
        push(value);
        break;
      }
      case 'J': push(make_int(static_cast<int32_t>(take_uint(4)))); break;  // BININT
      case 'K': push(make_int(static_cast<int64_t>(take_uint(1)))); break;  // BININT1
      case 'M': push(make_int(static_cast<int64_t>(take_uint(2)))); break;  // BININT2
      case 0x8a: case 0x8b: {                    // LONG1 / LONG4
        uint64_t n = take_uint(op == 0x8a ? 1 : 4);
        std::string raw(take(n));
        if (n > 8) {
          push(make_text(Value::Kind::BigInt, raw));
        } else {
          uint64_t v = 0;
          for (size_t i = n; i-- > 0;) v = (v << 8) | static_cast<unsigned char>(raw[i]);
          if (n > 0 && n < 8 && (static_cast<unsigned char>(raw[n - 1]) & 0x80)) v |= ~uint64_t{0} << (8 * n);
          push(make_int(static_cast<int64_t>(v)));
        }
        break;
      }
      case 'G': {                                // BINFLOAT, big-endian
        std::string_view raw = take(8);
        uint64_t bits = 0;
        for (char c : raw) bits = (bits << 8) | static_cast<unsigned char>(c);
        Value* value = make(Value::Kind::Float);
        std::memcpy(&value->real, &bits, 8);
        push(value);
        break;
      }
      case 'X': push(make_text(Value::Kind::String, std::string(take(take_uint(4))))); break;   // BINUNICODE
      case 0x8c: push(make_text(Value::Kind::String, std::string(take(take_uint(1))))); break;  // SHORT_BINUNICODE
      case 0x8d: push(make_text(Value::Kind::String, std::string(take(take_uint(8))))); break;  // BINUNICODE8
      case 'T': push(make_text(Value::Kind::Bytes, std::string(take(take_uint(4))))); break;    // BINSTRING
      case 'U': push(make_text(Value::Kind::Bytes, std::string(take(take_uint(1))))); break;    // SHORT_BINSTRING
      case 'B': push(make_text(Value::Kind::Bytes, std::string(take(take_uint(4))))); break;    // BINBYTES
      case 'C': push(make_text(Value::Kind::Bytes, std::string(take(take_uint(1))))); break;    // SHORT_BINBYTES
      case ')': push(make_tuple({})); break;     // EMPTY_TUPLE
      case 't': push(make_tuple(pop_to_mark())); break;
      case 0x85: case 0x86: case 0x87: {         // TUPLE1..3
        std::vector<Value*> items(op - 0x84);
        for (size_t i = items.size(); i-- > 0;) items[i] = pop();
        push(make_tuple(std::move(items)));
        break;
      }
      case ']': push(make(Value::Kind::List)); break;  // EMPTY_LIST
      case 'l': {                                       // LIST
        Value* list = make(Value::Kind::List);
        list->items = pop_to_mark();
        push(list);
        break;
      }
      case 'a': {                                // APPEND
        Value* item = pop();
        append_items(top(), {item});
        break;
      }
      case 'e': {                                // APPENDS
        std::vector<Value*> items = pop_to_mark();
        append_items(top(), items);
        break;
      }
      case '}': push(make(Value::Kind::Dict)); break;  // EMPTY_DICT
      case 'd': {                                       // DICT
        Value* dict = make(Value::Kind::Dict);
        set_items(dict, pop_to_mark());
        push(dict);
        break;
      }
      case 's': {                                // SETITEM
        Value* value = pop();
        Value* key = pop();
        set_items(top(), {key, value});
        break;
      }
      case 'u': {                                // SETITEMS
        std::vector<Value*> flat = pop_to_mark();
        set_items(top(), flat);
        break;
      }
      case 'c': {                                // GLOBAL
        Value* global = make(Value::Kind::Global);
        global->text = take_line();
        global->name = take_line();
        push(global);
        break;
      }
      case 0x93: {                               // STACK_GLOBAL
        Value* name = pop();
        Value* module = pop();
        if (name->kind != Value::Kind::String || module->kind != Value::Kind::String)
          fail("STACK_GLOBAL needs two strings");
        Value* global = make(Value::Kind::Global);
        global->text = module->text;
        global->name = name->text;
        push(global);
        break;
      }
      case 'q': memo_[take_uint(1)] = top(); break;   // BINPUT
      case 'r': memo_[take_uint(4)] = top(); break;   // LONG_BINPUT
      case 0x94: {                                    // MEMOIZE
        uint64_t index = memo_.size();
        memo_[index] = top();
        break;
      }
      case 'h': case 'j': {                      // BINGET / LONG_BINGET
        auto it = memo_.find(take_uint(op == 'h' ? 1 : 4));
        if (it == memo_.end()) fail("memo reference to an unset slot");
        push(it->second);
        break;
      }
      case 'R': {                                // REDUCE
        Value* args = pop();
        Value* callable = pop();
        push(reduce(callable, args));
        break;
      }
      case 0x81: {                               // NEWOBJ
        pop();
        Value* cls = pop();
        push(make_text(Value::Kind::Opaque, cls->kind == Value::Kind::Global ? cls->text + "." + cls->name : "object"));
        break;
      }
      case 'b': pop(); top(); break;             // BUILD: state (e.g. OrderedDict._metadata) is not needed
      case 'Q': push(persistent_load(pop())); break;  // BINPERSID
      default: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op);
        fail(std::string("unsupported pickle opcode ") + hex);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// From the unpickled dict to tensors.

torch::Tensor materialize(const TensorRef& ref, const std::string& name, const std::string& source) {
  const Storage& storage = *ref.storage;
  const std::string where = source + ": tensor '" + name + "'";
  if (!storage.data.defined()) throw Error(where + ": storage '" + storage.key + "' has no data");
  if (ref.offset < 0) throw Error(where + ": negative storage offset");
  // The furthest element the view touches must lie inside the storage.
  bool empty = false;
  int64_t last = ref.offset;
  for (size_t d = 0; d < ref.size.size(); ++d) {
    if (ref.size[d] < 0 || ref.stride[d] < 0) throw Error(where + ": negative size or stride");
    empty = empty || ref.size[d] == 0;
    if (ref.size[d] > 0) {
      int64_t reach = 0;
      if (__builtin_mul_overflow(ref.size[d] - 1, ref.stride[d], &reach) || __builtin_add_overflow(last, reach, &last))
        throw Error(where + ": size/stride overflow");
    }
  }
  if (!empty && last >= storage.numel)
    throw Error(where + ": view (offset " + std::to_string(ref.offset) + ") reaches element " + std::to_string(last) +
                " of a storage with " + std::to_string(storage.numel) + " elements");
  if (empty) return torch::empty(ref.size, torch::TensorOptions().dtype(storage.dtype));
  return storage.data.as_strided(ref.size, ref.stride, ref.offset).clone(at::MemoryFormat::Contiguous);
}

TensorMap collect_tensors(Value* root, const std::string& source) {
  if (root->kind != Value::Kind::Dict)
    throw Error(source + ": top-level object is a " + kind_name(root->kind) + ", not a state dict");
  TensorMap tensors;
  for (const auto& [key, value] : root->entries) {
    if (key->kind != Value::Kind::String) throw Error(source + ": state dict has a non-string key");
    if (value->kind != Value::Kind::Tensor) {
      spdlog::debug("{}: skipping non-tensor entry '{}' ({})", source, key->text, kind_name(value->kind));
      continue;
    }
    tensors[key->text] = materialize(value->tensor, key->text, source);
  }
  return tensors;
}

// ---------------------------------------------------------------------------
// Zip container, read through libzip from memory.

class ZipReader {
 public:
  ZipReader(std::string_view bytes, const std::string& source) : source_(source), size_(bytes.size()) {
    zip_error_t error;
    zip_error_init(&error);
    zip_source_t* src = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &error);
    if (src) archive_ = zip_open_from_source(src, ZIP_RDONLY, &error);
    if (!archive_) {
      std::string message = zip_error_strerror(&error);
      if (src) zip_source_free(src);
      zip_error_fini(&error);
      throw Error(source_ + ": not a readable zip archive: " + message);
    }
    zip_error_fini(&error);
  }
  ~ZipReader() { zip_discard(archive_); }
  ZipReader(const ZipReader&) = delete;
  ZipReader& operator=(const ZipReader&) = delete;

  // The archive's top folder, from its one `<folder>/data.pkl`.
  std::string find_prefix() const {
    zip_int64_t count = zip_get_num_entries(archive_, 0);
    for (zip_int64_t i = 0; i < count; ++i) {
      const char* name = zip_get_name(archive_, static_cast<zip_uint64_t>(i), 0);
      if (!name) continue;
      std::string_view entry(name);
      const std::string_view suffix = "/data.pkl";
      if (entry.size() > suffix.size() && entry.substr(entry.size() - suffix.size()) == suffix) {
        std::string_view prefix = entry.substr(0, entry.size() - suffix.size() + 1);
        if (prefix.find('/') == prefix.size() - 1) return std::string(prefix);
      }
    }
    throw Error(source_ + ": zip archive has no <name>/data.pkl (not a torch.save file)");
  }

  bool has(const std::string& name) const { return zip_name_locate(archive_, name.c_str(), 0) >= 0; }

  // Reads entry `name` into `out`, which must match its size exactly.
  void read_into(const std::string& name, void* out, uint64_t expected_size) const {
    zip_stat_t stat;
    zip_int64_t index = zip_name_locate(archive_, name.c_str(), 0);
    if (index < 0 || zip_stat_index(archive_, static_cast<zip_uint64_t>(index), 0, &stat) != 0)
      throw Error(source_ + ": zip entry '" + name + "' is missing");
    if (!(stat.valid & ZIP_STAT_SIZE) || stat.size != expected_size)
      throw Error(source_ + ": zip entry '" + name + "' holds " + std::to_string(stat.size) + " bytes, expected " +
                  std::to_string(expected_size));
    if ((stat.valid & ZIP_STAT_COMP_METHOD) && stat.comp_method != ZIP_CM_STORE)
      throw Error(source_ + ": zip entry '" + name + "' is compressed; torch.save writes stored entries only");
    zip_file_t* file = zip_fopen_index(archive_, static_cast<zip_uint64_t>(index), 0);
    if (!file) throw Error(source_ + ": cannot open zip entry '" + name + "': " + zip_strerror(archive_));
    zip_int64_t got = expected_size == 0 ? 0 : zip_fread(file, out, expected_size);
    zip_fclose(file);
    if (got < 0 || static_cast<uint64_t>(got) != expected_size)
      throw Error(source_ + ": zip entry '" + name + "' is truncated or corrupt");
  }

  std::string read(const std::string& name) const {
    zip_stat_t stat;
    if (zip_stat(archive_, name.c_str(), 0, &stat) != 0 || !(stat.valid & ZIP_STAT_SIZE))
      throw Error(source_ + ": zip entry '" + name + "' is missing");
    // Stored entries cannot exceed the archive; this also bounds the allocation.
    if (stat.size > size_) throw Error(source_ + ": zip entry '" + name + "' claims more bytes than the archive has");
    std::string out(stat.size, '\0');
    read_into(name, out.data(), stat.size);
    return out;
  }

  uint64_t archive_size() const { return size_; }

 private:
  std::string source_;
  uint64_t size_;
  zip_t* archive_ = nullptr;
};

uint64_t storage_bytes(const Storage& storage, const std::string& source) {
  uint64_t element = torch::elementSize(storage.dtype);
  if (static_cast<uint64_t>(storage.numel) > std::numeric_limits<uint64_t>::max() / element)
    throw Error(source + ": storage '" + storage.key + "' size overflows");
  return static_cast<uint64_t>(storage.numel) * element;
}

constexpr unsigned char kLegacyMagic[] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

}  // namespace

TensorMap parse_torch_zip(std::string_view bytes, const std::string& source) {
  ZipReader zip(bytes, source);
  const std::string prefix = zip.find_prefix();
  if (zip.has(prefix + "byteorder") && zip.read(prefix + "byteorder") != "little")
    throw Error(source + ": big-endian checkpoints are not supported");
  const std::string pickle = zip.read(prefix + "data.pkl");
  Unpickler unpickler(pickle, source + ":" + prefix + "data.pkl");
  Value* root = unpickler.load();
  for (Storage* storage : unpickler.storages()) {
    uint64_t nbytes = storage_bytes(*storage, source);
    if (nbytes > zip.archive_size())
      throw Error(source + ": storage '" + storage->key + "' claims more bytes than the archive has");
    storage->data = torch::empty({storage->numel}, torch::TensorOptions().dtype(storage->dtype));
    zip.read_into(prefix + "data/" + storage->key, storage->data.data_ptr(), nbytes);
  }
  return collect_tensors(root, source);
}

TensorMap parse_torch_legacy(std::string_view bytes, const std::string& source) {
  Unpickler unpickler(bytes, source);
  Value* magic = unpickler.load();
  if (magic->kind != Value::Kind::BigInt || magic->text.size() != sizeof kLegacyMagic ||
      std::memcmp(magic->text.data(), kLegacyMagic, sizeof kLegacyMagic) != 0)
    throw Error(source + ": wrong magic number (not a torch.save file)");
  Value* protocol = unpickler.load();
  if (protocol->kind != Value::Kind::Int || protocol->integer != 1001)
    throw Error(source + ": unsupported torch.save protocol version");
  Value* sys_info = unpickler.load();
  if (sys_info->kind == Value::Kind::Dict)
    for (const auto& [key, value] : sys_info->entries)
      if (key->kind == Value::Kind::String && key->text == "little_endian" && value->kind == Value::Kind::Bool &&
          !value->integer)
        throw Error(source + ": big-endian checkpoints are not supported");
  Value* root = unpickler.load();
  Value* keys = unpickler.load();
  if (keys->kind != Value::Kind::List) throw Error(source + ": storage key list missing after the state dict");

  size_t pos = unpickler.position();
  for (Value* key : keys->items) {
    if (key->kind != Value::Kind::String) throw Error(source + ": storage key is not a string");
    Storage* storage = unpickler.find_storage(key->text);
    if (!storage) throw Error(source + ": storage '" + key->text + "' is listed but never used");
    if (bytes.size() - pos < 8) throw Error(source + ": truncated before storage '" + key->text + "'");
    int64_t count = 0;
    std::memcpy(&count, bytes.data() + pos, 8);
    pos += 8;
    if (count != storage->numel)
      throw Error(source + ": storage '" + key->text + "' has " + std::to_string(count) + " elements, expected " +
                  std::to_string(storage->numel));
    uint64_t nbytes = storage_bytes(*storage, source);
    if (nbytes > bytes.size() - pos)
      throw Error(source + ": storage '" + key->text + "' runs past the end of the file (truncated?)");
    storage->data = torch::empty({storage->numel}, torch::TensorOptions().dtype(storage->dtype));
    if (nbytes > 0) std::memcpy(storage->data.data_ptr(), bytes.data() + pos, nbytes);
    pos += nbytes;
  }
  return collect_tensors(root, source);
}

TensorMap parse_torch_checkpoint(std::string_view bytes, const std::string& source) {
  if (bytes.substr(0, 4) == std::string_view("PK\x03\x04", 4)) return parse_torch_zip(bytes, source);
  if (!bytes.empty() && static_cast<unsigned char>(bytes[0]) == 0x80) return parse_torch_legacy(bytes, source);
  throw Error(source + ": not a torch.save file (neither a zip archive nor a legacy pickle stream)");
}

TensorMap read_torch_checkpoint(const std::filesystem::path& path) {
  return parse_torch_checkpoint(read_file(path), path.string());
}

}  // namespace layerprobe
