// `tandem predict`: images (PNG/JPEG, decoded by the data pipeline's decoder)
// or folders of them through a trained model; the model, normalisation and
// flip TTA come from the run's config.json. One row per image: the predicted
// class, its probability and every class's probability, as CSV or JSON.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli.h"
#include "commands.h"

namespace cli {
namespace {

namespace fs = std::filesystem;

bool is_image_name(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

// The inputs, folders expanded (recursively, sorted) to their PNG/JPEG files.
std::vector<std::string> image_paths(const std::vector<std::string>& inputs) {
  std::vector<std::string> out;
  for (const std::string& in : inputs) {
    if (is_directory(in)) {
      std::vector<std::string> found;
      for (const auto& e : fs::recursive_directory_iterator(in)) {
        if (e.is_regular_file() && is_image_name(e.path())) found.push_back(e.path().string());
      }
      std::sort(found.begin(), found.end());
      if (found.empty()) throw UsageError(in + ": no .png, .jpg or .jpeg file in this folder");
      out.insert(out.end(), found.begin(), found.end());
    } else if (is_file(in)) {
      out.push_back(in);
    } else {
      throw UsageError(in + ": no such file or directory");
    }
  }
  return out;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

}  // namespace

int run_predict(const PredictArgs& args) {
  // The checkpoint and the config.json beside it.
  std::string dir, checkpoint;
  if (is_directory(args.from)) {
    dir = args.from;
    checkpoint =
        is_file(dir + "/best.safetensors") ? dir + "/best.safetensors" : dir + "/last.safetensors";
    if (!is_file(checkpoint)) {
      throw UsageError("--from " + args.from + ": no best.safetensors or last.safetensors in it");
    }
  } else if (is_file(args.from)) {
    checkpoint = args.from;
    const size_t slash = checkpoint.rfind('/');
    dir = slash == std::string::npos ? "." : checkpoint.substr(0, slash);
  } else {
    throw UsageError("--from " + args.from + ": no such run directory or checkpoint");
  }
  if (!is_file(dir + "/config.json")) {
    throw UsageError("--from " + args.from + ": " + dir +
                     "/config.json is missing (the model and its normalisation come from it)");
  }
  const json config = read_json_file(dir + "/config.json", dir + "/config.json");
  std::vector<double> mean, std;
  bool tta = false;
  std::string model_json;
  try {
    const json& st = config.at("settings");
    mean = st.at("mean").get<std::vector<double>>();
    std = st.at("std").get<std::vector<double>>();
    tta = st.value("tta_flip", false);
    model_json = config.at("model").dump();
  } catch (const json::exception& e) {
    throw UsageError(dir + "/config.json is not a tandem run configuration: " + e.what());
  }
  const std::vector<std::string> paths = image_paths(args.inputs);

  std::string why;
  const td::Device device = resolve_device(args.device, &why);
  td::nn::Sequential net = td::models::from_json(model_json);
  td::load(*net, checkpoint);
  if (const std::string bad = first_non_finite(*net); !bad.empty()) {
    throw std::runtime_error(checkpoint + " holds non-finite weights (NaN or infinity in '" + bad +
                             "'): the model it saved diverged; use another checkpoint");
  }
  net->to(device);
  net->eval();
  td::NoGradGuard no_grad;

  const std::vector<std::string>& classes = td::data::cifar10_classes();
  json rows = json::array();
  if (args.format == "csv") {
    std::cout << "path,class,probability";
    for (const std::string& c : classes) std::cout << ",p_" << c;
    std::cout << "\n";
  }
  const int64_t hw = 32 * 32;
  for (size_t start = 0; start < paths.size(); start += static_cast<size_t>(args.batch_size)) {
    const size_t end = std::min(paths.size(), start + static_cast<size_t>(args.batch_size));
    std::vector<float> pixels;
    pixels.reserve((end - start) * 3 * hw);
    for (size_t i = start; i < end; ++i) {
      const td::Tensor img = td::data::decode_image(paths[i]);  // uint8 [3, H, W]
      if (img.size(1) != 32 || img.size(2) != 32) {
        throw UsageError(paths[i] + " is " + std::to_string(img.size(2)) + "x" +
                         std::to_string(img.size(1)) +
                         " pixels; the model takes 32x32 images (resize it first)");
      }
      const std::vector<uint8_t> v = td::to_vector<uint8_t>(img.contiguous());
      for (int64_t c = 0; c < 3; ++c) {
        const double m = mean.size() == 3 ? mean[static_cast<size_t>(c)] : 0.0;
        const double sd = std.size() == 3 ? std[static_cast<size_t>(c)] : 1.0;
        for (int64_t k = 0; k < hw; ++k) {
          pixels.push_back(
              static_cast<float>((v[static_cast<size_t>(c * hw + k)] / 255.0 - m) / sd));
        }
      }
    }
    const int64_t n = static_cast<int64_t>(end - start);
    td::Tensor x = td::from_vector(pixels, {n, 3, 32, 32}).to(device);
    td::Tensor logits = (*net)(x);
    if (tta) {
      const td::Tensor idx =
          td::arange(31.0, -1.0, -1.0, td::TensorOptions(td::kInt64).device(device));
      logits = (logits + (*net)(td::index_select(x, 3, idx))) * 0.5;
    }
    const std::vector<float> probs =
        td::to_vector<float>(td::softmax(logits, 1).to(td::kFloat32).cpu().contiguous());
    const size_t k = static_cast<size_t>(logits.size(1));
    for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
      const float* p = &probs[i * k];
      const size_t best = static_cast<size_t>(std::max_element(p, p + k) - p);
      const std::string name = best < classes.size() ? classes[best] : std::to_string(best);
      if (args.format == "csv") {
        char buf[32];
        std::cout << csv_field(paths[start + i]) << "," << name;
        std::snprintf(buf, sizeof buf, ",%.6f", static_cast<double>(p[best]));
        std::cout << buf;
        for (size_t c = 0; c < k; ++c) {
          std::snprintf(buf, sizeof buf, ",%.6f", static_cast<double>(p[c]));
          std::cout << buf;
        }
        std::cout << "\n";
      } else {
        json all = json::object();
        for (size_t c = 0; c < k; ++c) {
          all[c < classes.size() ? classes[c] : std::to_string(c)] = static_cast<double>(p[c]);
        }
        rows.push_back({{"path", paths[start + i]},
                        {"class", name},
                        {"label", best},
                        {"probability", static_cast<double>(p[best])},
                        {"probabilities", all}});
      }
    }
  }
  if (args.format == "json") std::cout << rows.dump(2) << "\n";
  std::cerr << "predicted " << paths.size() << " image(s) with " << checkpoint << "\n";
  return kExitOk;
}

}  // namespace cli

namespace cli {

void add_predict(CLI::App& app) {
  auto a = std::make_shared<PredictArgs>();
  CLI::App* cmd = app.add_subcommand(
      "predict", "classify images (PNG/JPEG, 32x32) with a trained run or checkpoint");
  cmd->footer(R"(Examples:
  tandem predict --from runs/lenet cat.png ship.jpg       # best.safetensors (else last) of the run
  tandem predict --from runs/lenet/last.safetensors photos/ --format json
Prints one row per image: its path, the predicted class, its probability and
every class's probability (CSV with a header, or a JSON list).)");
  cmd->add_option("inputs", a->inputs, "images and folders of images (searched recursively)")
      ->required();
  cmd->add_option("--from", a->from,
                  "a run directory (its best.safetensors, else last) or a checkpoint next to "
                  "its config.json")
      ->required();
  cmd->add_option("--format", a->format, "csv or json")
      ->check(CLI::IsMember({"csv", "json"}))
      ->capture_default_str();
  add_device_option(cmd, &a->device, "auto, cpu or cuda");
  cmd->add_option("--batch-size", a->batch_size, "images per forward pass")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  add_threads_option(cmd, &a->threads);
  run_when_parsed(cmd, [a] { return run_predict(*a); });
}

}  // namespace cli
