// What the `tandem` subcommands share: device choice, data sources (CIFAR-10,
// synthetic sets), models (presets and JSON files), small file and format
// helpers, host facts for benchmark reports.
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

#include "cli.h"

namespace cli {

bool cuda_usable(std::string* reason) {
  const td::BuildInfo info = td::build_info();
  if (!info.cuda_built) {
    if (reason != nullptr)
      *reason = "this tandem was built without the CUDA backend (TANDEM_CUDA=OFF or no toolkit)";
    return false;
  }
  if (!info.cuda_usable) {
    if (reason != nullptr) *reason = info.cuda_unusable_reason;
    return false;
  }
  return true;
}

td::Device resolve_device(const std::string& name, std::string* why) {
  std::string reason;
  if (name == "cpu") {
    if (why != nullptr) *why = "the CPU (--device cpu)";
    return td::Device(td::kCPU);
  }
  if (name == "cuda") {
    if (!cuda_usable(&reason)) {
      throw UsageError("--device cuda: the CUDA backend cannot run here: " + reason +
                       " (use --device cpu or auto; `tandem info` says more)");
    }
    if (why != nullptr) *why = "the GPU (--device cuda): " + td::cuda::device_name(0);
    return td::Device(td::kCUDA, 0);
  }
  if (name != "auto") throw UsageError("--device must be auto, cpu or cuda, got '" + name + "'");
  if (cuda_usable(&reason)) {
    if (why != nullptr) *why = "the GPU " + td::cuda::device_name(0) + " (--device auto)";
    return td::Device(td::kCUDA, 0);
  }
  if (why != nullptr) *why = "the CPU (--device auto; no usable GPU: " + reason + ")";
  return td::Device(td::kCPU);
}

// ---- Data ------------------------------------------------------------------------------

namespace {

// A directory name for a data source: its canonical path, size and time.
std::string source_key(const std::string& path) {
  std::error_code ec;
  std::string key = std::filesystem::weakly_canonical(path, ec).string();
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    key += ":" + std::to_string(st.st_size) + ":" + std::to_string(st.st_mtime);
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx",
                static_cast<unsigned long long>(std::hash<std::string>{}(key)));
  return hex;
}

}  // namespace

td::data::Cifar10 synthetic_cifar(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed ^ 0x5eed5eedULL);
  auto make = [&](int64_t count) {
    td::data::ImageDataset ds;
    ds.images = td::empty({count, 3, 32, 32}, td::dtype(td::kUInt8));
    ds.labels = td::empty({count}, td::dtype(td::kInt64));
    ds.classes = td::data::cifar10_classes();
    uint8_t* px = ds.images.data_ptr<uint8_t>();
    int64_t* lab = ds.labels.data_ptr<int64_t>();
    std::uniform_int_distribution<int> label_dist(0, 9), noise(0, 99);
    for (int64_t i = 0; i < count; ++i) {
      const int label = label_dist(rng);
      lab[i] = label;
      for (int c = 0; c < 3; ++c) {
        // A colour per class (labels spread over the channels) plus noise.
        const int base = ((label * (c + 3) * 37) % 156);
        for (int p = 0; p < 32 * 32; ++p) {
          px[(i * 3 + c) * 1024 + p] = static_cast<uint8_t>(base + noise(rng));
        }
      }
    }
    return ds;
  };
  td::data::Cifar10 out;
  out.train = make(n);
  out.test = make(std::max<int64_t>(10, n / 4));
  return out;
}

td::data::Cifar10 load_data(const DataArgs& args) {
  if (args.synthetic > 0) {
    if (!args.data.empty()) throw UsageError("--synthetic and --data exclude each other");
    std::cerr << "data: " << args.synthetic << " synthetic CIFAR-shaped training images (seed "
              << args.seed << ")\n";
    return synthetic_cifar(args.synthetic, args.seed);
  }
  if (!args.data.empty() && is_directory(args.data) &&
      is_file(args.data + "/" + td::data::cifar10_test_file())) {
    std::cerr << "data: CIFAR-10 binary files in " << args.data << "\n";
    return td::data::read_cifar10(args.data);
  }
  if (!args.data.empty() && !is_directory(args.data) && !is_file(args.data)) {
    throw UsageError("--data " + args.data +
                     ": no such file or directory (give a CIFAR-10 binary directory, the "
                     "official tarball, or an image tree / archive; or leave --data out to use "
                     "the cache, TANDEM_CIFAR10 or a download)");
  }
  td::data::Cifar10Options opt;
  opt.source = args.data;
  if (!args.data.empty()) {
    // A --data source is always read: into the default cache while that is
    // empty, else into a cache of its own (keyed by its path, size and time),
    // never silently replaced by a cache that holds other data.
    const std::string cache = td::data::default_cifar10_cache_dir();
    if (is_file(cache + "/cifar-10-batches-bin/" + td::data::cifar10_meta_file())) {
      opt.cache_dir = cache + "/sources/" + source_key(args.data);
    }
  }
  std::string dir;
  td::data::Cifar10 data;
  try {
    dir = td::data::prepare_cifar10(opt);
    data = td::data::read_cifar10(dir);
  } catch (const td::Error& e) {
    if (args.data.empty()) {
      throw std::runtime_error(with_flag_names(e.message(), "--data", ""));
    }
    throw std::runtime_error("--data " + args.data + " cannot be read as CIFAR-10: " +
                             with_flag_names(e.message(), "--data", ""));
  }
  std::cerr << "data: CIFAR-10 from " << dir
            << (args.data.empty() ? "" : " (imported from " + args.data + ")") << "\n";
  return data;
}

std::string with_flag_names(std::string message, const std::string& source,
                            const std::string& cache) {
  const std::vector<std::pair<std::string, std::string>> words = {
      {"Cifar10Options::source and TANDEM_CIFAR10 are empty",
       "neither " + source + " nor TANDEM_CIFAR10 names one"},
      {"Cifar10Options::download = false", "--no-download"},
      {"Cifar10Options::cache_dir or ", cache.empty() ? "" : cache + " or "},
      {"Cifar10Options::cache_dir", cache.empty() ? "TANDEM_DATA_DIR" : cache},
      {"Cifar10Options::source", source}};
  for (const auto& [from, to] : words) {
    for (size_t at = message.find(from); at != std::string::npos;
         at = message.find(from, at + to.size())) {
      message.replace(at, from.size(), to);
    }
  }
  return message;
}

json describe_data(const DataArgs& args) {
  if (args.synthetic > 0)
    return {{"kind", "synthetic"}, {"images", args.synthetic}, {"seed", args.seed}};
  return {{"kind", "cifar10"}, {"source", args.data}};
}

// ---- Models ------------------------------------------------------------------------------

namespace {

// The parameters a JSON model's layers would hold (weights and biases of
// Linear and Conv2d, BatchNorm's affine pair), from the file alone.
double estimate_parameters(const json& j) {
  double n = 0;
  if (j.is_array()) {
    for (const json& e : j) n += estimate_parameters(e);
    return n;
  }
  if (!j.is_object()) return 0;
  auto field = [&j](const char* key, double fallback) {
    return j.contains(key) && j.at(key).is_number() ? j.at(key).get<double>() : fallback;
  };
  const bool bias = !(j.contains("bias") && j.at("bias").is_boolean() && !j.at("bias").get<bool>());
  const std::string type =
      j.contains("type") && j.at("type").is_string() ? j.at("type").get<std::string>() : "";
  if (type == "Linear") n += field("in", 0) * field("out", 0) + (bias ? field("out", 0) : 0);
  if (type == "Conv2d") {
    double area = field("kernel", 1) * field("kernel", 1);
    if (j.contains("kernel") && j.at("kernel").is_array()) {
      area = 1;
      for (const json& k : j.at("kernel")) area *= k.is_number() ? k.get<double>() : 1;
    }
    n += field("in", 0) * field("out", 0) * area / std::max(field("groups", 1), 1.0) +
         (bias ? field("out", 0) : 0);
  }
  if (type.rfind("BatchNorm", 0) == 0) n += 2 * field("features", 0);
  for (const char* key : {"layers", "shortcut"}) {
    if (j.contains(key)) n += estimate_parameters(j.at(key));
  }
  return n;
}

// 1.2e12 -> "1,200,000,000,000" (up to 1e15), else "1.2e+18".
std::string num_words(double v) {
  if (!(v < 1e15)) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g", v);
    return buf;
  }
  std::string digits = std::to_string(static_cast<long long>(v));
  for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3)
    digits.insert(static_cast<size_t>(i), ",");
  return digits;
}

}  // namespace

td::nn::Sequential make_model(const std::string& name_or_file, ModelSpec* spec) {
  const std::vector<std::string> presets = td::models::preset_names();
  ModelSpec s;
  s.name = name_or_file;
  td::nn::Sequential net = nullptr;
  if (std::find(presets.begin(), presets.end(), name_or_file) != presets.end()) {
    s.preset = true;
    net = td::models::make(name_or_file);
  } else if (is_file(name_or_file)) {
    try {
      net = td::models::load_json(name_or_file);
    } catch (const td::Error& e) {
      if (e.message().find("out of memory") != std::string::npos) {
        const double params = estimate_parameters(json::parse(read_text_file(name_or_file)));
        throw UsageError("--model " + name_or_file + ": the model is too large for this machine: " +
                         num_words(params) + " parameters, " + format_bytes(params * 4) +
                         " of float32 weights, more memory than this machine has");
      }
      throw UsageError("--model " + name_or_file + ": not a valid JSON model file: " + e.message());
    }
  } else {
    std::string list;
    for (const auto& p : presets) list += (list.empty() ? "" : ", ") + p;
    const bool looks_like_file = name_or_file.find('/') != std::string::npos ||
                                 name_or_file.find(".json") != std::string::npos;
    throw UsageError("--model '" + name_or_file +
                     "': " + (looks_like_file ? std::string("no such file") : "unknown model") +
                     "; give a preset (auto, " + list + ") or a JSON model file");
  }
  s.json_text = td::models::to_json(*net, s.preset ? s.name : "");
  if (spec != nullptr) *spec = s;
  return net;
}

td::models::Recipe recipe_for(const ModelSpec& spec) {
  if (spec.preset) return td::models::recipe(spec.name);
  // A JSON model file trains with the mlp preset's plain recipe.
  td::models::Recipe r = td::models::recipe("mlp");
  r.notes = "the generic recipe for a JSON model file: SGD momentum 0.9, lr 0.01, batch 64";
  return r;
}

int64_t count_parameters(td::nn::Module& model) {
  int64_t n = 0;
  for (const td::Tensor& p : model.parameters()) n += p.numel();
  return n;
}

// ---- Output helpers ---------------------------------------------------------------------

bool stdout_is_terminal() { return ::isatty(STDOUT_FILENO) == 1; }

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  char buf[64];
  if (seconds < 60) {
    std::snprintf(buf, sizeof buf, "%.1f s", seconds);
  } else {
    const auto s = static_cast<int64_t>(std::llround(seconds));
    if (s >= 3600) {
      std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                    static_cast<long long>((s / 60) % 60), static_cast<long long>(s % 60));
    } else {
      std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(s / 60),
                    static_cast<long long>(s % 60));
    }
  }
  return buf;
}

std::string format_bytes(double bytes) {
  char buf[64];
  if (bytes >= 1024.0 * 1024 * 1024) {
    std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / (1024.0 * 1024 * 1024));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024));
  }
  return buf;
}

void write_text_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw std::runtime_error("cannot write " + tmp + ": " + std::strerror(errno));
    f << text;
    if (!f.flush()) throw std::runtime_error("cannot write " + tmp + ": " + std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw std::runtime_error("cannot rename " + tmp + " to " + path + ": " + std::strerror(errno));
  }
}

std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

json read_json_file(const std::string& path, const std::string& what) {
  const std::string text = read_text_file(path);
  // The config's own object, then its "model" (up to the model JSON's limit).
  const int64_t limit = td::models::kMaxJsonNesting + 1;
  if (td::models::json_nesting(text, limit) > limit) {
    throw UsageError(what + ": lists and objects nest deeper than " + std::to_string(limit) +
                     " levels; a tandem config.json is a few levels deep");
  }
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) throw UsageError(what + " is not valid JSON");
  return j;
}

// The name of a parameter or buffer holding NaN or infinity, or "".
std::string first_non_finite(const td::nn::Module& model) {
  td::NoGradGuard no_grad;
  td::nn::StateDict all = model.named_parameters();
  for (auto& b : model.named_buffers()) all.push_back(b);
  for (const auto& [name, t] : all) {
    if (!td::is_floating(t.dtype())) continue;
    if (!std::isfinite(td::sum(t.detach()).item<double>())) return name;
  }
  return "";
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

void make_directories(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec)
    throw std::runtime_error("cannot create the directory " + path + " (" + ec.message() + ")");
  if (!is_directory(path)) throw std::runtime_error(path + " exists and is not a directory");
}

json host_info() {
  char host[256] = {0};
  if (::gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "unknown");
  std::string cpu = "unknown";
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) cpu = line.substr(line.find_first_not_of(" \t", colon + 1));
      break;
    }
  }
  const td::BuildInfo info = td::build_info();
  json gpus = json::array();
  for (const td::GpuInfo& g : info.gpus) gpus.push_back(g.name);
  return {
      {"hostname", host},
      {"cpu_model", cpu},
      {"cpu_threads", info.cpu_threads},
      {"hardware_threads", std::thread::hardware_concurrency()},
      {"blas", info.blas_config},
      {"onednn", info.onednn},
      {"gpus", gpus},
      {"gpu_name", info.gpus.empty() ? json() : json(info.gpus[0].name)},
      {"cuda_usable", info.cuda_usable},
      {"cuda_driver", info.cuda_driver},
      {"cuda_runtime", info.cuda_runtime},
      {"omp_wait_policy",
       std::getenv("OMP_WAIT_POLICY") != nullptr ? json(std::getenv("OMP_WAIT_POLICY")) : json()},
      {"tandem_version", info.version},
      {"build_type", info.build_type}};
}

double peak_rss_bytes() {
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) * 1024.0;  // Linux: kilobytes
}

}  // namespace cli
