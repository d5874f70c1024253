#include "lz4_framing.h"

#include <lz4.h>

#include <cstring>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace lz4framing {

namespace {

void WriteLE32(uint8_t* p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

uint32_t ReadLE32(const uint8_t* p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

// One stream state per thread, kept for the thread's life.
thread_local LZ4_stream_t* tStream = nullptr;

}  // namespace

uint32_t Xxh32(const void* data, size_t length) { return XXH32(data, length, 0); }

ContentHash::ContentHash() : state_(XXH32_createState()) { Reset(); }
ContentHash::~ContentHash() { XXH32_freeState(static_cast<XXH32_state_t*>(state_)); }
void ContentHash::Reset() { XXH32_reset(static_cast<XXH32_state_t*>(state_), 0); }
void ContentHash::Update(const void* data, size_t length) {
  XXH32_update(static_cast<XXH32_state_t*>(state_), data, length);
}
uint32_t ContentHash::Digest() const { return XXH32_digest(static_cast<const XXH32_state_t*>(state_)); }

size_t WriteHeader(uint8_t* dst, bool independentBlocks, uint64_t contentSize) {
  WriteLE32(dst, kMagic);
  uint8_t* descriptor = dst + 4;
  // FLG: version 01, block independence, block checksum, content size, content checksum.
  descriptor[0] = (uint8_t)(0x40 | (independentBlocks ? 0x20 : 0) | 0x10 | (contentSize ? 0x08 : 0) | 0x04);
  descriptor[1] = 4 << 4;  // BD: 64 KiB blocks
  size_t length = 2;
  if (contentSize) {
    for (int i = 0; i < 8; i++) descriptor[length++] = (uint8_t)(contentSize >> (8 * i));
  }
  descriptor[length] = (uint8_t)((Xxh32(descriptor, length) >> 8) & 0xFF);
  return 4 + length + 1;
}

size_t CompressFastFrame(const uint8_t* src, size_t srcLen, uint8_t* dst, size_t dstCap, int level,
                         std::string& error) {
  if (!IsFastFrame(level, srcLen)) {
    error = "lz4: not a fast frame (level below 3, more than one block)";
    return 0;
  }
  if (!tStream) tStream = LZ4_createStream();
  if (!tStream) {
    error = "lz4: cannot create a stream state";
    return 0;
  }
  // A fresh, reset stream: the state LZ4F_compressFrame starts every frame from.
  LZ4_initStream(tStream, sizeof(*tStream));
  LZ4_resetStream_fast(tStream);
  const int acceleration = level < 0 ? -level + 1 : 1;  // as LZ4F_compressBlock_continue
  size_t pos = WriteHeader(dst, false, srcLen);
  for (size_t at = 0; at < srcLen; at += kBlockSize) {
    const size_t length = srcLen - at < kBlockSize ? srcLen - at : kBlockSize;
    if (dstCap - pos < 4 + length + 4 + 8) {
      error = "lz4: destination buffer too small";
      return 0;
    }
    uint8_t* block = dst + pos + 4;
    // As LZ4F_makeBlock: a block that does not shrink is stored as it is.
    int size = LZ4_compress_fast_continue(tStream, (const char*)src + at, (char*)block, (int)length,
                                          (int)length - 1, acceleration);
    if (size <= 0 || (size_t)size >= length) {
      size = (int)length;
      WriteLE32(dst + pos, (uint32_t)length | kUncompressedFlag);
      std::memcpy(block, src + at, length);
    } else {
      WriteLE32(dst + pos, (uint32_t)size);
    }
    WriteLE32(block + size, Xxh32(block, (size_t)size));
    pos += 4 + (size_t)size + 4;
  }
  WriteLE32(dst + pos, 0);  // end mark
  WriteLE32(dst + pos + 4, Xxh32(src, srcLen));
  return pos + 8;
}

size_t AddChecksums(const uint8_t* in, size_t inLen, const ContentHash& content, uint8_t* out, size_t outCap,
                    bool& ended, std::string& error) {
  size_t inPos = 0, outPos = 0;
  ended = false;
  while (inPos < inLen) {
    if (inLen - inPos < 4) break;
    const uint32_t word = ReadLE32(in + inPos);
    if (word == 0) {
      if (outCap - outPos < 8) {
        error = "lz4: destination buffer too small";
        return 0;
      }
      WriteLE32(out + outPos, 0);
      WriteLE32(out + outPos + 4, content.Digest());
      inPos += 4;
      outPos += 8;
      ended = true;
      if (inPos != inLen) break;
      return outPos;
    }
    const size_t size = word & ~kUncompressedFlag;
    if (inLen - inPos - 4 < size) break;
    if (outCap - outPos < 4 + size + 4) {
      error = "lz4: destination buffer too small";
      return 0;
    }
    std::memcpy(out + outPos, in + inPos, 4 + size);
    WriteLE32(out + outPos + 4 + size, Xxh32(in + inPos + 4, size));
    inPos += 4 + size;
    outPos += 4 + size + 4;
  }
  if (inPos != inLen) {
    error = "lz4: unexpected block layout from liblz4";
    return 0;
  }
  return outPos;
}

bool DecompressFrame(const uint8_t* src, size_t srcLen, uint8_t* dst, size_t dstCap, size_t& written) {
  if (srcLen < 7 || ReadLE32(src) != kMagic) return false;
  const uint8_t flg = src[4], bd = src[5];
  const bool independent = flg & 0x20, blockSums = flg & 0x10, hasSize = flg & 0x08, contentSum = flg & 0x04;
  // Version 01, no reserved bits, no dictionary id; BD: block size id 4..7 only.
  if ((flg & 0xC3) != 0x40 || (bd & 0x8F) != 0 || ((bd >> 4) & 7) < 4) return false;
  const size_t maxBlock = (size_t)1 << (8 + 2 * ((bd >> 4) & 7));
  const size_t descriptorLen = hasSize ? 10 : 2;
  if (srcLen < 4 + descriptorLen + 1) return false;
  if (src[4 + descriptorLen] != (uint8_t)((Xxh32(src + 4, descriptorLen) >> 8) & 0xFF)) return false;
  uint64_t contentSize = 0;
  for (int i = 0; hasSize && i < 8; i++) contentSize |= (uint64_t)src[6 + i] << (8 * i);
  size_t in = 4 + descriptorLen + 1, out = 0;
  ContentHash content;
  for (;;) {
    if (srcLen - in < 4) return false;
    const uint32_t word = ReadLE32(src + in);
    in += 4;
    if (word == 0) break;  // end mark
    const size_t size = word & ~kUncompressedFlag;
    if (size > maxBlock || srcLen - in < size + (blockSums ? 4 : 0)) return false;
    const uint8_t* block = src + in;
    if (blockSums && ReadLE32(block + size) != Xxh32(block, size)) return false;
    size_t produced;
    if (word & kUncompressedFlag) {
      if (dstCap - out < size) return false;
      std::memcpy(dst + out, block, size);
      produced = size;
    } else {
      const size_t room = dstCap - out < maxBlock ? dstCap - out : maxBlock;
      // Linked blocks refer back to up to 64 KiB of the output before them (contiguous: prefix).
      const size_t dictLen = independent ? 0 : (out < kBlockSize ? out : kBlockSize);
      const int n = LZ4_decompress_safe_usingDict((const char*)block, (char*)dst + out, (int)size, (int)room,
                                                  (const char*)dst + out - dictLen, (int)dictLen);
      if (n < 0) return false;
      produced = (size_t)n;
    }
    if (contentSum) content.Update(dst + out, produced);  // while it is still in cache
    out += produced;
    in += size + (blockSums ? 4 : 0);
  }
  if (contentSum) {
    if (srcLen - in < 4 || ReadLE32(src + in) != content.Digest()) return false;
    in += 4;
  }
  if (in != srcLen || (hasSize && contentSize != out)) return false;
  written = out;
  return true;
}

}  // namespace lz4framing
