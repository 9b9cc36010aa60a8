// safetensors headers: build (writer) and parse + validate (reader). Every
// rule the reader enforces is listed in docs/design.md ("Checkpoints"); the
// JSON itself is parsed by nlohmann-json.
#include "serialize/safetensors_format.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "tandem/error.h"

namespace tandem {
namespace safetensors {

namespace {

using json = nlohmann::json;

struct DTypeCode {
  const char* code;
  DType dtype;
  uint64_t size;
};
constexpr DTypeCode kCodes[] = {{"F32", kFloat32, 4},
                                {"F64", kFloat64, 8},
                                {"I32", kInt32, 4},
                                {"I64", kInt64, 8},
                                {"U8", kUInt8, 1}};
constexpr const char* kSupported = "F32, F64, I32, I64, U8";

uint64_t code_size(DType t) {
  for (const auto& c : kCodes)
    if (c.dtype == t) return c.size;
  return 0;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Names in messages: quoted, at most 80 characters.
std::string quote_name(const std::string& name) {
  return name.size() <= 80 ? "'" + name + "'" : "'" + name.substr(0, 77) + "...'";
}

}  // namespace

void check_nesting(const char* text, size_t n, int max_depth, const std::string& what) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < n; ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      TANDEM_CHECK(++depth <= max_depth, what, ": the JSON nests deeper than ", max_depth,
                   " levels (at byte ", i, ")");
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
}

namespace {

// JSON parsing with duplicate keys rejected (nlohmann would keep the last). A
// header nests 3 levels (header, tensor info, shape).
json parse_json(const char* text, size_t n, const std::string& what) {
  check_nesting(text, n, 3, what);
  std::vector<std::set<std::string>> keys;
  std::string duplicate;
  json::parser_callback_t cb = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      keys.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!keys.empty()) keys.pop_back();
    } else if (event == json::parse_event_t::key && !keys.empty() &&
               !keys.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text, text + n, cb);
  } catch (const json::exception& e) {
    TANDEM_FAIL(what, ": the header is not valid JSON: ", e.what());
  }
  TANDEM_CHECK(duplicate.empty(), what, ": the header has the key ", quote_name(duplicate),
               " twice");
  return j;
}

uint64_t unsigned_of(const json& v, const std::string& what, const std::string& name,
                     const char* field) {
  TANDEM_CHECK(v.is_number_unsigned(), what, ": tensor ", quote_name(name), ": ", field,
               " must hold non-negative integers, got ", v.dump());
  return v.get<uint64_t>();
}

Entry parse_entry(const std::string& name, const json& info, const std::string& what) {
  TANDEM_CHECK(!name.empty(), what, ": a tensor has an empty name");
  TANDEM_CHECK(info.is_object(), what, ": tensor ", quote_name(name),
               ": expected an object with dtype, shape and data_offsets, got ", info.type_name());
  for (const auto& kv : info.items()) {
    TANDEM_CHECK(kv.key() == "dtype" || kv.key() == "shape" || kv.key() == "data_offsets", what,
                 ": tensor ", quote_name(name), ": unknown field ", quote_name(kv.key()),
                 " (expected dtype, shape, data_offsets)");
  }
  for (const char* field : {"dtype", "shape", "data_offsets"})
    TANDEM_CHECK(info.contains(field), what, ": tensor ", quote_name(name), ": missing field '",
                 field, "'");
  Entry e;
  e.name = name;
  const json& dt = info["dtype"];
  TANDEM_CHECK(dt.is_string(), what, ": tensor ", quote_name(name),
               ": dtype must be a string, got ", dt.dump());
  const std::string code = dt.get<std::string>();
  const DTypeCode* found = nullptr;
  for (const auto& c : kCodes)
    if (code == c.code) found = &c;
  TANDEM_CHECK(found != nullptr, what, ": tensor ", quote_name(name), ": dtype ", quote_name(code),
               " is not supported (supported: ", kSupported, ")");
  e.dtype = found->dtype;

  const json& shape = info["shape"];
  TANDEM_CHECK(shape.is_array(), what, ": tensor ", quote_name(name),
               ": shape must be an array, got ", shape.dump());
  uint64_t numel = 1;
  bool overflow = false;
  for (const json& d : shape) {
    const uint64_t v = unsigned_of(d, what, name, "shape");
    TANDEM_CHECK(v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), what, ": tensor ",
                 quote_name(name), ": dimension ", v, " is too large");
    e.shape.push_back(static_cast<int64_t>(v));
    overflow = overflow || __builtin_mul_overflow(numel, v, &numel);
  }
  uint64_t nbytes = 0;
  overflow = overflow || __builtin_mul_overflow(numel, found->size, &nbytes);
  TANDEM_CHECK(!overflow, what, ": tensor ", quote_name(name), ": shape ", shape_text(e.shape),
               " has more bytes than fit in 64 bits");

  const json& off = info["data_offsets"];
  TANDEM_CHECK(off.is_array() && off.size() == 2, what, ": tensor ", quote_name(name),
               ": data_offsets must be [begin, end], got ", off.dump());
  e.begin = unsigned_of(off[0], what, name, "data_offsets");
  e.end = unsigned_of(off[1], what, name, "data_offsets");
  TANDEM_CHECK(e.begin <= e.end, what, ": tensor ", quote_name(name), ": data_offsets [", e.begin,
               ", ", e.end, "] end before they begin");
  TANDEM_CHECK(e.end - e.begin == nbytes, what, ": tensor ", quote_name(name), " (", code,
               ", shape ", shape_text(e.shape), ") needs ", nbytes, " bytes but its data_offsets [",
               e.begin, ", ", e.end, "] hold ", e.end - e.begin);
  return e;
}

// The entries must tile the data exactly: sorted by offset, each starts where
// the previous one ended, and the last ends at the end of the data.
void check_coverage(const std::vector<Entry>& entries, uint64_t data_size,
                    const std::string& what) {
  std::vector<const Entry*> order;
  for (const Entry& e : entries) {
    TANDEM_CHECK(e.end <= data_size, what, ": tensor ", quote_name(e.name), ": data_offsets [",
                 e.begin, ", ", e.end, "] run past the end of the data (", data_size,
                 " bytes; is the file truncated?)");
    order.push_back(&e);
  }
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t pos = 0;
  const Entry* last = nullptr;  // the last entry with data
  for (const Entry* e : order) {
    TANDEM_CHECK(e->begin <= pos, what, ": bytes [", pos, ", ", e->begin,
                 ") of the data belong to no tensor");
    TANDEM_CHECK(e->begin == pos, what, ": tensors ", quote_name(last ? last->name : ""), " [",
                 last ? last->begin : 0, ", ", pos, ") and ", quote_name(e->name), " [", e->begin,
                 ", ", e->end, ") overlap");
    pos = e->end;
    if (e->end > e->begin) last = e;
  }
  TANDEM_CHECK(pos == data_size, what, ": the last ", data_size - pos,
               " bytes of the data belong to no tensor");
}

}  // namespace

const char* dtype_code(DType t) {
  for (const auto& c : kCodes)
    if (c.dtype == t) return c.code;
  TANDEM_FAIL("safetensors: unknown dtype");
}

uint64_t header_length(const unsigned char* prefix8, uint64_t file_size, const std::string& what) {
  TANDEM_CHECK(file_size >= 8, what, ": the file is ", file_size,
               " bytes, too short for a safetensors file (8-byte header length, header, data)");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | prefix8[i];  // little-endian
  TANDEM_CHECK(n <= kMaxHeaderBytes, what, ": the header length ", n,
               " is larger than the limit of ", kMaxHeaderBytes,
               " bytes (not a safetensors file?)");
  TANDEM_CHECK(n <= file_size - 8, what, ": the header length ", n,
               " runs past the end of the file (", file_size, " bytes; is the file truncated?)");
  TANDEM_CHECK(n >= 2, what, ": the header length ", n, " is too small for a JSON object");
  return n;
}

Header parse_header(const char* text, size_t n, uint64_t data_size, const std::string& what) {
  TANDEM_CHECK(n > 0 && text[0] == '{', what, ": the header does not start with '{'");
  const json j = parse_json(text, n, what);
  TANDEM_CHECK(j.is_object(), what, ": the header is not a JSON object");
  Header h;
  for (const auto& kv : j.items()) {
    if (kv.key() == "__metadata__") {
      TANDEM_CHECK(kv.value().is_object(), what,
                   ": __metadata__ must be an object of strings, got ", kv.value().type_name());
      for (const auto& m : kv.value().items()) {
        TANDEM_CHECK(m.value().is_string(), what, ": __metadata__ value of ", quote_name(m.key()),
                     " must be a string, got ", m.value().dump());
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    h.entries.push_back(parse_entry(kv.key(), kv.value(), what));
  }
  check_coverage(h.entries, data_size, what);
  std::sort(h.entries.begin(), h.entries.end(),
            [](const Entry& a, const Entry& b) { return a.name < b.name; });
  return h;
}

Header parse(const unsigned char* data, size_t size, const std::string& what) {
  const uint64_t n = header_length(data, size, what);
  Header h = parse_header(reinterpret_cast<const char*>(data) + 8, n, size - 8 - n, what);
  h.data_start = 8 + n;
  return h;
}

std::string build_header(const std::vector<Entry>& entries,
                         const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& kv : metadata) m[kv.first] = kv.second;
    j["__metadata__"] = m;
  }
  for (const Entry& e : entries) {
    TANDEM_CHECK(code_size(e.dtype) > 0, "save_safetensors: unknown dtype");
    nlohmann::ordered_json info = nlohmann::ordered_json::object();
    info["dtype"] = dtype_code(e.dtype);
    info["shape"] = e.shape;
    info["data_offsets"] = {e.begin, e.end};
    j[e.name] = info;
  }
  std::string text;
  try {
    text = j.dump();
  } catch (const nlohmann::json::exception& e) {
    TANDEM_FAIL("save_safetensors: a tensor name or metadata string is not valid UTF-8 (", e.what(),
                ")");
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

}  // namespace safetensors
}  // namespace tandem
