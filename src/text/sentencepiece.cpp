#include "layerprobe/text/sentencepiece.hpp"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>

#include "layerprobe/core/common.hpp"
#include "sentencepiece_bridge/bridge.hpp"

namespace layerprobe {

namespace fs = std::filesystem;

namespace {

struct BridgeApi {
  decltype(&lp_spm_load) load;
  decltype(&lp_spm_free) free;
  decltype(&lp_spm_encode) encode;
  decltype(&lp_spm_piece_to_id) piece_to_id;
  decltype(&lp_spm_id_to_piece) id_to_piece;
  decltype(&lp_spm_size) size;
  decltype(&lp_spm_unk_id) unk_id;
  decltype(&lp_spm_decode_pieces) decode_pieces;
  decltype(&lp_spm_train) train;
};

std::vector<fs::path> bridge_candidates() {
  std::vector<fs::path> candidates;
  if (const char* env = std::getenv("LAYERPROBE_SPM_BRIDGE"); env && *env) candidates.emplace_back(env);
  candidates.emplace_back(LAYERPROBE_SPM_BRIDGE_PATH);
  std::error_code ec;
  auto exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    candidates.push_back(exe.parent_path() / "liblayerprobe_sentencepiece.so");
    candidates.push_back(exe.parent_path().parent_path() / "lib" / "liblayerprobe_sentencepiece.so");
  }
  return candidates;
}

template <typename F>
F symbol(void* handle, const char* name) {
  void* address = dlsym(handle, name);
  if (!address) throw Error(std::string("SentencePiece bridge lacks symbol ") + name + "; rebuild layerprobe");
  return reinterpret_cast<F>(address);
}

BridgeApi open_bridge() {
  std::string tried;
  for (const auto& path : bridge_candidates()) {
    if (!fs::exists(path)) {
      tried += "\n  " + path.string() + " (not found)";
      continue;
    }
    // A namespace of its own isolates the bridge's protobuf (bridge.hpp) without RTLD_DEEPBIND,
    // which AddressSanitizer refuses.
    void* handle = dlmopen(LM_ID_NEWLM, path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      tried += "\n  " + path.string() + " (" + dlerror() + ")";
      continue;
    }
    return BridgeApi{symbol<decltype(&lp_spm_load)>(handle, "lp_spm_load"),
                     symbol<decltype(&lp_spm_free)>(handle, "lp_spm_free"),
                     symbol<decltype(&lp_spm_encode)>(handle, "lp_spm_encode"),
                     symbol<decltype(&lp_spm_piece_to_id)>(handle, "lp_spm_piece_to_id"),
                     symbol<decltype(&lp_spm_id_to_piece)>(handle, "lp_spm_id_to_piece"),
                     symbol<decltype(&lp_spm_size)>(handle, "lp_spm_size"),
                     symbol<decltype(&lp_spm_unk_id)>(handle, "lp_spm_unk_id"),
                     symbol<decltype(&lp_spm_decode_pieces)>(handle, "lp_spm_decode_pieces"),
                     symbol<decltype(&lp_spm_train)>(handle, "lp_spm_train")};
  }
  throw Error("cannot load layerprobe's SentencePiece bridge library; tried:" + tried +
              "\nset LAYERPROBE_SPM_BRIDGE to its path or rebuild layerprobe");
}

const BridgeApi& bridge() {
  static const BridgeApi api = open_bridge();
  return api;
}

// The bridge's results are copied into objects of this side's runtime (bridge.hpp).
lp_spm_sink into(std::string& text) {
  return {[](void* target, const char* data, size_t size) { static_cast<std::string*>(target)->append(data, size); },
          &text};
}

lp_spm_sink into(std::vector<std::string>& pieces) {
  return {[](void* target, const char* data, size_t size) {
            static_cast<std::vector<std::string>*>(target)->emplace_back(data, size);
          },
          &pieces};
}

}  // namespace

SentencePieceModel::SentencePieceModel(const fs::path& model_path) {
  if (!fs::is_regular_file(model_path))
    throw Error("SentencePiece model not found: '" + model_path.string() + "'");
  std::string error;
  processor_ = bridge().load(model_path.c_str(), into(error));
  if (!processor_)
    throw Error("cannot load SentencePiece model '" + model_path.string() + "': " + error);
}

SentencePieceModel::~SentencePieceModel() {
  if (processor_) bridge().free(processor_);
}

std::vector<std::string> SentencePieceModel::encode(const std::string& text) const {
  std::vector<std::string> pieces;
  std::string error;
  if (bridge().encode(processor_, text.data(), text.size(), into(pieces), into(error)) != 0)
    throw Error("SentencePiece encode failed: " + error);
  return pieces;
}

int SentencePieceModel::piece_to_id(const std::string& piece) const {
  return bridge().piece_to_id(processor_, piece.data(), piece.size());
}

std::string SentencePieceModel::id_to_piece(int id) const {
  std::string piece;
  if (bridge().id_to_piece(processor_, id, into(piece)) != 0)
    throw Error("token id " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(size()));
  return piece;
}

std::string SentencePieceModel::decode(const std::vector<std::string>& pieces) const {
  std::vector<const char*> data;
  std::vector<size_t> sizes;
  for (const auto& piece : pieces) {
    data.push_back(piece.data());
    sizes.push_back(piece.size());
  }
  std::string text, error;
  if (bridge().decode_pieces(processor_, data.data(), sizes.data(), pieces.size(), into(text), into(error)) != 0)
    throw Error("SentencePiece decode failed: " + error);
  return text;
}

int SentencePieceModel::size() const { return bridge().size(processor_); }

int SentencePieceModel::unk_id() const { return bridge().unk_id(processor_); }

void train_sentencepiece(const std::string& trainer_args) {
  std::string error;
  if (bridge().train(trainer_args.c_str(), into(error)) != 0) throw Error("SentencePiece training failed: " + error);
}

}  // namespace layerprobe
