// Reading gzip-compressed files (the golden features are stored as .jsonl.gz).
#pragma once

#include <filesystem>
#include <string>

namespace layerprobe {

// The decompressed content of a gzip file (a plain file is returned as is,
// as zlib does); Error naming the file when it cannot be read or is corrupt.
std::string read_gzip_file(const std::filesystem::path& path);

}  // namespace layerprobe
