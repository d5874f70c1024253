// Checkpoints: create (incl. REDEFINE/REDEFINE_VALIDATE/QUIESCE), list, lookup, XML, delete, parent, children.
#include "common.h"

namespace lv {
namespace {

virDomainCheckpointPtr Cp(Handle* h) { return static_cast<virDomainCheckpointPtr>(h->ptr); }

Napi::Value NewCheckpointHandle(Napi::Env env, std::shared_ptr<virDomainCheckpointPtr> out) {
  virDomainCheckpointPtr cp = *out;
  *out = nullptr;
  return NewHandle(env, Kind::Checkpoint, cp);
}

// (dom, string, flags) → checkpoint handle.
Napi::Value FromDomain(const Napi::CallbackInfo& info, const char* what,
                       virDomainCheckpointPtr (*fn)(virDomainPtr, const char*, unsigned int)) {
  Napi::Env env = info.Env();
  Handle* h;
  std::string arg;
  unsigned int flags;
  if (!ArgHandle(info, 0, Kind::Domain, h) || !ArgString(info, 1, what, arg) || !ArgUint(info, 2, "flags", flags)) {
    return env.Undefined();
  }
  virDomainPtr dom = static_cast<virDomainPtr>(h->ptr);
  auto out = std::make_shared<virDomainCheckpointPtr>(nullptr);
  return Run(
      env, {h},
      [=]() {
        *out = fn(dom, arg.c_str(), flags);
        return *out != nullptr;
      },
      [=](Napi::Env env) { return NewCheckpointHandle(env, out); });
}

// lvDomainCheckpointCreateXML(dom, xml, flags) → checkpoint handle.
Napi::Value CreateXML(const Napi::CallbackInfo& info) {
  return FromDomain(info, "xml", virDomainCheckpointCreateXML);
}
// lvDomainCheckpointLookupByName(dom, name, flags) → checkpoint handle.
Napi::Value LookupByName(const Napi::CallbackInfo& info) {
  return FromDomain(info, "name", virDomainCheckpointLookupByName);
}

// (handle of `kind`, flags) → checkpoint handles, listed by `fn`: a domain's checkpoints or a
// checkpoint's children (one call each, whatever the number).
template <typename Owner>
Napi::Value ListCheckpoints(const Napi::CallbackInfo& info, Kind kind,
                            int (*fn)(Owner, virDomainCheckpointPtr**, unsigned int)) {
  Napi::Env env = info.Env();
  Handle* h;
  unsigned int flags;
  if (!ArgHandle(info, 0, kind, h) || !ArgUint(info, 1, "flags", flags)) return env.Undefined();
  Owner owner = static_cast<Owner>(h->ptr);
  auto out = std::make_shared<std::vector<virDomainCheckpointPtr>>();
  return Run(
      env, {h},
      [=]() {
        virDomainCheckpointPtr* cps = nullptr;
        int n = fn(owner, &cps, flags);
        if (n < 0) return false;
        out->assign(cps, cps + n);
        free(cps);
        return true;
      },
      [=](Napi::Env env) {
        Napi::Array arr = Napi::Array::New(env, out->size());
        for (size_t i = 0; i < out->size(); i++) arr.Set((uint32_t)i, NewHandle(env, Kind::Checkpoint, (*out)[i]));
        out->clear();
        return arr;
      });
}

// lvDomainListAllCheckpoints(dom, flags) → checkpoint handles.
Napi::Value ListAll(const Napi::CallbackInfo& info) {
  return ListCheckpoints<virDomainPtr>(info, Kind::Domain, virDomainListAllCheckpoints);
}

// lvCheckpointListAllChildren(cp, flags) → checkpoint handles (DESCENDANTS: theirs too).
Napi::Value ListAllChildren(const Napi::CallbackInfo& info) {
  return ListCheckpoints<virDomainCheckpointPtr>(info, Kind::Checkpoint, virDomainCheckpointListAllChildren);
}

// lvCheckpointGetName(cp) → string. Cached in the object: no I/O, synchronous.
Napi::Value GetName(const Napi::CallbackInfo& info) {
  Handle* h;
  if (!ArgHandle(info, 0, Kind::Checkpoint, h)) return info.Env().Undefined();
  const char* name = virDomainCheckpointGetName(Cp(h));
  return Napi::String::New(info.Env(), name ? name : "");
}

// lvCheckpointGetXMLDesc(cp, flags) → string.
Napi::Value GetXMLDesc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h;
  unsigned int flags;
  if (!ArgHandle(info, 0, Kind::Checkpoint, h) || !ArgUint(info, 1, "flags", flags)) return env.Undefined();
  virDomainCheckpointPtr cp = Cp(h);
  auto out = std::make_shared<std::string>();
  return Run(
      env, {h},
      [=]() {
        char* s = virDomainCheckpointGetXMLDesc(cp, flags);
        if (!s) return false;
        *out = s;
        free(s);
        return true;
      },
      [=](Napi::Env env) { return Napi::String::New(env, *out); });
}

// lvCheckpointDelete(cp, flags) → Promise<void>.
Napi::Value Delete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h;
  unsigned int flags;
  if (!ArgHandle(info, 0, Kind::Checkpoint, h) || !ArgUint(info, 1, "flags", flags)) return env.Undefined();
  virDomainCheckpointPtr cp = Cp(h);
  return Run(
      env, {h}, [=]() { return virDomainCheckpointDelete(cp, flags) >= 0; },
      [](Napi::Env env) { return env.Undefined(); });
}

// lvCheckpointGetParent(cp, flags) → checkpoint handle (rejects with code 103 for a root).
Napi::Value GetParent(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h;
  unsigned int flags;
  if (!ArgHandle(info, 0, Kind::Checkpoint, h) || !ArgUint(info, 1, "flags", flags)) return env.Undefined();
  virDomainCheckpointPtr cp = Cp(h);
  auto out = std::make_shared<virDomainCheckpointPtr>(nullptr);
  return Run(
      env, {h},
      [=]() {
        *out = virDomainCheckpointGetParent(cp, flags);
        return *out != nullptr;
      },
      [=](Napi::Env env) { return NewCheckpointHandle(env, out); });
}

}  // namespace

void InitCheckpoint(Napi::Env env, Napi::Object exports) {
  exports.Set("lvDomainCheckpointCreateXML", Napi::Function::New(env, CreateXML, "lvDomainCheckpointCreateXML"));
  exports.Set("lvDomainCheckpointLookupByName",
              Napi::Function::New(env, LookupByName, "lvDomainCheckpointLookupByName"));
  exports.Set("lvDomainListAllCheckpoints", Napi::Function::New(env, ListAll, "lvDomainListAllCheckpoints"));
  exports.Set("lvCheckpointGetName", Napi::Function::New(env, GetName, "lvCheckpointGetName"));
  exports.Set("lvCheckpointGetXMLDesc", Napi::Function::New(env, GetXMLDesc, "lvCheckpointGetXMLDesc"));
  exports.Set("lvCheckpointDelete", Napi::Function::New(env, Delete, "lvCheckpointDelete"));
  exports.Set("lvCheckpointGetParent", Napi::Function::New(env, GetParent, "lvCheckpointGetParent"));
  exports.Set("lvCheckpointListAllChildren", Napi::Function::New(env, ListAllChildren, "lvCheckpointListAllChildren"));
}

}  // namespace lv
