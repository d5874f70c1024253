// Descriptor helpers. Early writeback for large sequential writers: sync_file_range(2) starts
// (and optionally waits for) writeback of a file range, so the fsync that makes a backup file
// durable at the end finds little left to do and disk writes overlap the transfer (on libuv's
// pool). Also: buffer alignment for O_DIRECT, flock, TCP_QUICKACK.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <cerrno>
#include <cstdint>
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

// addressModulo(buffer, modulus): where the buffer's memory starts, modulo `modulus` (a power
// of two). O_DIRECT needs aligned memory; JS cannot see addresses, so callers allocate a little
// more and take the aligned part (the memory stays V8's, counted and collected as usual).
Napi::Value AddressModulo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "addressModulo(buffer, modulus)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int64_t modulus = info[1].As<Napi::Number>().Int64Value();
  if (modulus <= 0 || (modulus & (modulus - 1)) != 0) {
    Napi::RangeError::New(env, "addressModulo: modulus must be a power of two").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto address = reinterpret_cast<uintptr_t>(info[0].As<Napi::Uint8Array>().Data());
  return Napi::Number::New(env, static_cast<double>(address & static_cast<uintptr_t>(modulus - 1)));
}

// The descriptor a call takes as its only argument; false (a TypeError thrown) when it is none.
bool DescriptorArgument(const Napi::CallbackInfo& info, const char* usage, int* fd) {
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(info.Env(), usage).ThrowAsJavaScriptException();
    return false;
  }
  *fd = info[0].As<Napi::Number>().Int32Value();
  return true;
}

// tryLockExclusive(fd): flock(2) LOCK_EX|LOCK_NB on an open file. true: the lock is ours until
// the descriptor closes or the process ends (also by SIGKILL: the kernel releases it); false:
// another open file description holds it. Other errors throw.
Napi::Value TryLockExclusive(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!DescriptorArgument(info, "tryLockExclusive(fd)", &fd)) return env.Undefined();
  int rc;
  do rc = flock(fd, LOCK_EX | LOCK_NB);
  while (rc != 0 && errno == EINTR);
  if (rc == 0) return Napi::Boolean::New(env, true);
  if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
  Napi::Error::New(env, std::string("flock: ") + strerror(errno)).ThrowAsJavaScriptException();
  return env.Undefined();
}

// tcpQuickAck(fd): TCP_QUICKACK on a connected TCP socket: what arrived is acknowledged at once
// instead of after the delayed-ACK timer (40 ms). Not sticky: the kernel goes back to delaying
// once this side answers quickly again, so callers set it after each send whose answer comes
// in pieces. false when the descriptor is no TCP socket (a unix socket); other errors throw.
Napi::Value TcpQuickAck(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!DescriptorArgument(info, "tcpQuickAck(fd)", &fd)) return env.Undefined();
  int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one) == 0) return Napi::Boolean::New(env, true);
  if (errno == EOPNOTSUPP || errno == ENOPROTOOPT || errno == ENOTSOCK) return Napi::Boolean::New(env, false);
  Napi::Error::New(env, std::string("setsockopt TCP_QUICKACK: ") + strerror(errno)).ThrowAsJavaScriptException();
  return env.Undefined();
}

}  // namespace

void InitFileIo(Napi::Env env, Napi::Object exports) {
  exports.Set("syncFileRange", Napi::Function::New(env, SyncFileRange, "syncFileRange"));
  exports.Set("addressModulo", Napi::Function::New(env, AddressModulo, "addressModulo"));
  exports.Set("tryLockExclusive", Napi::Function::New(env, TryLockExclusive, "tryLockExclusive"));
  exports.Set("tcpQuickAck", Napi::Function::New(env, TcpQuickAck, "tcpQuickAck"));
}
