#include "bridge.hpp"

#include <string>
#include <string_view>
#include <vector>

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

using sentencepiece::SentencePieceProcessor;

namespace {
SentencePieceProcessor* as_processor(void* p) { return static_cast<SentencePieceProcessor*>(p); }

void put(lp_spm_sink sink, const std::string& text) { sink.append(sink.target, text.data(), text.size()); }

// SentencePiece 0.1 returns its own util::Status, 0.2 absl::Status (ToString() is
// std::string in both).
template <typename Status>
int report(const Status& status, lp_spm_sink error) {
  if (status.ok()) return 0;
  put(error, std::string(status.ToString()));
  return 1;
}
}  // namespace

extern "C" {

void* lp_spm_load(const char* model_path, lp_spm_sink error) {
  auto* processor = new SentencePieceProcessor();
  if (report(processor->Load(model_path), error) == 0) return processor;
  delete processor;
  return nullptr;
}

void lp_spm_free(void* processor) { delete as_processor(processor); }

int lp_spm_encode(void* processor, const char* text, size_t size, lp_spm_sink pieces, lp_spm_sink error) {
  std::vector<std::string> encoded;
  if (report(as_processor(processor)->Encode(std::string_view(text, size), &encoded), error) != 0) return 1;
  for (const auto& piece : encoded) put(pieces, piece);
  return 0;
}

int lp_spm_piece_to_id(void* processor, const char* piece, size_t size) {
  return as_processor(processor)->PieceToId(std::string_view(piece, size));
}

int lp_spm_id_to_piece(void* processor, int id, lp_spm_sink piece) {
  if (id < 0 || id >= as_processor(processor)->GetPieceSize()) return 1;
  put(piece, as_processor(processor)->IdToPiece(id));
  return 0;
}

int lp_spm_size(void* processor) { return as_processor(processor)->GetPieceSize(); }

int lp_spm_unk_id(void* processor) { return as_processor(processor)->unk_id(); }

int lp_spm_decode_pieces(void* processor, const char* const* pieces, const size_t* sizes, size_t count,
                         lp_spm_sink text, lp_spm_sink error) {
  std::vector<std::string> input;
  input.reserve(count);
  for (size_t i = 0; i < count; ++i) input.emplace_back(pieces[i], sizes[i]);
  std::string decoded;
  if (report(as_processor(processor)->Decode(input, &decoded), error) != 0) return 1;
  put(text, decoded);
  return 0;
}

int lp_spm_train(const char* trainer_args, lp_spm_sink error) {
  return report(sentencepiece::SentencePieceTrainer::Train(trainer_args), error);
}

}  // extern "C"
