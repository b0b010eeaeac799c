// The narrow interface of layerprobe's SentencePiece bridge library.
//
// Why a bridge: Debian's libsentencepiece embeds its own protobuf 3.14 and
// exports those symbols, while Debian's libtorch pulls in libprotobuf 3.21.
// Linked into one process the two interpose each other and the program
// aborts at start-up. The bridge links libsentencepiece alone and is loaded
// with dlopen(RTLD_LOCAL | RTLD_DEEPBIND), so each half binds to its own
// protobuf. Only these C-linkage entry points cross the boundary.
#pragma once

#include <string>
#include <vector>

extern "C" {
void* lp_spm_load(const char* model_path, std::string* error);
void lp_spm_free(void* processor);
int lp_spm_encode(void* processor, const std::string* text, std::vector<std::string>* pieces, std::string* error);
int lp_spm_piece_to_id(void* processor, const std::string* piece);
int lp_spm_id_to_piece(void* processor, int id, std::string* piece);
int lp_spm_size(void* processor);
int lp_spm_unk_id(void* processor);
int lp_spm_decode_pieces(void* processor, const std::vector<std::string>* pieces, std::string* text, std::string* error);
int lp_spm_train(const std::string* trainer_args, std::string* error);
}
