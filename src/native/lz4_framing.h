// lz4 frame checksums computed with xxhash's XXH32 instead of liblz4's own copy.
//
// Debian's liblz4 1.9.4 carries an XXH32 that GCC auto-vectorized for plain SSE2 (no pmulld,
// so every multiply became a chain of shifts and adds): 2 GB/s here, while xxhash's XXH32
// runs at 4 GB/s. With block and content checksums on, the checksums took more time than the
// compression itself (fast levels: 2.7 GB/s without checksums, 1.0 GB/s with both). The
// checksum is the same function, so the frames stay byte-identical; only who computes it
// changes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace lz4framing {

constexpr size_t kBlockSize = 64 * 1024;
constexpr uint32_t kMagic = 0x184D2204;
constexpr uint32_t kUncompressedFlag = 0x80000000u;

uint32_t Xxh32(const void* data, size_t length);

// Incremental XXH32 of a frame's content.
class ContentHash {
 public:
  ContentHash();
  ~ContentHash();
  ContentHash(const ContentHash&) = delete;
  ContentHash& operator=(const ContentHash&) = delete;
  void Reset();
  void Update(const void* data, size_t length);
  uint32_t Digest() const;

 private:
  void* state_;
};

// Frame header as LZ4F_compressBegin writes it (64 KiB blocks, block and content checksums,
// content size when non-zero, no dictionary id). Needs at most 15 bytes; returns its length.
size_t WriteHeader(uint8_t* dst, bool independentBlocks, uint64_t contentSize);

// LZ4F_compressFrame gives a frame of at most one block independent blocks.
inline bool SingleBlock(size_t contentSize) { return contentSize <= kBlockSize; }

// Frames CompressFastFrame builds: liblz4's fast levels (below LZ4HC_CLEVEL_MIN, 3) with
// linked blocks; the rest goes through LZ4F_compressFrame.
inline bool IsFastFrame(int level, size_t srcLen) { return level < 3 && !SingleBlock(srcLen); }

// One-shot frame where IsFastFrame: the same LZ4_compress_fast_continue calls
// LZ4F_compressFrame makes, with checksums by Xxh32. `dstCap` must be at least
// LZ4F_compressFrameBound. Returns the frame length, or 0 and `error`.
size_t CompressFastFrame(const uint8_t* src, size_t srcLen, uint8_t* dst, size_t dstCap, int level,
                         std::string& error);

// Copies whole blocks written by liblz4 without checksums from `in` to `out`, adding each
// block's checksum; an end mark (then `ended` is true) is followed by `content`'s checksum.
// Returns bytes written to `out`, or 0 and `error` when `out` is too small or `in` is not
// whole blocks.
size_t AddChecksums(const uint8_t* in, size_t inLen, const ContentHash& content, uint8_t* out, size_t outCap,
                    bool& ended, std::string& error);

// Decodes one whole frame (all of `src`) with liblz4's block decoder, checking the header,
// block and content checksums with Xxh32. Returns false, with nothing promised about `dst`,
// for anything it does not take on (dictionary ids, skippable frames) and for anything wrong
// (bad checksum, corrupt block, output too small, bytes after the frame): the caller then
// decodes with LZ4F_decompress, which reports the precise error.
bool DecompressFrame(const uint8_t* src, size_t srcLen, uint8_t* dst, size_t dstCap, size_t& written);

}  // namespace lz4framing
