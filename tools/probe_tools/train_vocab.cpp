// probe_tools train-vocab: an ALBERT-style SentencePiece vocabulary for SQuAD files.
#include <filesystem>
#include <memory>
#include <vector>

#include "../tool_main.hpp"
#include "commands.hpp"
#include "layerprobe/synth/synth.hpp"

namespace layerprobe::tools {

void add_train_vocab_command(CLI::App& app) {
  auto* command = app.add_subcommand(
      "train-vocab",
      "Train a SentencePiece unigram vocabulary (ALBERT's special pieces: <pad>=0 <unk>=1 [CLS]=2 [SEP]=3 "
      "[MASK]=4) on the questions and contexts of SQuAD files");
  struct Args {
    std::vector<std::filesystem::path> inputs;
    int vocab_size = 2000;
    std::filesystem::path output;
  };
  auto args = std::make_shared<Args>();
  command->add_option("--input", args->inputs, "SQuAD 2.0 JSON files to learn from")->required()->expected(1, -1);
  command->add_option("--vocab-size", args->vocab_size, "Most pieces (a small corpus yields fewer)")
      ->check(integer_in(16, 1 << 20))
      ->capture_default_str();
  command->add_option("--output", args->output, "Model file to write, e.g. models/demo/spiece.model")->required();
  command->callback([args] { train_squad_vocabulary(args->inputs, args->vocab_size, args->output); });
}

}  // namespace layerprobe::tools
