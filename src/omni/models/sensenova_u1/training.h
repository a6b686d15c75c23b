// SenseNova-U1's training sequence and loss (official training/sensenovavl: multimodal_dataset.py
// image_gen_prepare_conv and the labels, dataset_interleaved_iterable.py indexes,
// modeling_sensenovavl_chat_mot.py prepare_image_gen_targets, the flex mask and the losses; see
// docs/dev/u1_training_rules.md for the rules with file:line references).
//
// A conversation becomes one document:
//   [system turn] user / assistant turns in ChatML; an assistant turn opens with an empty think
//   block (unless its text starts with <think>); images are <img> + <IMG_CONTEXT> x N + </img>.
// Its task decides what each image is and what is supervised:
//   understanding (no assistant image): assistant text + <|im_end|> + "\n" are CE targets;
//   text-to-image / edit (one assistant image, the last content): that image is a generation
//     target; everything from its <img> on is unsupervised; every image of the sample is resized
//     within 256^2..512^2 pixels (understanding: 256^2..2048^2);
//   interleave (other assistant images): each assistant image is a noisy generation copy followed
//     by a clean understanding copy with the same t indexes, the copy's <img> and the generation
//     copy's </img> hidden from every query; the generation copy's <img> is a CE target. The last
//     image stays single when the last turn ends with it, unless image roles say "gen+und" (the
//     official code copies it 20% of the time: draw_sample_variant).
// Generation targets are noised in pixel space: x in [-1, 1], noise ~ N(0, 1) * sqrt(L / base) *
// noise_scale (no clamp), t = sigmoid(N(P_mean, P_std)) through the config's shift, z = t x + (1 - t)
// noise; the loss is the per-token mean squared velocity error, weighted 1/sqrt(L) per image; the
// text CE is weighted 1/sqrt(N) per document (the model interface's ce_norm / gen_norm).
#pragma once
#include <torch/torch.h>

#include <functional>
#include <optional>
#include <vector>

#include "omni/models/model.h"
#include "omni/nn/attention.h"
#include "omni/models/sensenova_u1/model.h"
#include "omni/models/sensenova_u1/processor.h"

namespace omni::sensenova_u1 {

enum class TrainTask { Understanding = 0, TextToImage = 3, Edit = 4, Interleave = 5 };

struct TrainImage {
  NativeImage native;
  bool gen = false;  // a noisy generation copy (else an understanding image or a clean copy)
  int64_t first_token = 0, tokens = 0;  // its <IMG_CONTEXT> rows in the sequence
};

struct TrainSequence {
  TrainTask task = TrainTask::Understanding;
  std::vector<int64_t> ids, labels;  // labels unshifted, -100 = not supervised
  std::vector<int64_t> t, h, w;   // t restarts at 0 in every document
  std::vector<int64_t> doc;       // document (sample) of each row
  std::vector<int64_t> image_of;  // 1-based image run of each <IMG_CONTEXT> row, 0 elsewhere
  std::vector<uint8_t> hidden;    // keys no query sees (a duplicated pair's inner boundary)
  std::vector<TrainImage> images;  // in sequence order
  int64_t ce_tokens() const;      // positions whose next token is supervised
  int64_t gen_tokens() const;     // rows of generation images
  double ce_norm() const;         // sum over documents of sqrt(N_d) (the CE weight is 1 / sqrt(N_d) per token)
  double gen_norm() const;        // sum over generation images of sqrt(L)
  torch::Tensor indexes() const;  // int64 [3, T]
};

// What a conversation trains: one assistant image ending it = text-to-image (no user image) or
// edit; other assistant images = interleave; none = understanding.
TrainTask task_of(const models::TrainExample& ex);

// The official CFG condition dropout (training/sensenovavl/data/multimodal_dataset.py
// image_gen_prepare_conv, with cfg_is_uncond_drop_independent false as in the 8B SFT). With
// probability txt + img + txtimg a generation sample becomes its unconditional variant, one case
// picked by the three weights (understanding samples are never dropped; interleave knows no img):
//   txt    text-to-image: empty prompt, the assistant turn only its image (a plan is dropped);
//          edit: the first user turn only the input images, the assistant turn only the target;
//          interleave: every turn only its images;
//   img    edit: the input images removed from the text ("<image>\n" with its newline), target kept;
//   txtimg text-to-image / edit: empty prompt and only the target; interleave: one assistant image
//          drawn uniformly, as [user "", assistant <image>].
// A dropped variant has no system turn (unless the data brings its own; interleave drops that
// too), and every variant but img is marked condition_dropped (no empty think block; interleave:
// no text target). `uniform` draws in [0, 1): the first decides, the second picks the case, the
// third the interleave image. Returns nothing when the sample is kept.
struct CondDropout {
  double txt = 0.1, img = 0.0, txtimg = 0.1;
};
std::optional<models::TrainExample> draw_condition_dropout(const models::TrainExample& ex, const CondDropout& p,
                                                           const std::function<double()>& uniform);

// Every random per-sample rule of the official data code, in its order: the condition dropout,
// then, for an interleaved sample that was not text-dropped and whose last turn ends with an image,
// that image's clean copy with probability kFinalImageCopyProb (the official
// `random.random() > 0.2` keeps it single). The copy is recorded as image roles ("gen+und").
// Samples whose data sets image_roles draw no copy. Nothing when the sample is kept as it is.
constexpr double kFinalImageCopyProb = 0.2;
std::optional<models::TrainExample> draw_sample_variant(const models::TrainExample& ex, const CondDropout& p,
                                                        const std::function<double()>& uniform);

// The official sequence of a conversation (throws omni::Error for one U1 cannot train on). Image
// roles, when the data gives them (one per image, in marker order): "und" for a user image, "gen"
// for an assistant image, or "gen+und" for an interleaved answer's image followed by its clean
// copy; without them every assistant image but an answer's final one gets its copy.
TrainSequence build_train_sequence(const models::TrainExample& ex, const U1Config& cfg, const text::Tokenizer& tok,
                                   const SpecialIds& ids);

// Samples packed into one sequence as the official PackedDataset does: documents one after
// another (each with its own t from 0), image runs renumbered.
TrainSequence pack_sequences(std::vector<TrainSequence> docs);

// The official attention rule as an additive [T, T] mask (0 / -inf): query q sees key k iff both
// are in one document, (t_k <= t_q or both in one image), the key is not a generation row unless the query is one of
// the same image, a generation row does not see a clean row of its own t, and k is not hidden.
torch::Tensor train_attention_mask(const TrainSequence& s);

// The same rule as a packed layout for the decoder (memory linear in T, as the official flex
// attention): per document, runs of text are causal splits, an understanding image (or clean copy)
// a full split, a generation image a noise split (seen by no other split), and each hidden row a
// one-row noise split. Equal to train_attention_mask on every row except the hidden ones, whose
// outputs nothing reads (no key sees them and their next label is never a target).
nn::PackedLayout train_attention_layout(const TrainSequence& s);

// Random draws of the generation targets (per generation image, in order: noise [N16, 768] in the
// patch-row layout, then the scalar u ~ N(0, 1)); undefined entries are drawn from `gen`.
struct TrainDraws {
  std::vector<torch::Tensor> noise, u;
};

struct TrainOutputs {
  torch::Tensor ce;   // per CE position, times 1/sqrt(N)   [ce_tokens]
  torch::Tensor gen;  // per generation row, mean squared velocity error times 1/sqrt(L)   [gen_tokens]
  torch::Tensor ce_raw, gen_raw;  // the same without the weights
};

// The training forward with autograd (the official model forward for one document).
TrainOutputs forward_train(NeoChatImpl& m, const TrainSequence& s, at::Generator* gen, const TrainDraws* draws = nullptr);

}  // namespace omni::sensenova_u1
