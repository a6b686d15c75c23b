// omni shapes: the procedurally generated data set of the bundled demo model (src/omni/demo/).
#include <cstdio>
#include <memory>

#include "commands.h"
#include "omni/demo/shapes.h"

namespace omni::cli {

void add_shapes_command(CLI::App& app, Runner& run) {
  auto* cmd = app.add_subcommand("shapes", "write the shapes data set (train / held-out JSONL, eval questions, images)");
  auto o = std::make_shared<demo::ShapesOptions>();
  cmd->add_option("--output", o->output, "folder to write (created)")->required();
  cmd->add_option("--seed", o->seed, "random seed: the same seed writes the same files")->default_str("0");
  cmd->add_option("--size", o->size, "image side in pixels")->default_str("64");
  cmd->add_option("--train", o->train_scenes, "training scenes (3 + mc_questions + edits samples each)")->default_str("2000");
  cmd->add_option("--heldout", o->heldout_scenes, "held-out scenes (3 + mc_questions + edits samples and 1 eval question each)")
      ->default_str("200");
  cmd->add_option("--mc_questions", o->mc_questions, "multiple-choice samples per scene, of distinct kinds (1-5)")
      ->default_str("1");
  cmd->add_option("--mc_answer", o->mc_answer, "multiple-choice answers: letter (\"C\") or reply (the free-form answer, \"Green.\")")
      ->default_str("letter");
  cmd->add_option("--edits", o->edits, "edit samples per scene (1-4; a two-shape scene's take the shapes in turn)")->default_str("1");
  cmd->add_option("--edit_place", o->edit_place, "edits in ten that also name the shape's place (0-10)")->default_str("0");
  cmd->add_flag("--edit_plan", o->edit_plan,
               "answer each edit with a plan first: a think block with the edited scene's caption, then the picture");
  cmd->add_option("--two_shapes", o->two_shapes, "scenes in ten with two shapes (0-10)")->default_str("3");
  cmd->callback([&run, o] {
    run = [o]() -> int {
      const auto n = demo::write_shapes_dataset(*o);
      std::printf("%s: train.jsonl %lld samples, heldout.jsonl %lld, eval_mc.jsonl %lld questions\n", o->output.c_str(),
                  static_cast<long long>(n[0]), static_cast<long long>(n[1]), static_cast<long long>(n[2]));
      return 0;
    };
  });
}

}  // namespace omni::cli
