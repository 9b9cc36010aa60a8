// Modules, optimizers and schedulers in safetensors files: save/load of a
// module (names, dtypes and shapes checked before any copy), the optimizer's
// state dict flattened to tensors plus JSON metadata, the scheduler's as JSON,
// and save_checkpoint/load_checkpoint, which restore all three or nothing.
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "serialize/safetensors_format.h"
#include "tandem/autograd.h"
#include "tandem/serialize.h"

namespace tandem {

namespace {

using json = nlohmann::json;

std::string describe(DType dtype, const Shape& shape) {
  return std::string(dtype_name(dtype)) + " " + shape_str(shape);
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

TensorList module_tensors(const nn::Module& module) {
  TensorList out = module.named_parameters();
  for (auto& kv : module.named_buffers()) out.push_back(std::move(kv));
  return out;
}

// The (destination, source) pairs that load the file into the module, after
// checking every name, dtype and shape; all problems in one error.
std::vector<std::pair<Tensor, Tensor>> plan_module_load(const nn::Module& module,
                                                        const SafetensorsFile& file,
                                                        const std::string& who,
                                                        const std::string& path) {
  const std::string optim_key = std::string(kOptimizerPrefix) + "state";
  const bool has_optimizer = file.metadata.count(optim_key) > 0;
  std::vector<std::string> problems;
  std::vector<std::pair<Tensor, Tensor>> copies;
  std::set<std::string> expected;
  for (const auto& kv : module_tensors(module)) {
    expected.insert(kv.first);
    const auto it = file.tensors.find(kv.first);
    if (it == file.tensors.end()) {
      problems.push_back("missing '" + kv.first + "' (" +
                         describe(kv.second.dtype(), kv.second.sizes()) + ")");
    } else if (it->second.dtype() != kv.second.dtype() || it->second.sizes() != kv.second.sizes()) {
      problems.push_back("'" + kv.first + "': expected " +
                         describe(kv.second.dtype(), kv.second.sizes()) + ", found " +
                         describe(it->second.dtype(), it->second.sizes()));
    } else {
      copies.emplace_back(kv.second, it->second);
    }
  }
  for (const auto& kv : file.tensors) {
    if (expected.count(kv.first) || (has_optimizer && starts_with(kv.first, kOptimizerPrefix)))
      continue;
    problems.push_back("unexpected '" + kv.first + "' (" +
                       describe(kv.second.dtype(), kv.second.sizes()) + ")");
  }
  if (!problems.empty()) {
    std::string list;
    const size_t shown = std::min<size_t>(problems.size(), 20);
    for (size_t i = 0; i < shown; ++i) list += (i ? "; " : "") + problems[i];
    if (shown < problems.size())
      list += "; and " + std::to_string(problems.size() - shown) + " more";
    TANDEM_FAIL(who, ": '", path, "' does not match the module ", module.type_name(), ": ", list);
  }
  return copies;
}

void copy_into(const std::vector<std::pair<Tensor, Tensor>>& copies) {
  NoGradGuard no_grad;
  for (const auto& c : copies) {
    Tensor dst = c.first;
    dst.copy_(c.second);
  }
}

void check_reserved(const Metadata& metadata, const char* who) {
  for (const std::string& key :
       {std::string(kOptimizerPrefix) + "state", std::string(kSchedulerKey)})
    TANDEM_CHECK(metadata.count(key) == 0, who, ": the metadata key '", key,
                 "' is reserved for training state");
}

// ---- Optimizer options <-> JSON ----

double finite(double v, const char* option) {
  TANDEM_CHECK(std::isfinite(v), "flatten_optimizer_state: option ", option, " is not finite (", v,
               "); JSON cannot hold it");
  return v;
}

template <typename O>
json adam_options(const O& o, const char* type) {
  return {
      {"type", type},
      {"lr", finite(o.lr(), "lr")},
      {"betas", {finite(std::get<0>(o.betas()), "betas"), finite(std::get<1>(o.betas()), "betas")}},
      {"eps", finite(o.eps(), "eps")},
      {"weight_decay", finite(o.weight_decay(), "weight_decay")},
      {"amsgrad", o.amsgrad()}};
}

json options_to_json(const optim::OptimizerOptions& o, const std::string& optimizer) {
  using namespace optim;  // NOLINT
  if (const auto* s = dynamic_cast<const SGDOptions*>(&o)) {
    return {{"type", "SGD"},
            {"lr", finite(s->lr(), "lr")},
            {"momentum", finite(s->momentum(), "momentum")},
            {"dampening", finite(s->dampening(), "dampening")},
            {"weight_decay", finite(s->weight_decay(), "weight_decay")},
            {"nesterov", s->nesterov()}};
  }
  if (const auto* a = dynamic_cast<const AdamOptions*>(&o)) return adam_options(*a, "Adam");
  if (const auto* a = dynamic_cast<const AdamWOptions*>(&o)) return adam_options(*a, "AdamW");
  if (const auto* r = dynamic_cast<const RMSpropOptions*>(&o)) {
    return {{"type", "RMSprop"},
            {"lr", finite(r->lr(), "lr")},
            {"alpha", finite(r->alpha(), "alpha")},
            {"eps", finite(r->eps(), "eps")},
            {"weight_decay", finite(r->weight_decay(), "weight_decay")},
            {"momentum", finite(r->momentum(), "momentum")},
            {"centered", r->centered()}};
  }
  if (const auto* g = dynamic_cast<const AdagradOptions*>(&o)) {
    return {{"type", "Adagrad"},
            {"lr", finite(g->lr(), "lr")},
            {"lr_decay", finite(g->lr_decay(), "lr_decay")},
            {"weight_decay", finite(g->weight_decay(), "weight_decay")},
            {"initial_accumulator_value",
             finite(g->initial_accumulator_value(), "initial_accumulator_value")},
            {"eps", finite(g->eps(), "eps")}};
  }
  TANDEM_FAIL(
      "flatten_optimizer_state: the options of optimizer ", optimizer,
      " are not of a built-in kind (SGD, Adam, AdamW, RMSprop, Adagrad) and cannot be saved");
}

// Reads fields of a JSON object, naming the object in errors.
struct Fields {
  const json& j;
  std::string where;

  const json& at(const char* key) const {
    TANDEM_CHECK(j.is_object() && j.contains(key), where, ": missing '", key, "'");
    return j.at(key);
  }
  double number(const char* key) const {
    const json& v = at(key);
    TANDEM_CHECK(v.is_number(), where, ": '", key, "' must be a number, got ", v.dump());
    return v.get<double>();
  }
  bool flag(const char* key) const {
    const json& v = at(key);
    TANDEM_CHECK(v.is_boolean(), where, ": '", key, "' must be true or false, got ", v.dump());
    return v.get<bool>();
  }
  std::string text(const char* key) const {
    const json& v = at(key);
    TANDEM_CHECK(v.is_string(), where, ": '", key, "' must be a string, got ", v.dump());
    return v.get<std::string>();
  }
  const json& array(const char* key) const {
    const json& v = at(key);
    TANDEM_CHECK(v.is_array(), where, ": '", key, "' must be an array, got ", v.dump());
    return v;
  }
};

template <typename O>
std::shared_ptr<const optim::OptimizerOptions> adam_from(const Fields& f) {
  const json& betas = f.array("betas");
  TANDEM_CHECK(betas.size() == 2 && betas[0].is_number() && betas[1].is_number(), f.where,
               ": 'betas' must be two numbers, got ", betas.dump());
  O o(f.number("lr"));
  o.betas({betas[0].get<double>(), betas[1].get<double>()})
      .eps(f.number("eps"))
      .weight_decay(f.number("weight_decay"))
      .amsgrad(f.flag("amsgrad"));
  return std::make_shared<O>(o);
}

std::shared_ptr<const optim::OptimizerOptions> options_from_json(const Fields& f) {
  using namespace optim;  // NOLINT
  const std::string type = f.text("type");
  if (type == "SGD") {
    return std::make_shared<SGDOptions>(SGDOptions(f.number("lr"))
                                            .momentum(f.number("momentum"))
                                            .dampening(f.number("dampening"))
                                            .weight_decay(f.number("weight_decay"))
                                            .nesterov(f.flag("nesterov")));
  }
  if (type == "Adam") return adam_from<AdamOptions>(f);
  if (type == "AdamW") return adam_from<AdamWOptions>(f);
  if (type == "RMSprop") {
    return std::make_shared<RMSpropOptions>(RMSpropOptions(f.number("lr"))
                                                .alpha(f.number("alpha"))
                                                .eps(f.number("eps"))
                                                .weight_decay(f.number("weight_decay"))
                                                .momentum(f.number("momentum"))
                                                .centered(f.flag("centered")));
  }
  if (type == "Adagrad") {
    return std::make_shared<AdagradOptions>(
        AdagradOptions(f.number("lr"))
            .lr_decay(f.number("lr_decay"))
            .weight_decay(f.number("weight_decay"))
            .initial_accumulator_value(f.number("initial_accumulator_value"))
            .eps(f.number("eps")));
  }
  TANDEM_FAIL(f.where, ": unknown options type '", type, "'");
}

// Parses a JSON metadata value (bounded nesting: see check_nesting).
json parse_metadata_json(const std::string& text, int max_depth, const std::string& where) {
  safetensors::check_nesting(text.data(), text.size(), max_depth, where);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    TANDEM_FAIL(where, ": not valid JSON: ", e.what());
  }
}

std::string tensor_name(const std::string& prefix, size_t g, size_t p, const std::string& buf) {
  return prefix + std::to_string(g) + "." + std::to_string(p) + "." + buf;
}

}  // namespace

// ---- Module ----

void save(const nn::Module& module, const std::string& path, const Metadata& metadata) {
  check_reserved(metadata, "save");
  save_safetensors(path, module_tensors(module), metadata);
}

Metadata load(nn::Module& module, const std::string& path) {
  SafetensorsFile file = load_safetensors(path);
  copy_into(plan_module_load(module, file, "load", path));
  return file.metadata;
}

// ---- Optimizer and scheduler ----

void flatten_optimizer_state(const optim::OptimizerState& state, TensorList& tensors,
                             Metadata& metadata, const std::string& prefix) {
  TANDEM_CHECK(state.group_options.size() == state.param_state.size(),
               "flatten_optimizer_state: ", state.group_options.size(), " option sets for ",
               state.param_state.size(), " groups");
  json groups = json::array();
  for (size_t g = 0; g < state.param_state.size(); ++g) {
    TANDEM_CHECK(state.group_options[g] != nullptr, "flatten_optimizer_state: group ", g,
                 " has no options");
    json params = json::array();
    for (size_t p = 0; p < state.param_state[g].size(); ++p) {
      const optim::OptimizerParamState& st = state.param_state[g][p];
      json buffers = json::array();
      for (const auto& kv : st.buffers) {
        buffers.push_back(kv.first);
        tensors.emplace_back(tensor_name(prefix, g, p, kv.first), kv.second);
      }
      params.push_back({{"step", st.step}, {"buffers", buffers}});
    }
    groups.push_back({{"options", options_to_json(*state.group_options[g], state.optimizer)},
                      {"params", params}});
  }
  const json j = {{"version", 1}, {"optimizer", state.optimizer}, {"groups", groups}};
  metadata[prefix + "state"] = j.dump();
}

optim::OptimizerState unflatten_optimizer_state(const SafetensorsFile& file,
                                                const std::string& prefix) {
  const std::string key = prefix + "state";
  const std::string where = "unflatten_optimizer_state: metadata '" + key + "'";
  const auto it = file.metadata.find(key);
  TANDEM_CHECK(it != file.metadata.end(), "unflatten_optimizer_state: the file has no optimizer ",
               "state (no metadata '", key, "')");
  const json j = parse_metadata_json(it->second, 6, where);
  const Fields top{j, where};
  TANDEM_CHECK(top.number("version") == 1, where, ": unknown version ", top.at("version").dump());
  optim::OptimizerState state;
  state.optimizer = top.text("optimizer");
  std::set<std::string> used;
  const json& groups = top.array("groups");
  for (size_t g = 0; g < groups.size(); ++g) {
    const Fields group{groups[g], where + " group " + std::to_string(g)};
    state.group_options.push_back(options_from_json(Fields{group.at("options"), group.where}));
    const json& params = group.array("params");
    std::vector<optim::OptimizerParamState> states;
    for (size_t p = 0; p < params.size(); ++p) {
      const Fields param{params[p], group.where + " parameter " + std::to_string(p)};
      const json& step = param.at("step");
      TANDEM_CHECK(step.is_number_integer(), param.where, ": 'step' must be an integer, got ",
                   step.dump());
      optim::OptimizerParamState st;
      st.step = step.get<int64_t>();
      for (const json& b : param.array("buffers")) {
        TANDEM_CHECK(b.is_string(), param.where, ": buffer names must be strings, got ", b.dump());
        const std::string name = tensor_name(prefix, g, p, b.get<std::string>());
        const auto t = file.tensors.find(name);
        TANDEM_CHECK(t != file.tensors.end(), param.where, ": the tensor '", name, "' is missing");
        st.buffers[b.get<std::string>()] = t->second;
        used.insert(name);
      }
      states.push_back(std::move(st));
    }
    state.param_state.push_back(std::move(states));
  }
  for (const auto& kv : file.tensors) {
    TANDEM_CHECK(!starts_with(kv.first, prefix) || used.count(kv.first), where, ": the tensor '",
                 kv.first, "' belongs to no parameter's state");
  }
  return state;
}

void flatten_scheduler_state(const optim::LRSchedulerState& state, Metadata& metadata,
                             const std::string& key) {
  for (double lr : state.base_lrs) finite(lr, "base_lrs");
  const json j = {{"last_epoch", state.last_epoch}, {"base_lrs", state.base_lrs}};
  metadata[key] = j.dump();
}

optim::LRSchedulerState unflatten_scheduler_state(const Metadata& metadata,
                                                  const std::string& key) {
  const std::string where = "unflatten_scheduler_state: metadata '" + key + "'";
  const auto it = metadata.find(key);
  TANDEM_CHECK(it != metadata.end(), "unflatten_scheduler_state: the file has no scheduler ",
               "state (no metadata '", key, "')");
  const json j = parse_metadata_json(it->second, 2, where);
  const Fields f{j, where};
  const json& epoch = f.at("last_epoch");
  TANDEM_CHECK(epoch.is_number_integer(), where, ": 'last_epoch' must be an integer, got ",
               epoch.dump());
  optim::LRSchedulerState state;
  state.last_epoch = epoch.get<int64_t>();
  for (const json& lr : f.array("base_lrs")) {
    TANDEM_CHECK(lr.is_number(), where, ": 'base_lrs' must hold numbers, got ", lr.dump());
    state.base_lrs.push_back(lr.get<double>());
  }
  return state;
}

// ---- Training checkpoints ----

void save_checkpoint(const std::string& path, const nn::Module& module,
                     const optim::Optimizer* optimizer, const optim::LRScheduler* scheduler,
                     const Metadata& metadata) {
  check_reserved(metadata, "save_checkpoint");
  TensorList tensors = module_tensors(module);
  Metadata meta = metadata;
  if (optimizer != nullptr) {
    for (const auto& kv : tensors) {
      TANDEM_CHECK(!starts_with(kv.first, kOptimizerPrefix), "save_checkpoint: the module's '",
                   kv.first, "' clashes with the names of the optimizer's state ('",
                   kOptimizerPrefix, "...')");
    }
    flatten_optimizer_state(optimizer->state_dict(), tensors, meta);
  }
  if (scheduler != nullptr) flatten_scheduler_state(scheduler->state_dict(), meta);
  save_safetensors(path, tensors, meta);
}

Metadata load_checkpoint(const std::string& path, nn::Module& module, optim::Optimizer* optimizer,
                         optim::LRScheduler* scheduler) {
  SafetensorsFile file = load_safetensors(path);
  const auto copies = plan_module_load(module, file, "load_checkpoint", path);
  optim::OptimizerState opt_state;
  if (optimizer != nullptr) opt_state = unflatten_optimizer_state(file);
  optim::LRSchedulerState sched_state;
  if (scheduler != nullptr) sched_state = unflatten_scheduler_state(file.metadata);
  // The optimizer and scheduler check before they change anything; if the
  // scheduler refuses its state, the optimizer gets its own back.
  if (optimizer != nullptr) {
    const optim::OptimizerState before = optimizer->state_dict();
    optimizer->load_state_dict(opt_state);
    if (scheduler != nullptr) {
      try {
        scheduler->load_state_dict(sched_state);
      } catch (...) {
        optimizer->load_state_dict(before);
        throw;
      }
    }
  } else if (scheduler != nullptr) {
    scheduler->load_state_dict(sched_state);
  }
  copy_into(copies);
  Metadata out = file.metadata;
  out.erase(std::string(kOptimizerPrefix) + "state");
  out.erase(kSchedulerKey);
  return out;
}

}  // namespace tandem
