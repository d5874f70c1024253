// Handles, errors, typed parameters, the generic pool worker and libvirt's event loop thread.
#include "common.h"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>

namespace lv {

// Defined in connect.cc: unregisters the close callback and drops the connection reference.
void DropConnection(virConnectPtr conn, std::shared_ptr<CloseCallbackState> closeCallback);

namespace {

// Distinguishes our handle objects from every other object (random 128 bits).
const napi_type_tag kHandleTag = {0x6c1b3a0f7e2d4c59ULL, 0x9a85e1f3b2d04c77ULL};

void SilentErrorHandler(void*, virErrorPtr) {}

// Handles whose libvirt reference is still held, and handle objects not yet finalized.
std::atomic<long> gOpenHandles{0};
std::atomic<long> gWrappedHandles{0};

// Drops libvirt references on one background thread, in order. Dropping the last reference of a
// domain can close its connection (an RPC), so neither lvFree nor GC finalizers do it on the JS
// thread. Allocated once and never destroyed: the detached thread may outlive static destructors.
class Releaser {
 public:
  static Releaser& Get() {
    static Releaser* instance = new Releaser();
    return *instance;
  }
  void Push(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(fn));
      if (!started_) {
        started_ = true;
        std::thread([this] { Loop(); }).detach();
      }
    }
    cv_.notify_one();
  }

 private:
  void Loop() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [this] { return !queue_.empty(); });
        fn = std::move(queue_.front());
        queue_.pop_front();
      }
      fn();
      virResetLastError();
    }
  }
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool started_ = false;
};

// Takes the handle's reference away from it and releases it in the background.
void ReleaseHandle(Handle* h) {
  if (!h->ptr) return;
  Kind kind = h->kind;
  void* ptr = h->ptr;
  h->ptr = nullptr;
  gOpenHandles--;
  if (kind == Kind::Connect) {
    std::shared_ptr<CloseCallbackState> cb = std::move(h->closeCallback);
    Releaser::Get().Push([ptr, cb]() mutable { DropConnection(static_cast<virConnectPtr>(ptr), std::move(cb)); });
  } else {
    Releaser::Get().Push([kind, ptr] { UnrefRaw(kind, ptr); });
  }
}

void FinalizeHandle(napi_env, void* data, void*) {
  auto* h = static_cast<Handle*>(data);
  ReleaseHandle(h);
  gWrappedHandles--;
  delete h;
}

Napi::Value TypeError(Napi::Env env, const std::string& message) {
  Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
  return env.Undefined();
}

// lvFree(handle): takes the handle's reference away now (domains, checkpoints, pools, volumes);
// libvirt's unref runs on the release thread. Connections are closed with lvConnectClose.
// Freeing twice is a no-op.
Napi::Value Free(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject() || !info[0].As<Napi::Object>().CheckTypeTag(&kHandleTag)) {
    return TypeError(env, "lvFree: argument is not a libvirt handle");
  }
  void* data = nullptr;
  if (napi_unwrap(env, info[0], &data) != napi_ok || !data) return TypeError(env, "lvFree: bad handle");
  auto* h = static_cast<Handle*>(data);
  if (h->kind == Kind::Connect) return TypeError(env, "lvFree: use lvConnectClose for connections");
  ReleaseHandle(h);
  return env.Undefined();
}

// lvHandleCounts() → { open, wrapped }: handles still holding a libvirt reference, and handle
// objects not yet garbage-collected. For leak tests.
Napi::Value HandleCounts(const Napi::CallbackInfo& info) {
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("open", (double)gOpenHandles.load());
  out.Set("wrapped", (double)gWrappedHandles.load());
  return out;
}

// lvHandleInfo(handle) → { kind, open }: for diagnostics and tests.
Napi::Value HandleInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject() || !info[0].As<Napi::Object>().CheckTypeTag(&kHandleTag)) {
    return TypeError(env, "lvHandleInfo: argument is not a libvirt handle");
  }
  void* data = nullptr;
  if (napi_unwrap(env, info[0], &data) != napi_ok || !data) return TypeError(env, "lvHandleInfo: bad handle");
  auto* h = static_cast<Handle*>(data);
  Napi::Object out = Napi::Object::New(env);
  out.Set("kind", KindName(h->kind));
  out.Set("open", h->ptr != nullptr);
  return out;
}

// lvGetVersion() → the local library version (major*1e6 + minor*1e3 + release). No I/O.
Napi::Value GetVersion(const Napi::CallbackInfo& info) {
  unsigned long version = 0;
  if (virGetVersion(&version, nullptr, nullptr) < 0) {
    Napi::Error::New(info.Env(), "virGetVersion failed").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  return Napi::Number::New(info.Env(), (double)version);
}

}  // namespace

const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::Connect: return "connection";
    case Kind::Domain: return "domain";
    case Kind::Checkpoint: return "checkpoint";
    case Kind::StoragePool: return "storage pool";
    case Kind::StorageVol: return "storage volume";
  }
  return "?";
}

void RefRaw(Kind kind, void* ptr) {
  switch (kind) {
    case Kind::Connect: virConnectRef(static_cast<virConnectPtr>(ptr)); break;
    case Kind::Domain: virDomainRef(static_cast<virDomainPtr>(ptr)); break;
    case Kind::Checkpoint: virDomainCheckpointRef(static_cast<virDomainCheckpointPtr>(ptr)); break;
    case Kind::StoragePool: virStoragePoolRef(static_cast<virStoragePoolPtr>(ptr)); break;
    case Kind::StorageVol: virStorageVolRef(static_cast<virStorageVolPtr>(ptr)); break;
  }
}

void UnrefRaw(Kind kind, void* ptr) {
  switch (kind) {
    case Kind::Connect: virConnectClose(static_cast<virConnectPtr>(ptr)); break;
    case Kind::Domain: virDomainFree(static_cast<virDomainPtr>(ptr)); break;
    case Kind::Checkpoint: virDomainCheckpointFree(static_cast<virDomainCheckpointPtr>(ptr)); break;
    case Kind::StoragePool: virStoragePoolFree(static_cast<virStoragePoolPtr>(ptr)); break;
    case Kind::StorageVol: virStorageVolFree(static_cast<virStorageVolPtr>(ptr)); break;
  }
}

Napi::Object NewHandle(Napi::Env env, Kind kind, void* ptr) {
  Napi::Object obj = Napi::Object::New(env);
  obj.TypeTag(&kHandleTag);
  auto* h = new Handle{kind, ptr, nullptr};
  if (napi_wrap(env, obj, h, FinalizeHandle, nullptr, nullptr) != napi_ok) {
    UnrefRaw(kind, ptr);
    delete h;
    Napi::Error::New(env, "cannot wrap libvirt handle").ThrowAsJavaScriptException();
    return obj;
  }
  gOpenHandles++;
  gWrappedHandles++;
  return obj;
}

bool ArgHandle(const Napi::CallbackInfo& info, size_t index, Kind kind, Handle*& out) {
  Napi::Env env = info.Env();
  std::string want = std::string("expected a libvirt ") + KindName(kind) + " handle";
  if (index >= info.Length() || !info[index].IsObject() ||
      !info[index].As<Napi::Object>().CheckTypeTag(&kHandleTag)) {
    TypeError(env, want);
    return false;
  }
  void* data = nullptr;
  if (napi_unwrap(env, info[index], &data) != napi_ok || !data) {
    TypeError(env, want);
    return false;
  }
  auto* h = static_cast<Handle*>(data);
  if (h->kind != kind) {
    TypeError(env, want + ", got a " + KindName(h->kind) + " handle");
    return false;
  }
  if (!h->ptr) {
    Napi::Error::New(env, std::string("libvirt ") + KindName(kind) + " handle is already closed")
        .ThrowAsJavaScriptException();
    return false;
  }
  out = h;
  return true;
}

bool ArgString(const Napi::CallbackInfo& info, size_t index, const char* what, std::string& out) {
  if (index >= info.Length() || !info[index].IsString()) {
    TypeError(info.Env(), std::string(what) + " must be a string");
    return false;
  }
  out = info[index].As<Napi::String>().Utf8Value();
  return true;
}

bool ArgOptString(const Napi::CallbackInfo& info, size_t index, const char* what, std::string& out,
                  bool& present) {
  present = false;
  if (index >= info.Length() || info[index].IsNull() || info[index].IsUndefined()) return true;
  if (!ArgString(info, index, what, out)) return false;
  present = true;
  return true;
}

bool ArgUint(const Napi::CallbackInfo& info, size_t index, const char* what, unsigned int& out) {
  if (index >= info.Length() || info[index].IsUndefined()) {
    out = 0;
    return true;
  }
  if (!info[index].IsNumber()) {
    TypeError(info.Env(), std::string(what) + " must be a number");
    return false;
  }
  double v = info[index].As<Napi::Number>().DoubleValue();
  if (v < 0 || v > 4294967295.0 || v != (double)(unsigned int)v) {
    TypeError(info.Env(), std::string(what) + " must be an unsigned 32-bit integer");
    return false;
  }
  out = (unsigned int)v;
  return true;
}

bool ArgInt(const Napi::CallbackInfo& info, size_t index, const char* what, int& out) {
  if (index >= info.Length() || !info[index].IsNumber()) {
    TypeError(info.Env(), std::string(what) + " must be a number");
    return false;
  }
  double v = info[index].As<Napi::Number>().DoubleValue();
  if (v < -2147483648.0 || v > 2147483647.0 || v != (double)(int)v) {
    TypeError(info.Env(), std::string(what) + " must be a 32-bit integer");
    return false;
  }
  out = (int)v;
  return true;
}

bool ArgStringArray(const Napi::CallbackInfo& info, size_t index, const char* what,
                    std::vector<std::string>& out) {
  out.clear();
  if (index >= info.Length() || info[index].IsNull() || info[index].IsUndefined()) return true;
  if (!info[index].IsArray()) {
    TypeError(info.Env(), std::string(what) + " must be an array of strings");
    return false;
  }
  Napi::Array a = info[index].As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value v = a.Get(i);
    if (!v.IsString()) {
      TypeError(info.Env(), std::string(what) + " must be an array of strings");
      return false;
    }
    out.push_back(v.As<Napi::String>().Utf8Value());
  }
  return true;
}

CapturedError CaptureLastError(const char* fallback) {
  CapturedError e;
  virErrorPtr err = virGetLastError();
  if (err && err->code != VIR_ERR_OK) {
    e.code = err->code;
    e.domain = err->domain;
    e.level = err->level;
    e.message = err->message ? err->message : "";
  }
  if (e.message.empty()) e.message = fallback;
  virResetLastError();
  return e;
}

Napi::Value MakeError(Napi::Env env, const CapturedError& e) {
  Napi::Error err = Napi::Error::New(env, e.message);
  Napi::Object obj = err.Value();
  obj.Set("code", Napi::Number::New(env, e.code));
  obj.Set("domain", Napi::Number::New(env, e.domain));
  obj.Set("level", Napi::Number::New(env, e.level));
  obj.Set("libvirt", Napi::Boolean::New(env, true));
  return obj;
}

TypedParams CopyTypedParams(virTypedParameterPtr params, int nparams) {
  TypedParams out;
  out.reserve(nparams > 0 ? nparams : 0);
  for (int i = 0; i < nparams; i++) {
    const virTypedParameter& p = params[i];
    TypedValue v{};
    switch (p.type) {
      case VIR_TYPED_PARAM_INT: v.type = TypedValue::Int; v.number = p.value.i; break;
      case VIR_TYPED_PARAM_UINT: v.type = TypedValue::Uint; v.number = p.value.ui; break;
      case VIR_TYPED_PARAM_LLONG: v.type = TypedValue::LLong; v.number = (double)p.value.l; break;
      case VIR_TYPED_PARAM_ULLONG: v.type = TypedValue::ULLong; v.number = (double)p.value.ul; break;
      case VIR_TYPED_PARAM_DOUBLE: v.type = TypedValue::Double; v.number = p.value.d; break;
      case VIR_TYPED_PARAM_BOOLEAN: v.type = TypedValue::Boolean; v.boolean = p.value.b != 0; break;
      case VIR_TYPED_PARAM_STRING:
        v.type = TypedValue::String;
        v.string = p.value.s ? p.value.s : "";
        break;
      default: continue;
    }
    out.emplace_back(std::string(p.field), std::move(v));
  }
  return out;
}

Napi::Object TypedParamsToObject(Napi::Env env, const TypedParams& params) {
  Napi::Object obj = Napi::Object::New(env);
  for (const auto& [key, v] : params) {
    switch (v.type) {
      case TypedValue::Boolean: obj.Set(key, Napi::Boolean::New(env, v.boolean)); break;
      case TypedValue::String: obj.Set(key, Napi::String::New(env, v.string)); break;
      default: obj.Set(key, Napi::Number::New(env, v.number)); break;
    }
  }
  return obj;
}

Call::Call(Napi::Env env, Exec exec, Done done)
    : Napi::AsyncWorker(env, "libvirt"), deferred_(Napi::Promise::Deferred::New(env)), exec_(std::move(exec)),
      done_(std::move(done)) {}

Call::~Call() { ReleaseHolds(); }

void Call::Hold(Handle* handle) {
  RefRaw(handle->kind, handle->ptr);
  holds_.emplace_back(handle->kind, handle->ptr);
}

void Call::ReleaseHolds() {
  for (auto& [kind, ptr] : holds_) UnrefRaw(kind, ptr);
  holds_.clear();
}

Napi::Promise Call::Start() {
  Napi::Promise p = deferred_.Promise();
  Queue();
  return p;
}

void Call::Execute() {
  virResetLastError();
  if (!exec_()) {
    error_ = CaptureLastError("libvirt call failed");
    SetError(error_.message);
  }
  // Drop our references here, on the pool thread: the last reference of a connection closes it.
  ReleaseHolds();
}

void Call::OnOK() {
  Napi::HandleScope scope(Env());
  deferred_.Resolve(done_(Env()));
}

void Call::OnError(const Napi::Error&) {
  Napi::HandleScope scope(Env());
  deferred_.Reject(MakeError(Env(), error_));
}

Napi::Value Run(Napi::Env env, std::initializer_list<Handle*> handles, Call::Exec exec, Call::Done done) {
  auto* call = new Call(env, std::move(exec), std::move(done));
  for (Handle* h : handles) call->Hold(h);
  return call->Start();
}

void EnsureEventLoop() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (virEventRegisterDefaultImpl() < 0) {
      virResetLastError();
      return;
    }
    std::thread([] {
      for (;;) {
        if (virEventRunDefaultImpl() < 0) virResetLastError();
      }
    }).detach();
  });
}

void HandleClosed() { gOpenHandles--; }

void InitCommon(Napi::Env env, Napi::Object exports) {
  virInitialize();
  // libvirt prints every error to stderr by default; errors reach JS as rejections instead.
  virSetErrorFunc(nullptr, SilentErrorHandler);
  exports.Set("lvFree", Napi::Function::New(env, Free, "lvFree"));
  exports.Set("lvHandleInfo", Napi::Function::New(env, HandleInfo, "lvHandleInfo"));
  exports.Set("lvHandleCounts", Napi::Function::New(env, HandleCounts, "lvHandleCounts"));
  exports.Set("lvGetVersion", Napi::Function::New(env, GetVersion, "lvGetVersion"));
}

}  // namespace lv

void InitLibvirt(Napi::Env env, Napi::Object exports) {
  lv::InitCommon(env, exports);
  lv::InitConnect(env, exports);
  lv::InitDomain(env, exports);
  lv::InitCheckpoint(env, exports);
  lv::InitStorage(env, exports);
}
