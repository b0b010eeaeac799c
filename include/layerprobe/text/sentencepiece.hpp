// SentencePiece, reached through layerprobe's bridge library (see
// src/sentencepiece_bridge/bridge.hpp for why it is isolated).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace layerprobe {

class SentencePieceModel {
 public:
  // Error naming the file when it is missing or not a SentencePiece model.
  explicit SentencePieceModel(const std::filesystem::path& model_path);
  ~SentencePieceModel();
  SentencePieceModel(const SentencePieceModel&) = delete;
  SentencePieceModel& operator=(const SentencePieceModel&) = delete;

  std::vector<std::string> encode(const std::string& text) const;  // pieces, no sampling
  int piece_to_id(const std::string& piece) const;                 // unknown -> unk_id()
  std::string id_to_piece(int id) const;                           // Error when out of range
  std::string decode(const std::vector<std::string>& pieces) const;
  int size() const;
  int unk_id() const;

 private:
  void* processor_ = nullptr;
};

// Trains a SentencePiece model with trainer flags such as
// "--input=a.txt --model_prefix=out/spiece --vocab_size=8000".
void train_sentencepiece(const std::string& trainer_args);

}  // namespace layerprobe
