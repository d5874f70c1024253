// Connections: open (plain, read-only, or with SASL credentials), close, host facts, keepalive,
// the close callback, and the connection-level domain calls (lookup, define, create, list).
#include <cstring>
#include <mutex>

#include "common.h"

namespace lv {

struct CloseCallbackState {
  std::mutex mutex;
  bool alive = false;     // tsfn may be called
  bool released = false;  // tsfn.Release() done
  Napi::ThreadSafeFunction tsfn;

  void Release() {
    std::lock_guard<std::mutex> lock(mutex);
    if (alive && !released) {
      released = true;
      tsfn.Release();
    }
  }
};

namespace {

// Runs on libvirt's event loop thread.
void OnConnectionClosed(virConnectPtr, int reason, void* opaque) {
  auto& state = *static_cast<std::shared_ptr<CloseCallbackState>*>(opaque);
  std::lock_guard<std::mutex> lock(state->mutex);
  if (!state->alive || state->released) return;
  state->tsfn.NonBlockingCall(new int(reason), [](Napi::Env env, Napi::Function fn, int* r) {
    int value = *r;
    delete r;
    if (env == nullptr || fn == nullptr) return;
    // Plain N-API on purpose: during environment teardown calls into JS fail, and the
    // node-addon-api wrappers would turn that failure into a fatal error.
    napi_value recv, arg, result;
    if (napi_get_undefined(env, &recv) != napi_ok || napi_create_int32(env, value, &arg) != napi_ok) return;
    napi_call_function(env, recv, fn, 1, &arg, &result);
  });
}

// libvirt calls this when the callback is unregistered or the connection is disposed.
void FreeCloseCallbackOpaque(void* opaque) {
  auto* state = static_cast<std::shared_ptr<CloseCallbackState>*>(opaque);
  (*state)->Release();
  delete state;
}

struct Credentials {
  std::string user, password;
  bool hasUser = false, hasPassword = false;
};

// Answers VIR_CRED_AUTHNAME and VIR_CRED_PASSPHRASE from the given strings.
int AuthCallback(virConnectCredentialPtr cred, unsigned int ncred, void* cbdata) {
  auto* c = static_cast<Credentials*>(cbdata);
  for (unsigned int i = 0; i < ncred; i++) {
    const std::string* value = nullptr;
    if (cred[i].type == VIR_CRED_AUTHNAME && c->hasUser) value = &c->user;
    if (cred[i].type == VIR_CRED_PASSPHRASE && c->hasPassword) value = &c->password;
    if (!value) return -1;
    cred[i].result = strdup(value->c_str());
    if (!cred[i].result) return -1;
    cred[i].resultlen = (unsigned int)value->size();
  }
  return 0;
}

int gCredTypes[] = {VIR_CRED_AUTHNAME, VIR_CRED_PASSPHRASE};

// lvConnectOpen(uri|null, user|null, password|null, flags, useAuth) → Promise<handle>.
// With user or password (or useAuth) it uses virConnectOpenAuth answering AUTHNAME/PASSPHRASE;
// otherwise virConnectOpen / virConnectOpenReadOnly (flags & VIR_CONNECT_RO).
Napi::Value ConnectOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string uri;
  bool hasUri;
  auto creds = std::make_shared<Credentials>();
  unsigned int flags = 0;
  if (!ArgOptString(info, 0, "uri", uri, hasUri) ||
      !ArgOptString(info, 1, "user", creds->user, creds->hasUser) ||
      !ArgOptString(info, 2, "password", creds->password, creds->hasPassword) ||
      !ArgUint(info, 3, "flags", flags)) {
    return env.Undefined();
  }
  bool useAuth = info.Length() > 4 && info[4].ToBoolean().Value();
  useAuth = useAuth || creds->hasUser || creds->hasPassword;
  EnsureEventLoop();
  auto result = std::make_shared<virConnectPtr>(nullptr);
  return Run(
      env, {},
      [=]() {
        const char* u = hasUri ? uri.c_str() : nullptr;
        if (useAuth) {
          virConnectAuth auth = {gCredTypes, sizeof(gCredTypes) / sizeof(gCredTypes[0]), nullptr, nullptr};
          if (creds->hasUser || creds->hasPassword) {
            auth.cb = AuthCallback;
            auth.cbdata = creds.get();
          }
          *result = virConnectOpenAuth(u, &auth, flags);
        } else if (flags & VIR_CONNECT_RO) {
          *result = virConnectOpenReadOnly(u);
        } else {
          *result = virConnectOpen(u);
        }
        return *result != nullptr;
      },
      [=](Napi::Env env) -> Napi::Value {
        virConnectPtr c = *result;
        *result = nullptr;
        return NewHandle(env, Kind::Connect, c);
      });
}

// lvConnectClose(conn) → Promise<number>: unregisters the close callback and drops the handle's
// reference; resolves with libvirt's remaining reference count (domains etc. hold references).
Napi::Value ConnectClose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h;
  if (!ArgHandle(info, 0, Kind::Connect, h)) return env.Undefined();
  virConnectPtr conn = static_cast<virConnectPtr>(h->ptr);
  std::shared_ptr<CloseCallbackState> cb = std::move(h->closeCallback);
  h->ptr = nullptr;
  HandleClosed();
  auto remaining = std::make_shared<int>(0);
  return Run(
      env, {},
      [=]() {
        if (cb) {
          virConnectUnregisterCloseCallback(conn, OnConnectionClosed);
          virResetLastError();
        }
        *remaining = virConnectClose(conn);
        return *remaining >= 0;
      },
      [=](Napi::Env env) { return Napi::Number::New(env, *remaining); });
}

Napi::Value StringCall(const Napi::CallbackInfo& info, char* (*fn)(virConnectPtr)) {
  Napi::Env env = info.Env();
  Handle* h;
  if (!ArgHandle(info, 0, Kind::Connect, h)) return env.Undefined();
  virConnectPtr conn = static_cast<virConnectPtr>(h->ptr);
  auto out = std::make_shared<std::string>();
  return Run(
      env, {h},
      [=]() {
        char* s = fn(conn);
        if (!s) return false;
        *out = s;
        free(s);
        return true;
      },
      [=](Napi::Env env) { return Napi::String::New(env, *out); });
}

Napi::Value GetHostname(const Napi::CallbackInfo& info) { return StringCall(info, virConnectGetHostname); }
Napi::Value GetURI(const Napi::CallbackInfo& info) { return StringCall(info, virConnectGetURI); }
// The host's capabilities XML (security models with the qemu process's DAC label among them).
Napi::Value GetCapabilities(const Napi::CallbackInfo& info) { return StringCall(info, virConnectGetCapabilities); }

Napi::Value VersionCall(const Napi::CallbackInfo& info, int (*fn)(virConnectPtr, unsigned long*)) {
  Napi::Env env = info.Env();
  Handle* h;
  if (!ArgHandle(info, 0, Kind::Connect, h)) return env.Undefined();
  virConnectPtr conn = static_cast<virConnectPtr>(h->ptr);
  auto out = std::make_shared<unsigned long>(0);
  return Run(
      env, {h}, [=]() { return fn(conn, out.get()) >= 0; },
      [=](Napi::Env env) { return Napi::Number::New(env, (double)*out); });
}

// Library version of the connected daemon (remote side for remote URIs).
Napi::Value GetLibVersion(const Napi::CallbackInfo& info) { return VersionCall(info, virConnectGetLibVersion); }
// Hypervisor (qemu) version.
Napi::Value GetHypervisorVersion(const Napi::CallbackInfo& info) { return VersionCall(info, virConnectGetVersion); }

Napi::Value IsAlive(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h;
  if (!ArgHandle(info, 0, Kind::Connect, h)) return env.Undefined();
  virConnectPtr conn = static_cast<virConnectPtr>(h->ptr);
  auto out = std::make_shared<int>(0);
  return Run(
      env, {h},
      [=]() {
        *out = virConnectIsAlive(conn);
        return *out >= 0;
      },
      [=](Napi::Env env) { return Napi::Boolean::New(env, *out == 1); });
}

// lvConnectSetKeepAlive(conn, interval, count) → Promise<number> (0 ok, 1 unsupported by peer).
Napi::Value SetKeepAlive(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h;
  int interval, count;
  if (!ArgHandle(info, 0, Kind::Connect, h) || !ArgInt(info, 1, "interval", interval) ||
      !ArgInt(info, 2, "count", count)) {
    return env.Undefined();
  }
  virConnectPtr conn = static_cast<virConnectPtr>(h->ptr);
  auto out = std::make_shared<int>(0);
  return Run(
      env, {h},
      [=]() {
        *out = virConnectSetKeepAlive(conn, interval, (unsigned int)count);
        return *out >= 0;
      },
      [=](Napi::Env env) { return Napi::Number::New(env, *out); });
}

// lvConnectRegisterCloseCallback(conn, fn(reason)) → Promise<void>. One callback per handle.
// The callback does not keep the process alive.
Napi::Value RegisterCloseCallback(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h;
  if (!ArgHandle(info, 0, Kind::Connect, h)) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsFunction()) {
    Napi::TypeError::New(env, "callback must be a function").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (h->closeCallback) {
    Napi::Error::New(env, "a close callback is already registered").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto state = std::make_shared<CloseCallbackState>();
  auto* finalizeRef = new std::shared_ptr<CloseCallbackState>(state);
  state->tsfn = Napi::ThreadSafeFunction::New(
      env, info[1].As<Napi::Function>(), "libvirt close callback", 0, 1, finalizeRef,
      [](Napi::Env, std::shared_ptr<CloseCallbackState>* ref) {
        {
          std::lock_guard<std::mutex> lock((*ref)->mutex);
          (*ref)->alive = false;
        }
        delete ref;
      });
  state->tsfn.Unref(env);
  state->alive = true;
  h->closeCallback = state;
  virConnectPtr conn = static_cast<virConnectPtr>(h->ptr);
  return Run(
      env, {h},
      [=]() {
        auto* opaque = new std::shared_ptr<CloseCallbackState>(state);
        if (virConnectRegisterCloseCallback(conn, OnConnectionClosed, opaque, FreeCloseCallbackOpaque) < 0) {
          // libvirt does not call the free callback when registration fails.
          FreeCloseCallbackOpaque(opaque);
          return false;
        }
        return true;
      },
      [](Napi::Env env) { return env.Undefined(); });
}

Napi::Value DomainsToArray(Napi::Env env, std::vector<virDomainPtr>& doms) {
  Napi::Array arr = Napi::Array::New(env, doms.size());
  for (size_t i = 0; i < doms.size(); i++) arr.Set((uint32_t)i, NewHandle(env, Kind::Domain, doms[i]));
  doms.clear();
  return arr;
}

// lvConnectListAllDomains(conn, flags) → Promise<handle[]>.
Napi::Value ListAllDomains(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h;
  unsigned int flags;
  if (!ArgHandle(info, 0, Kind::Connect, h) || !ArgUint(info, 1, "flags", flags)) return env.Undefined();
  virConnectPtr conn = static_cast<virConnectPtr>(h->ptr);
  auto out = std::make_shared<std::vector<virDomainPtr>>();
  return Run(
      env, {h},
      [=]() {
        virDomainPtr* doms = nullptr;
        int n = virConnectListAllDomains(conn, &doms, flags);
        if (n < 0) return false;
        out->assign(doms, doms + n);
        free(doms);
        return true;
      },
      [=](Napi::Env env) { return DomainsToArray(env, *out); });
}

// Shared shape: (conn, string[, flags]) → domain handle.
Napi::Value DomainFromString(const Napi::CallbackInfo& info, const char* what,
                             std::function<virDomainPtr(virConnectPtr, const char*, unsigned int)> fn) {
  Napi::Env env = info.Env();
  Handle* h;
  std::string arg;
  unsigned int flags;
  if (!ArgHandle(info, 0, Kind::Connect, h) || !ArgString(info, 1, what, arg) || !ArgUint(info, 2, "flags", flags)) {
    return env.Undefined();
  }
  virConnectPtr conn = static_cast<virConnectPtr>(h->ptr);
  auto out = std::make_shared<virDomainPtr>(nullptr);
  return Run(
      env, {h},
      [=]() {
        *out = fn(conn, arg.c_str(), flags);
        return *out != nullptr;
      },
      [=](Napi::Env env) -> Napi::Value {
        virDomainPtr d = *out;
        *out = nullptr;
        return NewHandle(env, Kind::Domain, d);
      });
}

Napi::Value LookupByName(const Napi::CallbackInfo& info) {
  return DomainFromString(info, "name", [](virConnectPtr c, const char* s, unsigned int) {
    return virDomainLookupByName(c, s);
  });
}
Napi::Value LookupByUUID(const Napi::CallbackInfo& info) {
  return DomainFromString(info, "uuid", [](virConnectPtr c, const char* s, unsigned int) {
    return virDomainLookupByUUIDString(c, s);
  });
}
// lvDomainDefineXML(conn, xml, flags) → persistent domain (virDomainDefineXMLFlags).
Napi::Value DefineXML(const Napi::CallbackInfo& info) {
  return DomainFromString(info, "xml", virDomainDefineXMLFlags);
}
// lvDomainCreateXML(conn, xml, flags) → started transient domain.
Napi::Value CreateXML(const Napi::CallbackInfo& info) { return DomainFromString(info, "xml", virDomainCreateXML); }

}  // namespace

void DropConnection(virConnectPtr conn, std::shared_ptr<CloseCallbackState> closeCallback) {
  if (closeCallback) {
    virConnectUnregisterCloseCallback(conn, OnConnectionClosed);
    virResetLastError();
  }
  virConnectClose(conn);
  virResetLastError();
}

void InitConnect(Napi::Env env, Napi::Object exports) {
  exports.Set("lvConnectOpen", Napi::Function::New(env, ConnectOpen, "lvConnectOpen"));
  exports.Set("lvConnectClose", Napi::Function::New(env, ConnectClose, "lvConnectClose"));
  exports.Set("lvConnectGetHostname", Napi::Function::New(env, GetHostname, "lvConnectGetHostname"));
  exports.Set("lvConnectGetURI", Napi::Function::New(env, GetURI, "lvConnectGetURI"));
  exports.Set("lvConnectGetCapabilities", Napi::Function::New(env, GetCapabilities, "lvConnectGetCapabilities"));
  exports.Set("lvConnectGetLibVersion", Napi::Function::New(env, GetLibVersion, "lvConnectGetLibVersion"));
  exports.Set("lvConnectGetVersion", Napi::Function::New(env, GetHypervisorVersion, "lvConnectGetVersion"));
  exports.Set("lvConnectIsAlive", Napi::Function::New(env, IsAlive, "lvConnectIsAlive"));
  exports.Set("lvConnectSetKeepAlive", Napi::Function::New(env, SetKeepAlive, "lvConnectSetKeepAlive"));
  exports.Set("lvConnectRegisterCloseCallback",
              Napi::Function::New(env, RegisterCloseCallback, "lvConnectRegisterCloseCallback"));
  exports.Set("lvConnectListAllDomains", Napi::Function::New(env, ListAllDomains, "lvConnectListAllDomains"));
  exports.Set("lvDomainLookupByName", Napi::Function::New(env, LookupByName, "lvDomainLookupByName"));
  exports.Set("lvDomainLookupByUUIDString", Napi::Function::New(env, LookupByUUID, "lvDomainLookupByUUIDString"));
  exports.Set("lvDomainDefineXML", Napi::Function::New(env, DefineXML, "lvDomainDefineXML"));
  exports.Set("lvDomainCreateXML", Napi::Function::New(env, CreateXML, "lvDomainCreateXML"));
}

}  // namespace lv
