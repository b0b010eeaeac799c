#include "bridge.hpp"

#include <dlfcn.h>

#include <new>
#include <iostream>

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

using sentencepiece::SentencePieceProcessor;

namespace {
SentencePieceProcessor* as_processor(void* p) { return static_cast<SentencePieceProcessor*>(p); }

// Loaded with RTLD_DEEPBIND, this library and libsentencepiece see libstdc++'s
// own std::cerr; when the executable holds a copy-relocated std::cerr (any
// that uses it directly), iostream initialisation constructs that copy and
// leaves libstdc++'s object raw, so the trainer's logging would crash. Build
// libstdc++'s object over the process's stderr buffer.
void construct_deep_bound_cerr() {
  static const bool done = [] {
    auto* process_cerr = static_cast<std::ostream*>(dlsym(dlopen(nullptr, RTLD_NOW), "_ZSt4cerr"));
    if (process_cerr && process_cerr != &std::cerr) {
      new (&std::cerr) std::ostream(process_cerr->rdbuf());
      std::cerr.flags(process_cerr->flags());
    }
    return true;
  }();
  (void)done;
}
}  // namespace

extern "C" {

void* lp_spm_load(const char* model_path, std::string* error) {
  construct_deep_bound_cerr();
  auto* processor = new SentencePieceProcessor();
  auto status = processor->Load(model_path);
  if (!status.ok()) {
    *error = status.ToString();
    delete processor;
    return nullptr;
  }
  return processor;
}

void lp_spm_free(void* processor) { delete as_processor(processor); }

int lp_spm_encode(void* processor, const std::string* text, std::vector<std::string>* pieces, std::string* error) {
  auto status = as_processor(processor)->Encode(*text, pieces);
  if (!status.ok()) *error = status.ToString();
  return status.ok() ? 0 : 1;
}

int lp_spm_piece_to_id(void* processor, const std::string* piece) { return as_processor(processor)->PieceToId(*piece); }

int lp_spm_id_to_piece(void* processor, int id, std::string* piece) {
  if (id < 0 || id >= as_processor(processor)->GetPieceSize()) return 1;
  *piece = as_processor(processor)->IdToPiece(id);
  return 0;
}

int lp_spm_size(void* processor) { return as_processor(processor)->GetPieceSize(); }

int lp_spm_unk_id(void* processor) { return as_processor(processor)->unk_id(); }

int lp_spm_decode_pieces(void* processor, const std::vector<std::string>* pieces, std::string* text, std::string* error) {
  auto status = as_processor(processor)->Decode(*pieces, text);
  if (!status.ok()) *error = status.ToString();
  return status.ok() ? 0 : 1;
}

int lp_spm_train(const std::string* trainer_args, std::string* error) {
  construct_deep_bound_cerr();
  auto status = sentencepiece::SentencePieceTrainer::Train(*trainer_args);
  if (!status.ok()) *error = status.ToString();
  return status.ok() ? 0 : 1;
}

}  // extern "C"
