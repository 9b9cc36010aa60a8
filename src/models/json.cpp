// JSON model files (tandem/models.h): a list of layers with their options,
// read into an nn::Sequential with every field checked (errors name the layer
// by its index path and type, and the field), and written back with the fields
// that differ from their defaults, so that text -> model -> text is stable.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "tandem/error.h"
#include "tandem/models.h"

namespace tandem {
namespace models {

namespace {

using Json = nlohmann::ordered_json;
using ModulePtr = std::shared_ptr<nn::Module>;

constexpr const char* kFormat = "tandem-model";
constexpr int64_t kVersion = 1;

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

std::string describe(const Json& j) {
  std::string text = j.dump();
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return std::string(j.type_name()) + " " + text;
}

// The fields of one JSON object, read with type and range checks. `where`
// names the object in errors ("layer 3 (Conv2d)").
class Fields {
 public:
  Fields(const Json& obj, std::string where, const std::vector<std::string>& allowed)
      : obj_(obj), where_(std::move(where)) {
    for (const auto& item : obj_.items()) {
      if (item.key() == "type") continue;
      if (std::find(allowed.begin(), allowed.end(), item.key()) != allowed.end()) continue;
      fail("unknown field '", item.key(), "'",
           allowed.empty() ? std::string("; this layer has no fields")
                           : "; valid fields: " + join(allowed));
    }
  }

  template <typename... Args>
  [[noreturn]] void fail(const Args&... args) const {
    TANDEM_FAIL("model json: ", where_, ": ", args...);
  }

  bool has(const char* name) const { return obj_.contains(name); }
  [[noreturn]] int64_t missing(const char* name) const { fail("missing field '", name, "'"); }

  const Json& get(const char* name) const {
    if (!obj_.contains(name)) missing(name);
    return obj_.at(name);
  }

  int64_t integer(const char* name, std::optional<int64_t> def, int64_t min) const {
    if (!has(name)) return def ? *def : missing(name);
    return checked_integer(get(name), name, min);
  }

  Size2 size2(const char* name, std::optional<Size2> def, int64_t min) const {
    if (!has(name)) {
      if (!def) missing(name);
      return *def;
    }
    const Json& j = get(name);
    if (j.is_array()) {
      if (j.size() != 2)
        fail("field '", name, "' must be an integer or an [h, w] pair, got ", describe(j));
      return Size2(checked_integer(j[0], name, min), checked_integer(j[1], name, min));
    }
    if (!j.is_number_integer()) {
      fail("field '", name, "' must be an integer or an [h, w] pair, got ", describe(j));
    }
    return Size2(checked_integer(j, name, min));
  }

  double number(const char* name, std::optional<double> def) const {
    if (!has(name)) return def ? *def : static_cast<double>(missing(name));
    const Json& j = get(name);
    if (!j.is_number()) fail("field '", name, "' must be a number, got ", describe(j));
    return j.get<double>();
  }

  bool boolean(const char* name, bool def) const {
    if (!has(name)) return def;
    const Json& j = get(name);
    if (!j.is_boolean()) fail("field '", name, "' must be true or false, got ", describe(j));
    return j.get<bool>();
  }

  std::string choice(const char* name, const std::string& def,
                     const std::vector<std::string>& choices) const {
    if (!has(name)) return def;
    const Json& j = get(name);
    if (!j.is_string()) fail("field '", name, "' must be a string, got ", describe(j));
    const std::string v = j.get<std::string>();
    if (std::find(choices.begin(), choices.end(), v) == choices.end()) {
      fail("field '", name, "' must be one of ", join(choices), ", got \"", v, "\"");
    }
    return v;
  }

  const std::string& where() const { return where_; }

 private:
  int64_t checked_integer(const Json& j, const char* name, int64_t min) const {
    if (!j.is_number_integer()) fail("field '", name, "' must be an integer, got ", describe(j));
    if (j.is_number_unsigned() && j.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      fail("field '", name, "' is too large: ", j.dump());
    }
    const int64_t v = j.get<int64_t>();
    if (v < min) fail("field '", name, "' must be >= ", min, ", got ", v);
    return v;
  }

  const Json& obj_;
  std::string where_;
};

nn::Sequential build_layers(const Json& list, const std::string& prefix);

ModulePtr build_conv(const Fields& f) {
  const int64_t in = f.integer("in", std::nullopt, 1), out = f.integer("out", std::nullopt, 1);
  const Size2 kernel = f.size2("kernel", std::nullopt, 1);
  const Size2 stride = f.size2("stride", Size2(1), 1), padding = f.size2("padding", Size2(0), 0);
  const Size2 dilation = f.size2("dilation", Size2(1), 1);
  const int64_t groups = f.integer("groups", 1, 1);
  if (in % groups != 0 || out % groups != 0) {
    f.fail("field 'groups' (", groups, ") must divide in (", in, ") and out (", out, ")");
  }
  return nn::Conv2d(nn::Conv2dOptions(in, out, kernel)
                        .stride(stride)
                        .padding(padding)
                        .dilation(dilation)
                        .groups(groups)
                        .bias(f.boolean("bias", true)))
      .ptr();
}

ModulePtr build_batch_norm(const Fields& f, bool two_d) {
  const int64_t features = f.integer("features", std::nullopt, 1);
  const double eps = f.number("eps", 1e-5), momentum = f.number("momentum", 0.1);
  if (!(eps > 0.0) || !std::isfinite(eps)) f.fail("field 'eps' must be > 0, got ", eps);
  if (!(momentum >= 0.0 && momentum <= 1.0)) {
    f.fail("field 'momentum' must be in [0, 1], got ", momentum);
  }
  const bool affine = f.boolean("affine", true);
  const bool train_weight = f.boolean("train_weight", true);
  if (!affine && !train_weight) f.fail("field 'train_weight' needs affine true");
  const nn::BatchNormOptions o =
      nn::BatchNormOptions(features).eps(eps).momentum(momentum).affine(affine).track_running_stats(
          f.boolean("track_running_stats", true));
  ModulePtr m = two_d ? ModulePtr(nn::BatchNorm2d(o).ptr()) : ModulePtr(nn::BatchNorm1d(o).ptr());
  if (!train_weight) static_cast<nn::BatchNormImplBase&>(*m).weight.set_requires_grad(false);
  return m;
}

template <typename Options>
Options pool_options(const Fields& f) {
  const Size2 kernel = f.size2("kernel", std::nullopt, 1);
  Options o(kernel);
  if (f.has("stride")) o.stride(f.size2("stride", std::nullopt, 1));
  const Size2 padding = f.size2("padding", Size2(0), 0);
  if (padding.h > kernel.h / 2 || padding.w > kernel.w / 2) {
    f.fail("field 'padding' ", padding, " must be at most half of kernel ", kernel);
  }
  o.padding(padding);
  return o;
}

ModulePtr build_residual(const Fields& f) {
  const Json& body = f.get("layers");
  if (!body.is_array() || body.empty()) {
    f.fail("field 'layers' must be a non-empty list of layers, got ", describe(body));
  }
  nn::Sequential main = build_layers(body, f.where() + " > ");
  if (!f.has("shortcut")) return nn::Residual(main).ptr();
  const Json& sc = f.get("shortcut");
  if (!sc.is_array()) f.fail("field 'shortcut' must be a list of layers, got ", describe(sc));
  return nn::Residual(main, build_layers(sc, f.where() + " > shortcut ")).ptr();
}

// ---- Writing helpers ------------------------------------------------------------------

Json size_json(const Size2& s) { return s.h == s.w ? Json(s.h) : Json::array({s.h, s.w}); }

// j[key] = v when the value differs from the field's default (reading's default).
void put_if(Json& j, const char* key, bool differs, const Json& v) {
  if (differs) j[key] = v;
}

Json layers_json(const nn::Module& model, const std::string& prefix);

using Writer = std::function<bool(const nn::Module&, Json&, const std::string& where)>;

// A writer for modules of class M: write(m, j, where) adds m's fields to j
// (whose "type" is set); false when the module is not an M.
template <typename M, typename Write>
Writer writes(Write write) {
  return [write](const nn::Module& m, Json& j, const std::string& where) {
    const auto* typed = dynamic_cast<const M*>(&m);
    if (typed == nullptr) return false;
    write(*typed, j, where);
    return true;
  };
}

// A layer with no fields.
template <typename M>
Writer writes_type() {
  return writes<M>([](const M&, Json&, const std::string&) {});
}

// ---- The layer table: each type's fields, how to read it and how to write it -------

struct LayerKind {
  const char* type;
  std::vector<std::string> fields;
  std::function<ModulePtr(const Fields&)> build;
  Writer write;
};

void write_batch_norm(const nn::BatchNormImplBase& bn, Json& j, const std::string&) {
  const nn::BatchNormOptions& o = bn.options;
  j["features"] = o.num_features();
  put_if(j, "eps", o.eps() != 1e-5, o.eps());
  put_if(j, "momentum", o.momentum() != 0.1, o.momentum());
  put_if(j, "affine", !o.affine(), false);
  put_if(j, "track_running_stats", !o.track_running_stats(), false);
  put_if(j, "train_weight", o.affine() && !bn.weight.requires_grad(), false);
}

// MaxPool2d's and AvgPool2d's common fields.
template <typename Options>
void write_pool(const Options& o, Json& j) {
  j["kernel"] = size_json(o.kernel_size());
  if (o.stride()) j["stride"] = size_json(*o.stride());
  put_if(j, "padding", !(o.padding() == Size2(0)), size_json(o.padding()));
}

const std::vector<LayerKind>& layer_kinds() {
  static const std::vector<LayerKind> kinds = {
      {"AdaptiveAvgPool2d",
       {"output"},
       [](const Fields& f) {
         return nn::AdaptiveAvgPool2d(f.size2("output", std::nullopt, 1)).ptr();
       },
       writes<nn::AdaptiveAvgPool2dImpl>(
           [](const nn::AdaptiveAvgPool2dImpl& m, Json& j, const std::string&) {
             j["output"] = size_json(m.output_size);
           })},
      {"AvgPool2d",
       {"kernel", "stride", "padding", "count_include_pad"},
       [](const Fields& f) {
         auto o = pool_options<nn::AvgPool2dOptions>(f);
         o.count_include_pad(f.boolean("count_include_pad", true));
         return nn::AvgPool2d(o).ptr();
       },
       writes<nn::AvgPool2dImpl>([](const nn::AvgPool2dImpl& m, Json& j, const std::string&) {
         write_pool(m.options, j);
         put_if(j, "count_include_pad", !m.options.count_include_pad(), false);
       })},
      {"BatchNorm1d",
       {"features", "eps", "momentum", "affine", "track_running_stats", "train_weight"},
       [](const Fields& f) { return build_batch_norm(f, false); },
       writes<nn::BatchNorm1dImpl>(write_batch_norm)},
      {"BatchNorm2d",
       {"features", "eps", "momentum", "affine", "track_running_stats", "train_weight"},
       [](const Fields& f) { return build_batch_norm(f, true); },
       writes<nn::BatchNorm2dImpl>(write_batch_norm)},
      {"Conv2d",
       {"in", "out", "kernel", "stride", "padding", "dilation", "groups", "bias"},
       build_conv,
       [](const nn::Module& m, Json& j, const std::string&) {
         const auto* c = dynamic_cast<const nn::Conv2dImpl*>(&m);
         // A PatchWhitening is a Conv2d too; its own row writes it.
         if (c == nullptr || dynamic_cast<const PatchWhiteningImpl*>(&m) != nullptr) return false;
         const nn::Conv2dOptions& o = c->options;
         j["in"] = o.in_channels();
         j["out"] = o.out_channels();
         j["kernel"] = size_json(o.kernel_size());
         put_if(j, "stride", !(o.stride() == Size2(1)), size_json(o.stride()));
         put_if(j, "padding", !(o.padding() == Size2(0)), size_json(o.padding()));
         put_if(j, "dilation", !(o.dilation() == Size2(1)), size_json(o.dilation()));
         put_if(j, "groups", o.groups() != 1, o.groups());
         put_if(j, "bias", !o.bias(), false);
         return true;
       }},
      {"Dropout",
       {"p"},
       [](const Fields& f) {
         const double p = f.number("p", 0.5);
         if (!(p >= 0.0 && p < 1.0)) f.fail("field 'p' must be in [0, 1), got ", p);
         return nn::Dropout(p).ptr();
       },
       writes<nn::DropoutImpl>([](const nn::DropoutImpl& m, Json& j, const std::string&) {
         put_if(j, "p", m.p != 0.5, m.p);
       })},
      {"Flatten",
       {"start_dim", "end_dim"},
       [](const Fields& f) {
         return nn::Flatten(f.integer("start_dim", 1, INT64_MIN),
                            f.integer("end_dim", -1, INT64_MIN))
             .ptr();
       },
       writes<nn::FlattenImpl>([](const nn::FlattenImpl& m, Json& j, const std::string&) {
         put_if(j, "start_dim", m.start_dim != 1, m.start_dim);
         put_if(j, "end_dim", m.end_dim != -1, m.end_dim);
       })},
      {"GELU",
       {"approximate"},
       [](const Fields& f) {
         const bool tanh = f.choice("approximate", "none", {"none", "tanh"}) == "tanh";
         return nn::GELU(tanh ? GeluApproximation::Tanh : GeluApproximation::None).ptr();
       },
       writes<nn::GELUImpl>([](const nn::GELUImpl& m, Json& j, const std::string&) {
         put_if(j, "approximate", m.approximate == GeluApproximation::Tanh, "tanh");
       })},
      {"Linear",
       {"in", "out", "bias"},
       [](const Fields& f) {
         return nn::Linear(f.integer("in", std::nullopt, 1), f.integer("out", std::nullopt, 1),
                           f.boolean("bias", true))
             .ptr();
       },
       writes<nn::LinearImpl>([](const nn::LinearImpl& m, Json& j, const std::string&) {
         j["in"] = m.in_features;
         j["out"] = m.out_features;
         put_if(j, "bias", !m.bias.defined(), false);
       })},
      {"MaxPool2d",
       {"kernel", "stride", "padding"},
       [](const Fields& f) { return nn::MaxPool2d(pool_options<nn::MaxPool2dOptions>(f)).ptr(); },
       writes<nn::MaxPool2dImpl>([](const nn::MaxPool2dImpl& m, Json& j, const std::string&) {
         write_pool(m.options, j);
       })},
      {"PatchWhitening",
       {"in", "kernel", "bias"},
       [](const Fields& f) {
         return PatchWhitening(f.integer("in", 3, 1), f.integer("kernel", 2, 1),
                               f.boolean("bias", false))
             .ptr();
       },
       writes<PatchWhiteningImpl>(
           [](const PatchWhiteningImpl& m, Json& j, const std::string& where) {
             put_if(j, "in", m.options.in_channels() != 3, m.options.in_channels());
             const Size2 k = m.options.kernel_size();
             if (k.h != k.w) {
               TANDEM_FAIL("to_json: ", where, ": PatchWhitening with a non-square kernel");
             }
             put_if(j, "kernel", k.h != 2, k.h);
             put_if(j, "bias", m.options.bias(), true);
           })},
      {"ReLU", {}, [](const Fields&) { return nn::ReLU().ptr(); }, writes_type<nn::ReLUImpl>()},
      {"Residual",
       {"layers", "shortcut"},
       build_residual,
       writes<nn::ResidualImpl>([](const nn::ResidualImpl& m, Json& j, const std::string& where) {
         j["layers"] = layers_json(*m.body, where + " > ");
         if (m.shortcut) j["shortcut"] = layers_json(*m.shortcut, where + " > shortcut ");
       })},
      {"Scale",
       {"factor"},
       [](const Fields& f) {
         const double factor = f.number("factor", std::nullopt);
         if (!std::isfinite(factor)) f.fail("field 'factor' must be finite, got ", factor);
         return Scale(factor).ptr();
       },
       writes<ScaleImpl>(
           [](const ScaleImpl& m, Json& j, const std::string&) { j["factor"] = m.factor; })},
      {"Sequential",
       {"layers"},
       [](const Fields& f) -> ModulePtr {
         const Json& list = f.get("layers");
         if (!list.is_array())
           f.fail("field 'layers' must be a list of layers, got ", describe(list));
         return build_layers(list, f.where() + " > ").ptr();
       },
       writes<nn::SequentialImpl>(
           [](const nn::SequentialImpl& m, Json& j, const std::string& where) {
             j["layers"] = layers_json(m, where + " > ");
           })},
      {"Sigmoid",
       {},
       [](const Fields&) { return nn::Sigmoid().ptr(); },
       writes_type<nn::SigmoidImpl>()},
      {"Tanh", {}, [](const Fields&) { return nn::Tanh().ptr(); }, writes_type<nn::TanhImpl>()},
  };
  return kinds;
}

std::string layer_type_names() {
  std::vector<std::string> names;
  for (const LayerKind& k : layer_kinds()) names.emplace_back(k.type);
  return join(names);
}

ModulePtr build_layer(const Json& j, const std::string& where) {
  if (!j.is_object()) TANDEM_FAIL("model json: ", where, ": expected an object, got ", describe(j));
  if (!j.contains("type")) TANDEM_FAIL("model json: ", where, ": missing field 'type'");
  if (!j.at("type").is_string()) {
    TANDEM_FAIL("model json: ", where, ": field 'type' must be a string, got ",
                describe(j.at("type")));
  }
  const std::string type = j.at("type").get<std::string>();
  const auto& kinds = layer_kinds();
  const auto it =
      std::find_if(kinds.begin(), kinds.end(), [&](const LayerKind& k) { return type == k.type; });
  if (it == kinds.end()) {
    TANDEM_FAIL("model json: ", where, ": unknown type '", type,
                "'; valid types: ", layer_type_names());
  }
  const Fields fields(j, where + " (" + type + ")", it->fields);
  try {
    return it->build(fields);
  } catch (const Error& e) {
    // The module's own check (already "model json: ..." for nested layers).
    if (e.message().rfind("model json: ", 0) == 0) throw;
    fields.fail(e.message());
  }
}

nn::Sequential build_layers(const Json& list, const std::string& prefix) {
  nn::Sequential seq;
  for (size_t i = 0; i < list.size(); ++i) {
    seq->push_back(build_layer(list[i], prefix + "layer " + std::to_string(i)));
  }
  return seq;
}

// ---- Writing --------------------------------------------------------------------------

// The row of the table that writes m (a Conv2d's, not a PatchWhitening's).
Json layer_json(const nn::Module& m, const std::string& where) {
  for (const LayerKind& k : layer_kinds()) {
    Json j;
    j["type"] = k.type;
    if (k.write(m, j, where)) return j;
  }
  TANDEM_FAIL("to_json: ", where, ": a ", m.type_name(),
              " layer cannot be written as JSON; supported types: ", layer_type_names());
}

// A Sequential as its list of layers; any other module as a list of one.
Json layers_json(const nn::Module& model, const std::string& prefix) {
  Json list = Json::array();
  if (auto* seq = dynamic_cast<const nn::SequentialImpl*>(&model)) {
    for (size_t i = 0; i < seq->size(); ++i) {
      const nn::Module& layer = *(*seq)[i];
      list.push_back(layer_json(
          layer, prefix + "layer " + std::to_string(i) + " (" + layer.type_name() + ")"));
    }
  } else {
    list.push_back(layer_json(model, prefix + "layer 0 (" + model.type_name() + ")"));
  }
  return list;
}

}  // namespace

int64_t json_nesting(const std::string& text, int64_t limit) {
  int64_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (const char c : text) {
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
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) break;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

nn::Sequential from_json(const std::string& json_text) {
  if (json_nesting(json_text, kMaxJsonNesting) > kMaxJsonNesting) {
    TANDEM_FAIL("model json: lists and objects nest deeper than ", kMaxJsonNesting,
                " levels; a model is a few levels deep (each Sequential or Residual adds two)");
  }
  Json top;
  try {
    top = Json::parse(json_text);
  } catch (const Json::parse_error& e) {
    TANDEM_FAIL("model json: not valid JSON: ", e.what());
  }
  if (!top.is_object()) {
    TANDEM_FAIL("model json: expected an object with a \"layers\" list at the top level, got ",
                describe(top));
  }
  const Fields f(top, "the top level", {"format", "version", "name", "layers"});
  if (f.choice("format", kFormat, {kFormat}) != kFormat) f.fail("unreachable");
  const int64_t version = f.integer("version", kVersion, 1);
  if (version != kVersion) f.fail("field 'version' must be ", kVersion, ", got ", version);
  if (f.has("name") && !top.at("name").is_string()) {
    f.fail("field 'name' must be a string, got ", describe(top.at("name")));
  }
  const Json& layers = f.get("layers");
  if (!layers.is_array() || layers.empty()) {
    f.fail("field 'layers' must be a non-empty list of layers, got ", describe(layers));
  }
  return build_layers(layers, "");
}

nn::Sequential load_json(const std::string& path) {
  std::ifstream in(path);
  TANDEM_CHECK(in.good(), "models::load_json: cannot open '", path, "'");
  std::ostringstream text;
  text << in.rdbuf();
  try {
    return from_json(text.str());
  } catch (const Error& e) {
    TANDEM_FAIL(path, ": ", e.message());
  }
}

std::string to_json(const nn::Module& model, const std::string& name) {
  Json top;
  top["format"] = kFormat;
  top["version"] = kVersion;
  if (!name.empty()) top["name"] = name;
  top["layers"] = layers_json(model, "");
  return top.dump(2) + "\n";
}

void save_json(const nn::Module& model, const std::string& path, const std::string& name) {
  const std::string text = to_json(model, name);
  std::ofstream out(path);
  TANDEM_CHECK(out.good(), "models::save_json: cannot open '", path, "' for writing");
  out << text;
  out.close();
  TANDEM_CHECK(!out.fail(), "models::save_json: writing '", path, "' failed");
}

}  // namespace models
}  // namespace tandem
