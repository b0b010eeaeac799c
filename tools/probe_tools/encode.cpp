// probe_tools encode: run the encoder over token ids from a safetensors file
// and write every hidden state and the QA logits (feature extraction, and
// the way the encoder is checked against transformers' outputs).
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../tool_main.hpp"
#include "commands.hpp"
#include "layerprobe/model/checkpoint.hpp"
#include "layerprobe/core/common.hpp"
#include "layerprobe/core/device.hpp"
#include "layerprobe/core/precision.hpp"
#include "layerprobe/squad/encode_loop.hpp"
#include "layerprobe/io/safetensors.hpp"

namespace layerprobe::tools {

namespace {

struct EncodeArgs {
  std::string model_dir, inputs, output, weights, device = "cpu", precision = "fp32";
  int64_t batch_size = 16;
  int threads = 0;
};

torch::Tensor required_input(const SafetensorsFile& file, const std::string& name, const std::string& source) {
  auto it = file.tensors.find(name);
  if (it == file.tensors.end()) throw Error(source + ": tensor '" + name + "' is missing");
  return it->second;
}

void run_encode(const EncodeArgs& args) {
  configure_threads(args.threads);
  const torch::Device device = parse_device(args.device);
  check_precision(args.precision, device);
  if (args.batch_size <= 0) throw Error("--batch-size must be positive", 2);
  const SafetensorsFile inputs = read_safetensors(args.inputs);
  torch::Tensor input_ids = required_input(inputs, "input_ids", args.inputs);
  // Optional: families such as DistilBERT take none (a missing one embeds type 0).
  auto types = inputs.tensors.find("token_type_ids");
  torch::Tensor token_type_ids = types == inputs.tensors.end() ? torch::Tensor() : types->second;
  torch::Tensor attention_mask = required_input(inputs, "attention_mask", args.inputs);

  std::optional<std::filesystem::path> weights;
  if (!args.weights.empty()) weights = args.weights;
  LoadedModel loaded = load_checkpoint(args.model_dir, weights, {weights_dtype_for(args.precision, device), args.precision});
  validate_encoder_inputs(loaded.config, EncoderBatch{input_ids, token_type_ids, attention_mask});
  if (!loaded.has_qa_head) spdlog::warn("{} has no QA head: start/end logits come from a random head", args.model_dir);
  loaded.model->to(device);
  loaded.model->eval();

  torch::InferenceMode inference;
  std::vector<torch::Tensor> hidden_chunks, start_chunks, end_chunks;
  const int64_t rows = input_ids.size(0);
  for (int64_t begin = 0; begin < rows; begin += args.batch_size) {
    throw_if_stop_requested("Nothing was written; rerun the same command.");
    const int64_t end = std::min(rows, begin + args.batch_size);
    auto slice = [&](const torch::Tensor& t) {
      return t.defined() ? t.slice(0, begin, end).to(device, torch::kLong) : torch::Tensor();
    };
    EncoderOutput out = encode_frozen(*loaded.model, EncoderBatch{slice(input_ids), slice(token_type_ids), slice(attention_mask)},
                                      args.precision, true);
    hidden_chunks.push_back(torch::stack(out.hidden_states).to(torch::kCPU));
    start_chunks.push_back(out.start_logits.to(torch::kCPU));
    end_chunks.push_back(out.end_logits.to(torch::kCPU));
  }
  std::map<std::string, torch::Tensor> outputs;
  if (rows == 0) {
    const int64_t length = input_ids.size(1), layers = loaded.config.num_hidden_layers + 1;
    outputs["hidden_states"] = torch::zeros({layers, 0, length, loaded.config.hidden_size});
    outputs["start_logits"] = outputs["end_logits"] = torch::zeros({0, length});
  } else {
    outputs["hidden_states"] = torch::cat(hidden_chunks, 1);
    outputs["start_logits"] = torch::cat(start_chunks, 0);
    outputs["end_logits"] = torch::cat(end_chunks, 0);
  }
  write_safetensors(args.output, outputs,
                    {{"producer", "layerprobe encode"}, {"model", args.model_dir},
                     {"weights", loaded.weights_path.string()}});
  spdlog::info("encoded {} rows of {} tokens with {} -> {}", rows, input_ids.size(1),
               loaded.weights_path.string(), args.output);
}

}  // namespace

void add_encode_command(CLI::App& app) {
  auto* command = app.add_subcommand(
      "encode",
      "Run a model's encoder (eval mode, any family) over input_ids, attention_mask and optionally "
      "token_type_ids ([B,T] I64 in a safetensors file) and write hidden_states [layers+1,B,T,hidden], start_logits and end_logits [B,T] (F32)");
  auto args = std::make_shared<EncodeArgs>();
  command->add_option("--model", args->model_dir, "Model directory (config.json + weights, Hugging Face layout)")
      ->required();
  command->add_option("--inputs", args->inputs, "Input safetensors file")->required();
  command->add_option("--output", args->output, "Output safetensors file")->required();
  command->add_option("--weights", args->weights,
                      "Weights file to use instead of model.safetensors / pytorch_model.bin (as given, or "
                      "relative to --model)");
  command->add_option("--device", args->device, "cpu or gpu")->capture_default_str();
  command->add_option("--batch-size", args->batch_size, "Rows per forward pass")
      ->check(integer_in(1, kMostBatch))
      ->capture_default_str();
  command->add_option("--precision", args->precision,
                      kEncoderPrecisionHelp)
      ->check(CLI::IsMember({"fp32", "bf16", "fp16", "int8"}))
      ->capture_default_str();
  add_threads_option(*command, args->threads);
  command->callback([args] { run_encode(*args); });
}

}  // namespace layerprobe::tools
