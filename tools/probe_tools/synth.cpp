// probe_tools synth: the first-run demo's synthetic SQuAD 2.0 dataset.
#include <memory>
#include <string>

#include "../tool_main.hpp"
#include "commands.hpp"
#include "layerprobe/synth/synth.hpp"

namespace layerprobe::tools {

void add_synth_command(CLI::App& app) {
  auto* command = app.add_subcommand(
      "synth",
      "Write a synthetic SQuAD 2.0 dataset (DIR/train-v2.0.json, DIR/dev-v2.0.json): paragraphs of templated "
      "facts about invented people, answerable span questions and about as many unanswerable ones");
  struct Args {
    std::string output_dir;
    SynthOptions options;
  };
  auto args = std::make_shared<Args>();
  auto& o = args->options;
  command->add_option("--output-dir", args->output_dir, "Directory for train-v2.0.json and dev-v2.0.json")
      ->required();
  command->add_option("--train-questions", o.train_questions, "Questions in the train split")
      ->check(integer_in(1, 10'000'000))
      ->capture_default_str();
  command->add_option("--dev-questions", o.dev_questions, "Questions in the dev split")
      ->check(integer_in(1, 10'000'000))
      ->capture_default_str();
  command->add_option("--seed", o.seed, "Random seed (the output is a function of the options)")
      ->capture_default_str();
  command->add_option("--people-per-paragraph", o.people_per_paragraph, "People each paragraph describes (1-8)")
      ->capture_default_str();
  command->add_option("--questions-per-paragraph", o.questions_per_paragraph, "Questions asked about each paragraph")
      ->check(integer_in(1, 100000))
      ->capture_default_str();
  command->add_option("--paragraphs-per-article", o.paragraphs_per_article, "Paragraphs grouped under one title")
      ->check(integer_in(1, 100000))
      ->capture_default_str();
  command->add_option("--unanswerable-fraction", o.unanswerable_fraction,
                      "Chance that a question is unanswerable")
      ->capture_default_str();
  command->add_option("--fact-probability", o.fact_probability,
                      "Chance that each of a person's four facts is stated")
      ->capture_default_str();
  command->add_option("--absent-person-share", o.absent_person_share,
                      "Share of unanswerable questions about a person the paragraph does not mention (the rest ask "
                      "for an unstated fact)")
      ->capture_default_str();
  command->callback([args] { write_synthetic_squad(args->output_dir, args->options); });
}

}  // namespace layerprobe::tools
