// Checksums over caller buffers with libdeflate's SIMD implementations: Adler-32 for the
// `.chksum` files of the stream format, CRC-32 for our `.integrity` records. Async variants
// run on libuv's pool so hashing overlaps network and disk I/O.
#include <libdeflate.h>
#include <zlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>
#include <string>
#include "addon.h"

namespace {

enum class Kind { Adler32, Crc32 };

uint32_t Compute(Kind kind, uint32_t previous, const uint8_t* p, size_t len) {
  return kind == Kind::Adler32 ? libdeflate_adler32(previous, p, len) : libdeflate_crc32(previous, p, len);
}

struct Args {
  uint32_t previous;
  const uint8_t* data;
  size_t length;
};

// (previous: number, buf: Uint8Array, offset?: number, length?: number)
bool ParseArgs(const Napi::CallbackInfo& info, Args& out, std::string& error) {
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsTypedArray()) {
    error = "checksum(previous, buffer[, offset, length])";
    return false;
  }
  Napi::Uint8Array buf = info[1].As<Napi::Uint8Array>();
  size_t offset = info.Length() > 2 && info[2].IsNumber() ? (size_t)info[2].As<Napi::Number>().Int64Value() : 0;
  if (offset > buf.ByteLength()) {
    error = "checksum: offset outside buffer";
    return false;
  }
  size_t length = info.Length() > 3 && info[3].IsNumber() ? (size_t)info[3].As<Napi::Number>().Int64Value() : buf.ByteLength() - offset;
  if (length > buf.ByteLength() - offset) {
    error = "checksum: range outside buffer";
    return false;
  }
  out = {info[0].As<Napi::Number>().Uint32Value(), buf.Data() + offset, length};
  return true;
}

class ChecksumWorker : public Napi::AsyncWorker {
 public:
  ChecksumWorker(Napi::Env env, Kind kind, Args args, Napi::Value buffer)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), kind_(kind), args_(args) {
    ref_ = Napi::Persistent(buffer.As<Napi::Object>());
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override { result_ = Compute(kind_, args_.previous, args_.data, args_.length); }
  void OnOK() override { deferred_.Resolve(Napi::Number::New(Env(), (double)result_)); }

 private:
  Napi::Promise::Deferred deferred_;
  Kind kind_;
  Args args_;
  uint32_t result_ = 0;
  Napi::ObjectReference ref_;
};

template <Kind kind, bool async>
Napi::Value Checksum(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args args;
  std::string error;
  if (!ParseArgs(info, args, error)) {
    Napi::TypeError::New(env, error).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!async) return Napi::Number::New(env, (double)Compute(kind, args.previous, args.data, args.length));
  auto* worker = new ChecksumWorker(env, kind, args, info[1]);
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

// adler32Combine(a1, a2, len2): the Adler-32 of two ranges from theirs (zlib, O(1)).
Napi::Value Adler32Combine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "adler32Combine(adler1, adler2, length2)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  uLong a = adler32_combine64(info[0].As<Napi::Number>().Uint32Value(), info[1].As<Napi::Number>().Uint32Value(),
                              (z_off64_t)info[2].As<Napi::Number>().Int64Value());
  return Napi::Number::New(env, (double)(uint32_t)a);
}

// copyAsync(dst, dstOffset, src, withAdler): copies src into dst at dstOffset on libuv's pool;
// with `withAdler` resolves with src's Adler-32, summed over each piece just after it was copied
// (still in cache), so the bytes cross memory once for both. Else resolves with 0.
class CopyWorker : public Napi::AsyncWorker {
 public:
  CopyWorker(Napi::Env env, uint8_t* dst, const uint8_t* src, size_t length, bool adler, Napi::Value dstBuf, Napi::Value srcBuf)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), dst_(dst), src_(src), length_(length), adler_(adler) {
    dstRef_ = Napi::Persistent(dstBuf.As<Napi::Object>());
    srcRef_ = Napi::Persistent(srcBuf.As<Napi::Object>());
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    constexpr size_t kPiece = 64 * 1024;
    uint32_t sum = 1;
    for (size_t at = 0; at < length_; at += kPiece) {
      size_t n = length_ - at < kPiece ? length_ - at : kPiece;
      memcpy(dst_ + at, src_ + at, n);
      if (adler_) sum = libdeflate_adler32(sum, dst_ + at, n);
    }
    result_ = adler_ ? sum : 0;
  }
  void OnOK() override { deferred_.Resolve(Napi::Number::New(Env(), (double)result_)); }

 private:
  Napi::Promise::Deferred deferred_;
  uint8_t* dst_;
  const uint8_t* src_;
  size_t length_;
  bool adler_;
  uint32_t result_ = 0;
  Napi::ObjectReference dstRef_;
  Napi::ObjectReference srcRef_;
};

Napi::Value CopyAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsTypedArray() || !info[1].IsNumber() || !info[2].IsTypedArray()) {
    Napi::TypeError::New(env, "copyAsync(dst, dstOffset, src[, withAdler])").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Uint8Array dst = info[0].As<Napi::Uint8Array>();
  Napi::Uint8Array src = info[2].As<Napi::Uint8Array>();
  int64_t offset = info[1].As<Napi::Number>().Int64Value();
  if (offset < 0 || (size_t)offset > dst.ByteLength() || src.ByteLength() > dst.ByteLength() - (size_t)offset) {
    Napi::RangeError::New(env, "copyAsync: source does not fit at that offset").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  bool adler = info.Length() > 3 && info[3].ToBoolean().Value();
  auto* worker = new CopyWorker(env, dst.Data() + offset, src.Data(), src.ByteLength(), adler, info[0], info[2]);
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

// adler32FileAsync(fd, start, end, previous): the Adler-32 of bytes [start, end) of an open file,
// continuing `previous`, on libuv's pool. The file is mapped 4 MiB at a time and summed where
// it lies in the page cache: no copy into a read buffer (a restore sums every backup file while
// qemu-img copies them; read through 1 MiB buffers that took a core for 3.9 GiB). 4 MiB at a
// time: mapped pages count in the RSS (64 MiB windows made a restore peak at 139 MiB). A file
// shorter than `end` (fstat first) is an error, never a mapping past its end.
class FileAdlerWorker : public Napi::AsyncWorker {
 public:
  FileAdlerWorker(Napi::Env env, int fd, uint64_t start, uint64_t end, uint32_t previous)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), fd_(fd), start_(start), end_(end), sum_(previous) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    struct stat st;
    if (fstat(fd_, &st) != 0) return SetError(std::string("fstat: ") + strerror(errno));
    if ((uint64_t)st.st_size < end_) return SetError("the file ends at byte " + std::to_string((uint64_t)st.st_size) + ", before " + std::to_string(end_));
    constexpr uint64_t kWindow = 4ull << 20;
    const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    for (uint64_t at = start_; at < end_;) {
      uint64_t base = at & ~(page - 1);
      uint64_t stop = end_ - base > kWindow ? base + kWindow : end_;
      size_t length = (size_t)(stop - base);
      void* p = mmap(nullptr, length, PROT_READ, MAP_SHARED | MAP_POPULATE, fd_, (off_t)base);
      if (p == MAP_FAILED) return SetError(std::string("mmap: ") + strerror(errno));
      sum_ = libdeflate_adler32(sum_, static_cast<const uint8_t*>(p) + (at - base), (size_t)(stop - at));
      munmap(p, length);
      at = stop;
    }
  }
  void OnOK() override { deferred_.Resolve(Napi::Number::New(Env(), (double)sum_)); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  int fd_;
  uint64_t start_;
  uint64_t end_;
  uint32_t sum_;
};

Napi::Value Adler32FileAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsNumber()) {
    Napi::TypeError::New(env, "adler32FileAsync(fd, start, end, previous)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int64_t start = info[1].As<Napi::Number>().Int64Value();
  int64_t end = info[2].As<Napi::Number>().Int64Value();
  if (start < 0 || end < start) {
    Napi::RangeError::New(env, "adler32FileAsync: bad range").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* worker = new FileAdlerWorker(env, info[0].As<Napi::Number>().Int32Value(), (uint64_t)start, (uint64_t)end, info[3].As<Napi::Number>().Uint32Value());
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

}  // namespace

void InitChecksum(Napi::Env env, Napi::Object exports) {
  exports.Set("adler32", Napi::Function::New(env, Checksum<Kind::Adler32, false>, "adler32"));
  exports.Set("adler32Async", Napi::Function::New(env, Checksum<Kind::Adler32, true>, "adler32Async"));
  exports.Set("crc32", Napi::Function::New(env, Checksum<Kind::Crc32, false>, "crc32"));
  exports.Set("crc32Async", Napi::Function::New(env, Checksum<Kind::Crc32, true>, "crc32Async"));
  exports.Set("adler32Combine", Napi::Function::New(env, Adler32Combine, "adler32Combine"));
  exports.Set("copyAsync", Napi::Function::New(env, CopyAsync, "copyAsync"));
  exports.Set("adler32FileAsync", Napi::Function::New(env, Adler32FileAsync, "adler32FileAsync"));
}
