// Ready-made networks for CIFAR-10-shaped data ([N, 3, 32, 32] in, 10 logits
// out), their recommended training recipes, and JSON model files.
//
//   nn::Sequential net = models::make("lenet");
//   models::Recipe r = models::recipe("lenet");          // optimizer, lr, ...
//   nn::Sequential mine = models::load_json("net.json");  // a list of layers
//   std::string text = models::to_json(net);              // and back
//
// Presets:
//   mlp          Flatten, then Linear+ReLU(+Dropout) per hidden size, Linear to
//                the classes (the course's fully-connected nets).
//   lenet        the PyTorch CIFAR-10 tutorial CNN: conv 3->6 k5, ReLU, max-pool
//                2, conv 6->16 k5, ReLU, max-pool 2, flatten, 400->120->84->10.
//   resnet-fast  after Keller Jordan's airbench94 (itself from hlb-CIFAR10): a
//                2x2 patch-whitening conv (init_whitening; frozen weight, a
//                bias trained for the recipe's first epochs), GELU, three
//                conv groups (conv 3x3, max-pool 2, BN, GELU, conv 3x3, BN,
//                GELU) of widths 64/256/256, max-pool 3 (global on the 3x3
//                map), Flatten, Linear without bias, Scale(1/9); the convs
//                start as partial identities (init_dirac). Its recipe is
//                airbench94's (docs/models.md).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tandem/nn/conv.h"
#include "tandem/nn/modules.h"
#include "tandem/optim.h"
#include "tandem/optim/lookahead.h"
#include "tandem/optim/lr_scheduler.h"
#include "tandem/tensor.h"

namespace tandem {
namespace models {

// ---- Layers the presets need beyond nn ------------------------------------------------

// y = x * factor (airbench's output scaling of the logits).
class ScaleImpl : public nn::Module {
 public:
  explicit ScaleImpl(double factor);
  Tensor forward(const Tensor& input) override;
  void pretty_print(std::ostream& os) const override;
  double factor;
};
TANDEM_MODULE(Scale);

// A Conv2d from `in_channels` to 2 * in_channels * kernel^2 channels, kernel
// `kernel`, no padding, whose weight is frozen (requires_grad false) and meant
// to be set by init_whitening from training images. Until then it holds
// Conv2d's default random initialisation. With `bias`, the layer has a bias,
// initialised to 0 and trained (airbench trains it for the first epochs, then
// freezes it: set_whitening_bias_trainable).
class PatchWhiteningImpl : public nn::Conv2dImpl {
 public:
  PatchWhiteningImpl(int64_t in_channels = 3, int64_t kernel = 2, bool with_bias = false);
  void pretty_print(std::ostream& os) const override;
};
TANDEM_MODULE(PatchWhitening);

// ---- Whitening ----------------------------------------------------------------------

struct WhiteningOptions {
  // Added to each eigenvalue before 1/sqrt (airbench: 5e-4).
  double eps = 5e-4;
  // uint8 images are scaled to [0, 1] and normalised with these per-channel
  // values (CIFAR-10's training-set statistics by default), so that the
  // whitening sees what the network will see. Float images are used as given.
  std::vector<double> mean = {0.4914, 0.4822, 0.4465};
  std::vector<double> std = {0.2470, 0.2435, 0.2616};
};

// Sets the weight of `conv` (in C, out 2*C*kh*kw, groups 1, dilation 1) to
// whitening filters of the kh x kw patches of `images` ([N, C, H, W], uint8,
// float32 or float64, on the CPU): with Sigma the (uncentred) patch covariance
// and (lambda_k, v_k) its eigenpairs, largest first, filter k is
// v_k / sqrt(lambda_k + eps) and filter C*kh*kw + k its negative. Computed in
// float64 with tandem ops (an identity convolution extracts the patches, one
// GEMM accumulates Sigma) and a Jacobi eigensolver.
void init_whitening(nn::Conv2dImpl& conv, const Tensor& images, const WhiteningOptions& opts = {});
// Applies init_whitening to every PatchWhitening layer of `model`; returns how
// many there were.
int init_whitening(nn::Module& model, const Tensor& images, const WhiteningOptions& opts = {});

// Sets requires_grad of the bias of every PatchWhitening layer of `model`
// (airbench: trained in the first Recipe::whitening_bias_epochs epochs, then
// frozen; an optimizer skips a parameter that gets no gradient, so it stays
// in the optimizer's groups). Returns how many biases there were.
int set_whitening_bias_trainable(nn::Module& model, bool trainable);

// Eigen-decomposition of a symmetric n x n matrix (row-major, float64) by
// cyclic Jacobi rotations: eigenvalues in descending order and the matching
// unit eigenvectors as the rows of `vectors` (row-major n x n). Exposed for
// tests; throws when the matrix is not square or not symmetric.
void symmetric_eigen(const std::vector<double>& matrix, int64_t n, std::vector<double>& values,
                     std::vector<double>& vectors);

// ---- Presets ------------------------------------------------------------------------

struct MlpOptions {
  std::vector<int64_t> hidden = {200};  // one Linear+ReLU per entry
  double dropout = 0.0;                 // after each ReLU when > 0
  int64_t in_features = 3 * 32 * 32;
  int64_t num_classes = 10;
};

struct ResnetFastOptions {
  std::vector<int64_t> widths = {64, 256, 256};  // one conv group per entry
  int64_t whitening_kernel = 2;
  double scaling_factor = 1.0 / 9.0;
  // PyTorch's convention (new = (1 - m) old + m batch); airbench's 0.6 is ours 0.4.
  double batchnorm_momentum = 0.4;
  double batchnorm_eps = 1e-12;
  int64_t num_classes = 10;
  // airbench: the whitening conv has a bias (0 at first, trained for the
  // recipe's whitening_bias_epochs).
  bool whitening_bias = true;
  // airbench: the convs start as partial identities (init_dirac).
  bool dirac_init = true;
};

// What make() passes on to each preset (each reads only its own part).
struct ModelOptions {
  MlpOptions mlp;
  ResnetFastOptions resnet_fast;
  int64_t lenet_num_classes = 10;
};

nn::Sequential mlp(const MlpOptions& opts = {});
nn::Sequential lenet(int64_t num_classes = 10);
// The BatchNorm weights are frozen at 1 (requires_grad false; the biases
// train), as in airbench. BN statistics and parameters are float32 like the
// rest of the net (tandem has no half precision).
nn::Sequential resnet_fast(const ResnetFastOptions& opts = {});

// airbench's dirac initialisation: in every Conv2d of `model` with groups 1
// (PatchWhitening layers left out), the first min(in, out) filters become
// the identity (nn::init::dirac_), an implicit residual; the other filters
// keep their values. Returns how many convs it changed. resnet_fast() applies
// it (ResnetFastOptions::dirac_init); a model built from JSON gets it from
// the recipe (Recipe::dirac_init), since JSON carries no parameter values.
int init_dirac(nn::Module& model);

// "mlp", "lenet", "resnet-fast".
std::vector<std::string> preset_names();
// The preset `name`; an unknown name throws a tandem::Error listing the valid ones.
nn::Sequential make(const std::string& name, const ModelOptions& opts = {});

// ---- Recipes ------------------------------------------------------------------------

enum class Schedule {
  Constant,      // lr throughout
  WarmupLinear,  // lr * (start_factor -> 1 over warmup_fraction of the steps, then -> end_factor)
  Cosine,        // lr * (1 + cos(pi * step / total)) / 2: lr -> 0 (CosineAnnealingLR)
};

// The training recipe recommended for a preset: SGD (mean-reduced
// cross-entropy), a per-step schedule over epochs * steps_per_epoch steps, the
// training augmentations and the test-time augmentation. Inputs are scaled to
// [0, 1] and normalised with (mean, std) per channel.
struct Recipe {
  std::string optimizer = "sgd";
  double lr = 0.01;
  double momentum = 0.0;
  bool nesterov = false;
  double weight_decay = 0.0;  // L2, as PyTorch's SGD
  // lr multiplier for BatchNorm biases (their weight decay is divided by it,
  // so the decay per step stays that of the other parameters); see
  // split_parameters.
  double batchnorm_bias_lr_scale = 1.0;
  int64_t batch_size = 64;
  int64_t epochs = 10;
  Schedule schedule = Schedule::Constant;
  double warmup_fraction = 0.0;  // WarmupLinear: where the peak is, in [0, 1)
  double start_factor = 1.0;     // WarmupLinear: lr factor at step 0
  double end_factor = 1.0;       // WarmupLinear: lr factor at the last step
  // > 0: `lr` is tuned for this batch size and another batch size scales it
  // linearly (airbench fixes the lr per example; with the mean-reduced loss
  // the weight decay then needs no scaling).
  int64_t lr_batch_size = 0;
  bool drop_last = false;  // an epoch's last partial batch is left out (airbench's loader)
  double label_smoothing = 0.0;
  bool augment_flip = false;  // random horizontal flip
  // With augment_flip: the first epoch flips a random half, each later epoch
  // exactly the images the epoch before did not (airbench's alternating flip).
  bool augment_alternating_flip = false;
  // Random translation by up to this many pixels: a random crop of the image
  // padded by this much, reflect padding (airbench) or zeros.
  int64_t augment_translate = 0;
  bool translate_reflect = true;
  bool tta_flip = false;  // average the logits of the image and its mirror at test time
  // With tta_flip: also the views translated by one pixel up-left and
  // down-right (reflect padding), weighted as airbench's tta_level 2.
  bool tta_translate = false;
  // Lookahead (periodic weight averaging, optim::Lookahead) with these options.
  bool lookahead = false;
  optim::LookaheadOptions lookahead_options;
  bool dirac_init = false;  // init_dirac on a fresh model
  // > 0: the PatchWhitening biases train for this many epochs, then freeze.
  int64_t whitening_bias_epochs = 0;
  // Training images held out for validation by default: -1 a tenth, 0 none
  // (train on the whole training set).
  int64_t val_split = -1;
  std::vector<double> mean = {0.5, 0.5, 0.5};
  std::vector<double> std = {0.5, 0.5, 0.5};
  std::string notes;  // where the numbers come from
};

// The recipe of preset `name` (same names and error as make()).
Recipe recipe(const std::string& name);

// The lr factor of `recipe`'s schedule at `step` of `total_steps` (in [0, 1]
// of the base lr), for trainers that set the lr themselves.
double schedule_factor(const Recipe& recipe, int64_t step, int64_t total_steps);
// The recipe's lr at `batch_size`: recipe.lr, scaled by batch_size /
// lr_batch_size when that is set.
double lr_for_batch(const Recipe& recipe, int64_t batch_size);

// The trainable parameters (requires_grad) of `model`, split into the biases
// of BatchNorm layers and all others, for two optimizer groups.
struct ParameterSplit {
  std::vector<Tensor> batchnorm_biases;
  std::vector<Tensor> others;
};
ParameterSplit split_parameters(nn::Module& model);

// A recipe's SGD over `model` (as `tandem train` makes it): split_parameters'
// others with `options`, then, when batchnorm_bias_lr_scale != 1 and the
// model has any, the BatchNorm biases in a group of their own at lr x scale
// and weight decay / scale (airbench's: the decay per step stays the
// others'). At scale 1 the BatchNorm biases join the one group, last.
std::unique_ptr<optim::SGD> make_sgd(nn::Module& model, const optim::SGDOptions& options,
                                     double batchnorm_bias_lr_scale);

// Schedule::WarmupLinear over total_steps as an LRScheduler stepped once per
// step: the lr factor goes from start_factor at step 0 to 1 at step
// floor(warmup_fraction x total_steps), then to end_factor at total_steps,
// linearly (schedule_factor's values); without the warm-up when that peak
// falls on step 0 or total_steps.
std::unique_ptr<optim::PiecewiseLinearLR> make_warmup_linear(optim::Optimizer& optimizer,
                                                             int64_t total_steps,
                                                             double warmup_fraction,
                                                             double start_factor,
                                                             double end_factor);

// ---- JSON model files -----------------------------------------------------------------
//
// {"format": "tandem-model", "version": 1, "name": "lenet",
//  "layers": [{"type": "Conv2d", "in": 3, "out": 6, "kernel": 5}, {"type": "ReLU"}, ...]}
//
// "format", "version" (1) and "name" are optional. Layer types and fields
// (sizes are an integer or an [h, w] pair; defaults as the nn modules):
//   Conv2d            in, out, kernel; stride 1, padding 0, dilation 1, groups 1, bias true
//   BatchNorm1d/2d    features; eps 1e-5, momentum 0.1, affine true,
//                     track_running_stats true, train_weight true
//   ReLU, Tanh, Sigmoid
//   GELU              approximate "none" | "tanh"
//   MaxPool2d         kernel; stride (= kernel), padding 0
//   AvgPool2d         kernel; stride (= kernel), padding 0, count_include_pad true
//   AdaptiveAvgPool2d output
//   Linear            in, out; bias true
//   Dropout           p 0.5
//   Flatten           start_dim 1, end_dim -1
//   Scale             factor
//   PatchWhitening    in 3, kernel 2, bias false
//   Residual          layers (a non-empty list); shortcut (a list) optional
// A malformed file throws a tandem::Error naming the layer (its index path and
// type) and the field: unknown type, unknown or missing field, wrong JSON type,
// value out of range.

// from_json refuses a file whose lists and objects nest deeper than
// kMaxJsonNesting levels (before parsing it: a hostile file nested 10,000 deep
// would overflow the stack); a model is a few levels deep.
nn::Sequential from_json(const std::string& json_text);
nn::Sequential load_json(const std::string& path);
constexpr int64_t kMaxJsonNesting = 200;
// The deepest nesting of JSON arrays and objects in `text` (brackets inside
// strings do not count), scanning only until it passes `limit`; the text need
// not be valid JSON.
int64_t json_nesting(const std::string& text, int64_t limit);
// The model as JSON (2-space indented; fields at their default are left
// out). Throws for a layer type the format cannot express.
std::string to_json(const nn::Module& model, const std::string& name = "");
void save_json(const nn::Module& model, const std::string& path, const std::string& name = "");

}  // namespace models
}  // namespace tandem
