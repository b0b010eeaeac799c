// The narrow interface of layerprobe's SentencePiece bridge library.
//
// Why a bridge: Debian's libsentencepiece embeds its own protobuf 3.14 and
// exports those symbols, while Debian's libtorch pulls in libprotobuf 3.21.
// Linked into one process the two interpose each other and the program
// aborts at start-up. The bridge links libsentencepiece alone and is loaded
// into a link-map namespace of its own (dlmopen), where it also has its own
// C and C++ runtimes. So nothing allocated on one side may be freed or grown
// on the other: text goes in as pointer and size, and results come back
// through a sink whose function runs on the caller's side.
#pragma once

#include <cstddef>

extern "C" {
struct lp_spm_sink {
  void (*append)(void* target, const char* data, size_t size);
  void* target;
};

void* lp_spm_load(const char* model_path, lp_spm_sink error);
void lp_spm_free(void* processor);
// Each piece is one call of pieces.append.
int lp_spm_encode(void* processor, const char* text, size_t size, lp_spm_sink pieces, lp_spm_sink error);
int lp_spm_piece_to_id(void* processor, const char* piece, size_t size);
int lp_spm_id_to_piece(void* processor, int id, lp_spm_sink piece);
int lp_spm_size(void* processor);
int lp_spm_unk_id(void* processor);
int lp_spm_decode_pieces(void* processor, const char* const* pieces, const size_t* sizes, size_t count,
                         lp_spm_sink text, lp_spm_sink error);
int lp_spm_train(const char* trainer_args, lp_spm_sink error);
}
