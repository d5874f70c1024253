// lz4 frame compression byte-identical to python-lz4's
// lz4.frame.compress(data, content_checksum=True, block_checksum=True, compression_level=N):
// 64 KiB linked blocks, block + content checksums, content size in the header.
// Buffers come from the caller and are reused; async variants run on libuv's pool.
// Checksums are computed by lz4_framing (xxhash's XXH32), not by liblz4: see lz4_framing.h.
#define LZ4F_STATIC_LINKING_ONLY
#include <lz4frame.h>
#include <string>
#include <vector>
#include "addon.h"
#include "lz4_framing.h"

namespace {

LZ4F_preferences_t Preferences(int level, size_t contentSize) {
  LZ4F_preferences_t prefs = {};
  prefs.frameInfo.blockSizeID = LZ4F_default;  // 64 KiB
  prefs.frameInfo.blockMode = LZ4F_blockLinked;
  prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
  prefs.frameInfo.blockChecksumFlag = LZ4F_blockChecksumEnabled;
  prefs.frameInfo.contentSize = contentSize;
  prefs.compressionLevel = level;
  return prefs;
}

// One context per thread, kept for the thread's life: no allocation per frame.
thread_local LZ4F_cctx* tCompressContext = nullptr;
thread_local LZ4F_dctx* tDecompressContext = nullptr;

// Returns bytes written, or sets `error`.
size_t CompressFrame(const uint8_t* src, size_t srcLen, uint8_t* dst, size_t dstCap, int level,
                     std::string& error) {
  if (!tCompressContext && LZ4F_isError(LZ4F_createCompressionContext(&tCompressContext, LZ4F_VERSION))) {
    tCompressContext = nullptr;
    error = "lz4: cannot create compression context";
    return 0;
  }
  LZ4F_preferences_t prefs = Preferences(level, srcLen);
  // LZ4F_compressFrame switches single-block inputs to independent mode; do the same.
  if (lz4framing::SingleBlock(srcLen)) prefs.frameInfo.blockMode = LZ4F_blockIndependent;
  size_t bound = LZ4F_compressFrameBound(srcLen, &prefs);
  if (dstCap < bound) {
    error = "lz4: destination buffer too small (" + std::to_string(dstCap) + " < " + std::to_string(bound) + ")";
    return 0;
  }
  if (lz4framing::IsFastFrame(level, srcLen)) return lz4framing::CompressFastFrame(src, srcLen, dst, dstCap, level, error);
  size_t n = LZ4F_compressFrame_usingCDict(tCompressContext, dst, dstCap, src, srcLen, nullptr, &prefs);
  if (LZ4F_isError(n)) {
    error = std::string("lz4 compression failed: ") + LZ4F_getErrorName(n);
    return 0;
  }
  return n;
}

// Decodes exactly one complete frame occupying all of src, verifying its checksums. Frames
// the fast decoder does not take (or finds wrong) go through LZ4F_decompress, for its errors.
size_t DecompressFrame(const uint8_t* src, size_t srcLen, uint8_t* dst, size_t dstCap, std::string& error) {
  size_t written = 0;
  if (lz4framing::DecompressFrame(src, srcLen, dst, dstCap, written)) return written;
  if (!tDecompressContext && LZ4F_isError(LZ4F_createDecompressionContext(&tDecompressContext, LZ4F_VERSION))) {
    tDecompressContext = nullptr;
    error = "lz4: cannot create decompression context";
    return 0;
  }
  LZ4F_resetDecompressionContext(tDecompressContext);
  size_t srcPos = 0, dstPos = 0;
  for (;;) {
    size_t inLen = srcLen - srcPos, outLen = dstCap - dstPos;
    size_t hint = LZ4F_decompress(tDecompressContext, dst + dstPos, &outLen, src + srcPos, &inLen, nullptr);
    if (LZ4F_isError(hint)) {
      error = std::string("lz4 frame is corrupt: ") + LZ4F_getErrorName(hint);
      return 0;
    }
    srcPos += inLen;
    dstPos += outLen;
    if (hint == 0) break;  // frame complete, checksums verified
    if (inLen == 0 && outLen == 0) {
      // No progress: either the input ran out (truncated) or the output is full (too big).
      error = srcPos == srcLen ? std::string("lz4 frame is truncated")
                               : "lz4 frame decodes to more bytes than expected (" + std::to_string(dstCap) + ")";
      return 0;
    }
  }
  if (srcPos != srcLen) {
    error = "lz4 frame is followed by " + std::to_string(srcLen - srcPos) + " unexpected bytes";
    return 0;
  }
  return dstPos;
}

struct Range {
  uint8_t* data;
  size_t length;
};

bool ArgRange(const Napi::CallbackInfo& info, size_t index, Range& out) {
  if (index >= info.Length() || !info[index].IsTypedArray()) return false;
  Napi::Uint8Array a = info[index].As<Napi::Uint8Array>();
  out = {a.Data(), a.ByteLength()};
  return true;
}

class FrameWorker : public Napi::AsyncWorker {
 public:
  FrameWorker(Napi::Env env, bool compress, Napi::Value srcValue, Range src, Napi::Value dstValue, Range dst,
              int level)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), compress_(compress), src_(src),
        dst_(dst), level_(level) {
    // Keep both buffers alive while the pool thread uses their memory.
    srcRef_ = Napi::Persistent(srcValue.As<Napi::Object>());
    dstRef_ = Napi::Persistent(dstValue.As<Napi::Object>());
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    std::string error;
    written_ = compress_ ? CompressFrame(src_.data, src_.length, dst_.data, dst_.length, level_, error)
                         : DecompressFrame(src_.data, src_.length, dst_.data, dst_.length, error);
    if (!error.empty()) SetError(error);
  }
  void OnOK() override { deferred_.Resolve(Napi::Number::New(Env(), (double)written_)); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  bool compress_;
  Range src_, dst_;
  int level_;
  size_t written_ = 0;
  Napi::ObjectReference srcRef_, dstRef_;
};

Napi::Value Fail(Napi::Env env, const std::string& message) {
  Napi::Error::New(env, message).ThrowAsJavaScriptException();
  return env.Undefined();
}

// lz4CompressBound(srcLength): bytes a destination buffer needs for one frame.
Napi::Value CompressBound(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) return Fail(info.Env(), "lz4CompressBound(length)");
  size_t len = (size_t)info[0].As<Napi::Number>().Int64Value();
  LZ4F_preferences_t prefs = Preferences(1, len);
  return Napi::Number::New(info.Env(), (double)LZ4F_compressFrameBound(len, &prefs));
}

Napi::Value Run(const Napi::CallbackInfo& info, bool compress, bool async) {
  Napi::Env env = info.Env();
  Range src, dst;
  if (!ArgRange(info, 0, src) || !ArgRange(info, 1, dst)) {
    return Fail(env, compress ? "lz4Compress(src, dst, level)" : "lz4Decompress(src, dst)");
  }
  int level = 0;
  if (compress) {
    if (info.Length() < 3 || !info[2].IsNumber()) return Fail(env, "lz4Compress: level must be a number");
    level = info[2].As<Napi::Number>().Int32Value();
  }
  if (async) {
    auto* worker = new FrameWorker(env, compress, info[0], src, info[1], dst, level);
    Napi::Promise promise = worker->Promise();
    worker->Queue();
    return promise;
  }
  std::string error;
  size_t n = compress ? CompressFrame(src.data, src.length, dst.data, dst.length, level, error)
                      : DecompressFrame(src.data, src.length, dst.data, dst.length, error);
  if (!error.empty()) return Fail(env, error);
  return Napi::Number::New(env, (double)n);
}

Napi::Value Compress(const Napi::CallbackInfo& info) { return Run(info, true, false); }
Napi::Value CompressAsync(const Napi::CallbackInfo& info) { return Run(info, true, true); }
Napi::Value Decompress(const Napi::CallbackInfo& info) { return Run(info, false, false); }
Napi::Value DecompressAsync(const Napi::CallbackInfo& info) { return Run(info, false, true); }


// Lz4FrameEncoder: one lz4 frame built from several input pieces (bounded buffers), with the
// same frame parameters as the one-shot path. Calls on one encoder must not overlap.
class FrameEncoder : public Napi::ObjectWrap<FrameEncoder> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Lz4FrameEncoder",
                       {InstanceMethod("begin", &FrameEncoder::Begin), InstanceMethod("update", &FrameEncoder::Update),
                        InstanceMethod("end", &FrameEncoder::End), InstanceMethod("bound", &FrameEncoder::Bound)});
  }
  explicit FrameEncoder(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FrameEncoder>(info) {
    if (LZ4F_isError(LZ4F_createCompressionContext(&cctx_, LZ4F_VERSION))) cctx_ = nullptr;
  }
  ~FrameEncoder() override {
    if (cctx_) LZ4F_freeCompressionContext(cctx_);
  }

  // Runs one step (update or end) on libuv's pool.
  class Step : public Napi::AsyncWorker {
   public:
    Step(Napi::Env env, FrameEncoder* enc, bool end, Napi::Value srcV, Range src, Napi::Value dstV, Range dst)
        : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), enc_(enc), end_(end), src_(src), dst_(dst) {
      if (!end) srcRef_ = Napi::Persistent(srcV.As<Napi::Object>());
      dstRef_ = Napi::Persistent(dstV.As<Napi::Object>());
      selfRef_ = Napi::Persistent(enc->Value());
    }
    Napi::Promise Promise() { return deferred_.Promise(); }
    // liblz4 writes the blocks without checksums into the encoder's scratch buffer; they are
    // copied into place with their checksums (and, at the end, the content checksum).
    void Execute() override {
      std::vector<uint8_t>& scratch = enc_->scratch_;
      size_t n = end_ ? LZ4F_compressEnd(enc_->cctx_, scratch.data(), scratch.size(), nullptr)
                      : LZ4F_compressUpdate(enc_->cctx_, scratch.data(), scratch.size(), src_.data, src_.length, nullptr);
      if (LZ4F_isError(n)) return SetError(std::string("lz4 compression failed: ") + LZ4F_getErrorName(n));
      if (!end_) enc_->content_.Update(src_.data, src_.length);
      std::string error;
      bool ended = false;
      written_ = lz4framing::AddChecksums(scratch.data(), n, enc_->content_, dst_.data, dst_.length, ended, error);
      if (!error.empty()) return SetError(error);
      if (ended != end_) return SetError("lz4: unexpected end mark from liblz4");
    }
    void OnOK() override {
      enc_->busy_ = false;
      deferred_.Resolve(Napi::Number::New(Env(), (double)written_));
    }
    void OnError(const Napi::Error& e) override {
      enc_->busy_ = false;
      deferred_.Reject(e.Value());
    }

   private:
    Napi::Promise::Deferred deferred_;
    FrameEncoder* enc_;
    bool end_;
    Range src_, dst_;
    size_t written_ = 0;
    Napi::ObjectReference srcRef_, dstRef_, selfRef_;
  };

 private:
  LZ4F_cctx* cctx_ = nullptr;
  // liblz4 compresses without checksums (prefs_); they are added by lz4_framing.
  LZ4F_preferences_t prefs_ = {};
  lz4framing::ContentHash content_;
  std::vector<uint8_t> scratch_;
  bool busy_ = false;

  void ReserveScratch(size_t srcLength) {
    size_t need = LZ4F_compressBound(srcLength, &prefs_);
    if (scratch_.size() < need) scratch_.resize(need);
  }

  bool Ready(Napi::Env env) {
    if (!cctx_) return Fail(env, "lz4: no compression context"), false;
    if (busy_) return Fail(env, "lz4: encoder is busy"), false;
    return true;
  }

  // begin(dst, contentSize, level): writes the frame header, returns its length.
  Napi::Value Begin(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Range dst;
    if (!ArgRange(info, 0, dst) || info.Length() < 3 || !info[1].IsNumber() || !info[2].IsNumber())
      return Fail(env, "begin(dst, contentSize, level)");
    if (!Ready(env)) return env.Undefined();
    size_t contentSize = (size_t)info[1].As<Napi::Number>().Int64Value();
    prefs_ = Preferences(info[2].As<Napi::Number>().Int32Value(), contentSize);
    const bool independent = lz4framing::SingleBlock(contentSize);  // as LZ4F_compressFrame
    if (independent) prefs_.frameInfo.blockMode = LZ4F_blockIndependent;
    prefs_.frameInfo.contentChecksumFlag = LZ4F_noContentChecksum;
    prefs_.frameInfo.blockChecksumFlag = LZ4F_noBlockChecksum;
    if (dst.length < 15) return Fail(env, "lz4: header buffer too small");
    ReserveScratch(0);
    size_t n = LZ4F_compressBegin(cctx_, scratch_.data(), scratch_.size(), &prefs_);  // our header replaces it
    if (LZ4F_isError(n)) return Fail(env, std::string("lz4 compression failed: ") + LZ4F_getErrorName(n));
    content_.Reset();
    return Napi::Number::New(env, (double)lz4framing::WriteHeader(dst.data, independent, contentSize));
  }

  // bound(srcLength): destination bytes one update (plus end) may need.
  Napi::Value Bound(const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsNumber()) return Fail(info.Env(), "bound(length)");
    size_t len = (size_t)info[0].As<Napi::Number>().Int64Value();
    LZ4F_preferences_t p = Preferences(1, 0);
    return Napi::Number::New(info.Env(), (double)LZ4F_compressBound(len, &p));
  }

  Napi::Value Update(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Range src, dst;
    if (!ArgRange(info, 0, src) || !ArgRange(info, 1, dst)) return Fail(env, "update(src, dst)");
    if (!Ready(env)) return env.Undefined();
    ReserveScratch(src.length);
    busy_ = true;
    auto* step = new Step(env, this, false, info[0], src, info[1], dst);
    Napi::Promise p = step->Promise();
    step->Queue();
    return p;
  }

  Napi::Value End(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Range dst;
    if (!ArgRange(info, 0, dst)) return Fail(env, "end(dst)");
    if (!Ready(env)) return env.Undefined();
    ReserveScratch(0);
    busy_ = true;
    auto* step = new Step(env, this, true, env.Undefined(), {nullptr, 0}, info[0], dst);
    Napi::Promise p = step->Promise();
    step->Queue();
    return p;
  }
};

}  // namespace

void InitLz4(Napi::Env env, Napi::Object exports) {
  exports.Set("lz4CompressBound", Napi::Function::New(env, CompressBound, "lz4CompressBound"));
  exports.Set("lz4Compress", Napi::Function::New(env, Compress, "lz4Compress"));
  exports.Set("lz4CompressAsync", Napi::Function::New(env, CompressAsync, "lz4CompressAsync"));
  exports.Set("lz4Decompress", Napi::Function::New(env, Decompress, "lz4Decompress"));
  exports.Set("lz4DecompressAsync", Napi::Function::New(env, DecompressAsync, "lz4DecompressAsync"));
  exports.Set("Lz4FrameEncoder", FrameEncoder::Define(env));
}
