// Storage pools and volumes: lookups, pool refresh, volume path.
#include "common.h"

namespace lv {
namespace {

template <Kind ParentKind, Kind ChildKind, typename Parent, typename Child>
Napi::Value Lookup(const Napi::CallbackInfo& info, const char* what, Child (*fn)(Parent, const char*)) {
  Napi::Env env = info.Env();
  Handle* h;
  std::string arg;
  if (!ArgHandle(info, 0, ParentKind, h) || !ArgString(info, 1, what, arg)) return env.Undefined();
  Parent parent = static_cast<Parent>(h->ptr);
  auto out = std::make_shared<Child>(nullptr);
  return Run(
      env, {h},
      [=]() {
        *out = fn(parent, arg.c_str());
        return *out != nullptr;
      },
      [=](Napi::Env env) -> Napi::Value {
        Child c = *out;
        *out = nullptr;
        return NewHandle(env, ChildKind, c);
      });
}

// lvStoragePoolLookupByName(conn, name) → pool handle.
Napi::Value PoolByName(const Napi::CallbackInfo& info) {
  return Lookup<Kind::Connect, Kind::StoragePool>(info, "name", virStoragePoolLookupByName);
}
// lvStoragePoolLookupByTargetPath(conn, path) → pool handle.
Napi::Value PoolByTargetPath(const Napi::CallbackInfo& info) {
  return Lookup<Kind::Connect, Kind::StoragePool>(info, "path", virStoragePoolLookupByTargetPath);
}
// lvStorageVolLookupByName(pool, name) → volume handle.
Napi::Value VolByName(const Napi::CallbackInfo& info) {
  return Lookup<Kind::StoragePool, Kind::StorageVol>(info, "name", virStorageVolLookupByName);
}
// lvStorageVolLookupByPath(conn, path) → volume handle.
Napi::Value VolByPath(const Napi::CallbackInfo& info) {
  return Lookup<Kind::Connect, Kind::StorageVol>(info, "path", virStorageVolLookupByPath);
}

// lvStoragePoolGetName(pool) → string (cached, synchronous).
Napi::Value PoolGetName(const Napi::CallbackInfo& info) {
  Handle* h;
  if (!ArgHandle(info, 0, Kind::StoragePool, h)) return info.Env().Undefined();
  const char* name = virStoragePoolGetName(static_cast<virStoragePoolPtr>(h->ptr));
  return Napi::String::New(info.Env(), name ? name : "");
}

// lvStorageVolGetName(vol) → string (cached, synchronous).
Napi::Value VolGetName(const Napi::CallbackInfo& info) {
  Handle* h;
  if (!ArgHandle(info, 0, Kind::StorageVol, h)) return info.Env().Undefined();
  const char* name = virStorageVolGetName(static_cast<virStorageVolPtr>(h->ptr));
  return Napi::String::New(info.Env(), name ? name : "");
}

// lvStoragePoolRefresh(pool, flags) → Promise<void>.
Napi::Value PoolRefresh(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h;
  unsigned int flags;
  if (!ArgHandle(info, 0, Kind::StoragePool, h) || !ArgUint(info, 1, "flags", flags)) return env.Undefined();
  virStoragePoolPtr pool = static_cast<virStoragePoolPtr>(h->ptr);
  return Run(
      env, {h}, [=]() { return virStoragePoolRefresh(pool, flags) >= 0; },
      [](Napi::Env env) { return env.Undefined(); });
}

// lvStorageVolGetPath(vol) → Promise<string>.
Napi::Value VolGetPath(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h;
  if (!ArgHandle(info, 0, Kind::StorageVol, h)) return env.Undefined();
  virStorageVolPtr vol = static_cast<virStorageVolPtr>(h->ptr);
  auto out = std::make_shared<std::string>();
  return Run(
      env, {h},
      [=]() {
        char* s = virStorageVolGetPath(vol);
        if (!s) return false;
        *out = s;
        free(s);
        return true;
      },
      [=](Napi::Env env) { return Napi::String::New(env, *out); });
}

}  // namespace

void InitStorage(Napi::Env env, Napi::Object exports) {
  exports.Set("lvStoragePoolLookupByName", Napi::Function::New(env, PoolByName, "lvStoragePoolLookupByName"));
  exports.Set("lvStoragePoolLookupByTargetPath",
              Napi::Function::New(env, PoolByTargetPath, "lvStoragePoolLookupByTargetPath"));
  exports.Set("lvStoragePoolGetName", Napi::Function::New(env, PoolGetName, "lvStoragePoolGetName"));
  exports.Set("lvStoragePoolRefresh", Napi::Function::New(env, PoolRefresh, "lvStoragePoolRefresh"));
  exports.Set("lvStorageVolLookupByName", Napi::Function::New(env, VolByName, "lvStorageVolLookupByName"));
  exports.Set("lvStorageVolLookupByPath", Napi::Function::New(env, VolByPath, "lvStorageVolLookupByPath"));
  exports.Set("lvStorageVolGetName", Napi::Function::New(env, VolGetName, "lvStorageVolGetName"));
  exports.Set("lvStorageVolGetPath", Napi::Function::New(env, VolGetPath, "lvStorageVolGetPath"));
}

}  // namespace lv
