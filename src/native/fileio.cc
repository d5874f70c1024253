// Early writeback for large sequential writers: sync_file_range(2) starts (and optionally
// waits for) writeback of a file range, so the fsync that makes a backup file durable at the
// end finds little left to do and disk writes overlap the transfer. Runs on libuv's pool.
#include <fcntl.h>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include "addon.h"

namespace {

class SyncRangeWorker : public Napi::AsyncWorker {
 public:
  SyncRangeWorker(Napi::Env env, int fd, int64_t offset, int64_t length, unsigned flags, bool evict)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), fd_(fd), offset_(offset), length_(length), flags_(flags), evict_(evict) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    if (sync_file_range(fd_, offset_, length_, flags_) != 0) {
      error_ = errno;
      return;
    }
    // Written back: the pages can go, the next writes reuse them instead of fresh memory.
    if (evict_) error_ = posix_fadvise(fd_, offset_, length_, POSIX_FADV_DONTNEED);
  }
  void OnOK() override {
    if (error_ == 0) return deferred_.Resolve(Env().Undefined());
    Napi::Error e = Napi::Error::New(Env(), std::string("sync_file_range: ") + strerror(error_));
    deferred_.Reject(e.Value());
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  int fd_;
  int64_t offset_;
  int64_t length_;
  unsigned flags_;
  bool evict_;
  int error_ = 0;
};

// syncFileRange(fd, offset, length, wait, evict?): starts writeback of the range; with `wait`,
// also waits for writeback already under way before and for this range's after (bounded dirty
// data); with `evict` (and `wait`), drops the written-back pages from the page cache.
Napi::Value SyncFileRange(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsBoolean()) {
    Napi::TypeError::New(env, "syncFileRange(fd, offset, length, wait)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  unsigned flags = SYNC_FILE_RANGE_WRITE;
  bool wait = info[3].As<Napi::Boolean>().Value();
  if (wait) flags |= SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WAIT_AFTER;
  bool evict = wait && info.Length() > 4 && info[4].IsBoolean() && info[4].As<Napi::Boolean>().Value();
  auto* worker = new SyncRangeWorker(env, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int64Value(),
                                     info[2].As<Napi::Number>().Int64Value(), flags, evict);
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

// alignedBuffer(size, alignment): a zeroed Buffer whose memory starts at a multiple of
// `alignment` (a power of two), as O_DIRECT writes need; freed when the Buffer is collected.
Napi::Value AlignedBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "alignedBuffer(size, alignment)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int64_t size = info[0].As<Napi::Number>().Int64Value();
  int64_t alignment = info[1].As<Napi::Number>().Int64Value();
  if (size <= 0 || alignment < static_cast<int64_t>(sizeof(void*)) || (alignment & (alignment - 1)) != 0) {
    Napi::RangeError::New(env, "alignedBuffer: size must be positive, alignment a power of two").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  void* data = nullptr;
  if (posix_memalign(&data, static_cast<size_t>(alignment), static_cast<size_t>(size)) != 0) {
    Napi::Error::New(env, "alignedBuffer: out of memory").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  memset(data, 0, static_cast<size_t>(size));
  return Napi::Buffer<uint8_t>::New(env, static_cast<uint8_t*>(data), static_cast<size_t>(size),
                                    [](Napi::Env, uint8_t* p) { free(p); });
}

}  // namespace

void InitFileIo(Napi::Env env, Napi::Object exports) {
  exports.Set("syncFileRange", Napi::Function::New(env, SyncFileRange, "syncFileRange"));
  exports.Set("alignedBuffer", Napi::Function::New(env, AlignedBuffer, "alignedBuffer"));
}
