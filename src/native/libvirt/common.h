// Shared pieces of the libvirt part of the addon: object handles, error capture and the
// generic worker that runs one libvirt call on libuv's thread pool and settles a Promise.
//
// Handles: every libvirt object (connection, domain, checkpoint, storage pool, storage volume)
// is a plain JS object, type-tagged and wrapped around a `Handle`. The handle owns one libvirt
// reference. `lvFree(handle)` (or `lvConnectClose` for connections) gives it up deterministically;
// a GC finalizer does if JS never did. The actual unref runs on a background release thread (the
// last reference of a domain may close its connection, an RPC). A call in flight takes its own
// libvirt reference, so freeing a handle while a call runs is safe.
#pragma once
#include <napi.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace lv {

enum class Kind { Connect = 1, Domain, Checkpoint, StoragePool, StorageVol };
const char* KindName(Kind kind);

struct CloseCallbackState;

struct Handle {
  Kind kind;
  void* ptr;  // nullptr once freed/closed
  // Connections only: the registered close callback, if any.
  std::shared_ptr<CloseCallbackState> closeCallback;
};

// Takes and drops a libvirt reference of the right type.
void RefRaw(Kind kind, void* ptr);
void UnrefRaw(Kind kind, void* ptr);

// Bookkeeping for lvHandleCounts when a handle is closed outside lvFree (connection close).
void HandleClosed();

// Wraps a libvirt object (whose reference the handle now owns) into a new JS handle object.
Napi::Object NewHandle(Napi::Env env, Kind kind, void* ptr);

// Argument helpers; on failure they throw a TypeError and return false.
bool ArgHandle(const Napi::CallbackInfo& info, size_t index, Kind kind, Handle*& out);
bool ArgString(const Napi::CallbackInfo& info, size_t index, const char* what, std::string& out);
// null/undefined → present = false.
bool ArgOptString(const Napi::CallbackInfo& info, size_t index, const char* what, std::string& out,
                  bool& present);
bool ArgUint(const Napi::CallbackInfo& info, size_t index, const char* what, unsigned int& out);
bool ArgInt(const Napi::CallbackInfo& info, size_t index, const char* what, int& out);
bool ArgStringArray(const Napi::CallbackInfo& info, size_t index, const char* what,
                    std::vector<std::string>& out);

// A libvirt error copied off the worker thread (libvirt errors are thread-local).
struct CapturedError {
  int code = 0;
  int domain = 0;
  int level = 0;
  std::string message;
};
CapturedError CaptureLastError(const char* fallback);
Napi::Value MakeError(Napi::Env env, const CapturedError& e);

// A typed-parameter list converted on the worker thread, turned into a JS object later.
struct TypedValue {
  enum Type { Int, Uint, LLong, ULLong, Double, Boolean, String } type;
  double number = 0;
  bool boolean = false;
  std::string string;
};
using TypedParams = std::vector<std::pair<std::string, TypedValue>>;
TypedParams CopyTypedParams(virTypedParameterPtr params, int nparams);
Napi::Object TypedParamsToObject(Napi::Env env, const TypedParams& params);

// Runs `exec` on the pool. `exec` returns false when the libvirt call failed (the thread's
// last libvirt error is then captured) and may set `failMessage` for non-libvirt failures.
// `done` builds the resolved value on the main thread.
class Call : public Napi::AsyncWorker {
 public:
  using Exec = std::function<bool()>;
  using Done = std::function<Napi::Value(Napi::Env)>;

  Call(Napi::Env env, Exec exec, Done done);
  ~Call() override;
  // Keeps the libvirt object alive (own reference) until the call finished.
  void Hold(Handle* handle);
  Napi::Promise Start();

  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& e) override;

 private:
  void ReleaseHolds();
  Napi::Promise::Deferred deferred_;
  Exec exec_;
  Done done_;
  CapturedError error_;
  std::vector<std::pair<Kind, void*>> holds_;
};

// Shortcut: build a Call holding `handles`, queue it, return its Promise.
Napi::Value Run(Napi::Env env, std::initializer_list<Handle*> handles, Call::Exec exec, Call::Done done);

// Starts libvirt's default event loop on its own thread (once). Needed for keepalive and
// close callbacks of remote connections; must run before the first connection is opened.
void EnsureEventLoop();

// Part registration.
void InitCommon(Napi::Env env, Napi::Object exports);
void InitConnect(Napi::Env env, Napi::Object exports);
void InitDomain(Napi::Env env, Napi::Object exports);
void InitCheckpoint(Napi::Env env, Napi::Object exports);
void InitStorage(Napi::Env env, Napi::Object exports);

}  // namespace lv
