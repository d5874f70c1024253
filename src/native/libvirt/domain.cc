// Domain calls: identity, XML, state, lifecycle, autostart, backup jobs, job/block info,
// guest agent (freeze/thaw, guest info, raw agent commands) and qemu monitor commands.
#include <libvirt/libvirt-qemu.h>

#include "common.h"

namespace lv {
namespace {

virDomainPtr Dom(Handle* h) { return static_cast<virDomainPtr>(h->ptr); }

// Shape (dom[, flags]) → number; the libvirt call returns < 0 on failure.
Napi::Value IntCall(const Napi::CallbackInfo& info, std::function<int(virDomainPtr, unsigned int)> fn) {
  Napi::Env env = info.Env();
  Handle* h;
  unsigned int flags;
  if (!ArgHandle(info, 0, Kind::Domain, h) || !ArgUint(info, 1, "flags", flags)) return env.Undefined();
  virDomainPtr dom = Dom(h);
  auto out = std::make_shared<int>(0);
  return Run(
      env, {h},
      [=]() {
        *out = fn(dom, flags);
        return *out >= 0;
      },
      [=](Napi::Env env) { return Napi::Number::New(env, *out); });
}

// Shape (dom[, flags]) → string; the libvirt call returns a malloc'd string or NULL.
Napi::Value StringCall(const Napi::CallbackInfo& info, std::function<char*(virDomainPtr, unsigned int)> fn) {
  Napi::Env env = info.Env();
  Handle* h;
  unsigned int flags;
  if (!ArgHandle(info, 0, Kind::Domain, h) || !ArgUint(info, 1, "flags", flags)) return env.Undefined();
  virDomainPtr dom = Dom(h);
  auto out = std::make_shared<std::string>();
  return Run(
      env, {h},
      [=]() {
        char* s = fn(dom, flags);
        if (!s) return false;
        *out = s;
        free(s);
        return true;
      },
      [=](Napi::Env env) { return Napi::String::New(env, *out); });
}

// lvDomainGetName(dom) → string. Cached in the object by libvirt: no I/O, synchronous.
Napi::Value GetName(const Napi::CallbackInfo& info) {
  Handle* h;
  if (!ArgHandle(info, 0, Kind::Domain, h)) return info.Env().Undefined();
  const char* name = virDomainGetName(Dom(h));
  return Napi::String::New(info.Env(), name ? name : "");
}

// lvDomainGetUUIDString(dom) → string. Cached in the object: no I/O, synchronous.
Napi::Value GetUUIDString(const Napi::CallbackInfo& info) {
  Handle* h;
  if (!ArgHandle(info, 0, Kind::Domain, h)) return info.Env().Undefined();
  char buf[VIR_UUID_STRING_BUFLEN] = {0};
  if (virDomainGetUUIDString(Dom(h), buf) < 0) {
    virResetLastError();
    return Napi::String::New(info.Env(), "");
  }
  return Napi::String::New(info.Env(), buf);
}

Napi::Value GetXMLDesc(const Napi::CallbackInfo& info) { return StringCall(info, virDomainGetXMLDesc); }

// lvDomainGetState(dom) → { state, reason }.
Napi::Value GetState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h;
  if (!ArgHandle(info, 0, Kind::Domain, h)) return env.Undefined();
  virDomainPtr dom = Dom(h);
  auto out = std::make_shared<std::pair<int, int>>(0, 0);
  return Run(
      env, {h}, [=]() { return virDomainGetState(dom, &out->first, &out->second, 0) >= 0; },
      [=](Napi::Env env) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("state", out->first);
        o.Set("reason", out->second);
        return o;
      });
}

Napi::Value IsActive(const Napi::CallbackInfo& info) {
  return IntCall(info, [](virDomainPtr d, unsigned int) { return virDomainIsActive(d); });
}
Napi::Value IsPersistent(const Napi::CallbackInfo& info) {
  return IntCall(info, [](virDomainPtr d, unsigned int) { return virDomainIsPersistent(d); });
}
Napi::Value Create(const Napi::CallbackInfo& info) { return IntCall(info, virDomainCreateWithFlags); }
Napi::Value Destroy(const Napi::CallbackInfo& info) { return IntCall(info, virDomainDestroyFlags); }
Napi::Value Shutdown(const Napi::CallbackInfo& info) { return IntCall(info, virDomainShutdownFlags); }
Napi::Value Suspend(const Napi::CallbackInfo& info) {
  return IntCall(info, [](virDomainPtr d, unsigned int) { return virDomainSuspend(d); });
}
Napi::Value Resume(const Napi::CallbackInfo& info) {
  return IntCall(info, [](virDomainPtr d, unsigned int) { return virDomainResume(d); });
}
Napi::Value Undefine(const Napi::CallbackInfo& info) { return IntCall(info, virDomainUndefineFlags); }
Napi::Value AbortJob(const Napi::CallbackInfo& info) {
  return IntCall(info, [](virDomainPtr d, unsigned int) { return virDomainAbortJob(d); });
}
Napi::Value GetAutostart(const Napi::CallbackInfo& info) {
  return IntCall(info, [](virDomainPtr d, unsigned int) {
    int autostart = 0;
    if (virDomainGetAutostart(d, &autostart) < 0) return -1;
    return autostart;
  });
}
// lvDomainSetAutostart(dom, 0|1).
Napi::Value SetAutostart(const Napi::CallbackInfo& info) {
  return IntCall(info, [](virDomainPtr d, unsigned int on) { return virDomainSetAutostart(d, on ? 1 : 0); });
}

// lvDomainBackupBegin(dom, backupXml, checkpointXml|null, flags) → Promise<number>.
Napi::Value BackupBegin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h;
  std::string backupXml, checkpointXml;
  bool hasCheckpoint;
  unsigned int flags;
  if (!ArgHandle(info, 0, Kind::Domain, h) || !ArgString(info, 1, "backupXml", backupXml) ||
      !ArgOptString(info, 2, "checkpointXml", checkpointXml, hasCheckpoint) || !ArgUint(info, 3, "flags", flags)) {
    return env.Undefined();
  }
  virDomainPtr dom = Dom(h);
  auto out = std::make_shared<int>(0);
  return Run(
      env, {h},
      [=]() {
        *out = virDomainBackupBegin(dom, backupXml.c_str(), hasCheckpoint ? checkpointXml.c_str() : nullptr, flags);
        return *out >= 0;
      },
      [=](Napi::Env env) { return Napi::Number::New(env, *out); });
}

// lvDomainBackupGetXMLDesc(dom, flags) → the running backup job XML.
Napi::Value BackupGetXMLDesc(const Napi::CallbackInfo& info) {
  return StringCall(info, virDomainBackupGetXMLDesc);
}

// lvDomainGetJobInfo(dom) → virDomainJobInfo as an object.
Napi::Value GetJobInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h;
  if (!ArgHandle(info, 0, Kind::Domain, h)) return env.Undefined();
  virDomainPtr dom = Dom(h);
  auto out = std::make_shared<virDomainJobInfo>();
  return Run(
      env, {h}, [=]() { return virDomainGetJobInfo(dom, out.get()) >= 0; },
      [=](Napi::Env env) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("type", out->type);
        o.Set("timeElapsed", (double)out->timeElapsed);
        o.Set("timeRemaining", (double)out->timeRemaining);
        o.Set("dataTotal", (double)out->dataTotal);
        o.Set("dataProcessed", (double)out->dataProcessed);
        o.Set("dataRemaining", (double)out->dataRemaining);
        o.Set("memTotal", (double)out->memTotal);
        o.Set("memProcessed", (double)out->memProcessed);
        o.Set("memRemaining", (double)out->memRemaining);
        o.Set("fileTotal", (double)out->fileTotal);
        o.Set("fileProcessed", (double)out->fileProcessed);
        o.Set("fileRemaining", (double)out->fileRemaining);
        return o;
      });
}

// lvDomainGetJobStats(dom, flags) → { type, params: {field: value} }.
Napi::Value GetJobStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h;
  unsigned int flags;
  if (!ArgHandle(info, 0, Kind::Domain, h) || !ArgUint(info, 1, "flags", flags)) return env.Undefined();
  virDomainPtr dom = Dom(h);
  auto type = std::make_shared<int>(0);
  auto params = std::make_shared<TypedParams>();
  return Run(
      env, {h},
      [=]() {
        virTypedParameterPtr p = nullptr;
        int n = 0;
        if (virDomainGetJobStats(dom, type.get(), &p, &n, flags) < 0) return false;
        *params = CopyTypedParams(p, n);
        virTypedParamsFree(p, n);
        return true;
      },
      [=](Napi::Env env) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("type", *type);
        o.Set("params", TypedParamsToObject(env, *params));
        return o;
      });
}

// lvDomainGetBlockInfo(dom, disk, flags) → { capacity, allocation, physical }.
Napi::Value GetBlockInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h;
  std::string disk;
  unsigned int flags;
  if (!ArgHandle(info, 0, Kind::Domain, h) || !ArgString(info, 1, "disk", disk) || !ArgUint(info, 2, "flags", flags)) {
    return env.Undefined();
  }
  virDomainPtr dom = Dom(h);
  auto out = std::make_shared<virDomainBlockInfo>();
  return Run(
      env, {h}, [=]() { return virDomainGetBlockInfo(dom, disk.c_str(), out.get(), flags) >= 0; },
      [=](Napi::Env env) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("capacity", (double)out->capacity);
        o.Set("allocation", (double)out->allocation);
        o.Set("physical", (double)out->physical);
        return o;
      });
}

// lvDomainGetBlockJobInfo(dom, disk, flags) → { type, bandwidth, cur, end } or null (no job).
Napi::Value GetBlockJobInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h;
  std::string disk;
  unsigned int flags;
  if (!ArgHandle(info, 0, Kind::Domain, h) || !ArgString(info, 1, "disk", disk) || !ArgUint(info, 2, "flags", flags)) {
    return env.Undefined();
  }
  virDomainPtr dom = Dom(h);
  auto out = std::make_shared<virDomainBlockJobInfo>();
  auto found = std::make_shared<int>(0);
  return Run(
      env, {h},
      [=]() {
        *found = virDomainGetBlockJobInfo(dom, disk.c_str(), out.get(), flags);
        return *found >= 0;
      },
      [=](Napi::Env env) -> Napi::Value {
        if (*found == 0) return env.Null();
        Napi::Object o = Napi::Object::New(env);
        o.Set("type", out->type);
        o.Set("bandwidth", (double)out->bandwidth);
        o.Set("cur", (double)out->cur);
        o.Set("end", (double)out->end);
        return o;
      });
}

// Shape (dom, disk, flags) → number: block job calls on one disk.
Napi::Value DiskCall(const Napi::CallbackInfo& info, std::function<int(virDomainPtr, const char*, unsigned int)> fn) {
  Napi::Env env = info.Env();
  Handle* h;
  std::string disk;
  unsigned int flags;
  if (!ArgHandle(info, 0, Kind::Domain, h) || !ArgString(info, 1, "disk", disk) || !ArgUint(info, 2, "flags", flags)) {
    return env.Undefined();
  }
  virDomainPtr dom = Dom(h);
  auto out = std::make_shared<int>(0);
  return Run(
      env, {h},
      [=]() {
        *out = fn(dom, disk.c_str(), flags);
        return *out >= 0;
      },
      [=](Napi::Env env) { return Napi::Number::New(env, *out); });
}

// lvDomainBlockPull(dom, disk, bandwidthMiBs, flags): copy the backing chain's data into the
// disk's top image (bandwidth in MiB/s, 0: unlimited); the job ends with the backing dropped.
Napi::Value BlockPull(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h;
  std::string disk;
  unsigned int bandwidth, flags;
  if (!ArgHandle(info, 0, Kind::Domain, h) || !ArgString(info, 1, "disk", disk) || !ArgUint(info, 2, "bandwidth", bandwidth) ||
      !ArgUint(info, 3, "flags", flags)) {
    return env.Undefined();
  }
  virDomainPtr dom = Dom(h);
  auto out = std::make_shared<int>(0);
  return Run(
      env, {h},
      [=]() {
        *out = virDomainBlockPull(dom, disk.c_str(), bandwidth, flags);
        return *out >= 0;
      },
      [=](Napi::Env env) { return Napi::Number::New(env, *out); });
}
// lvDomainBlockJobAbort(dom, disk, flags).
Napi::Value BlockJobAbort(const Napi::CallbackInfo& info) { return DiskCall(info, virDomainBlockJobAbort); }

// lvDomainFSFreeze / lvDomainFSThaw(dom, mountpoints[]|null, flags) → number of filesystems.
Napi::Value FreezeThaw(const Napi::CallbackInfo& info, bool freeze) {
  Napi::Env env = info.Env();
  Handle* h;
  std::vector<std::string> mounts;
  unsigned int flags;
  if (!ArgHandle(info, 0, Kind::Domain, h) || !ArgStringArray(info, 1, "mountpoints", mounts) ||
      !ArgUint(info, 2, "flags", flags)) {
    return env.Undefined();
  }
  virDomainPtr dom = Dom(h);
  auto out = std::make_shared<int>(0);
  return Run(
      env, {h},
      [=]() {
        std::vector<const char*> ptrs;
        for (const auto& m : mounts) ptrs.push_back(m.c_str());
        const char** list = ptrs.empty() ? nullptr : ptrs.data();
        *out = freeze ? virDomainFSFreeze(dom, list, (unsigned int)ptrs.size(), flags)
                      : virDomainFSThaw(dom, list, (unsigned int)ptrs.size(), flags);
        return *out >= 0;
      },
      [=](Napi::Env env) { return Napi::Number::New(env, *out); });
}
Napi::Value FSFreeze(const Napi::CallbackInfo& info) { return FreezeThaw(info, true); }
Napi::Value FSThaw(const Napi::CallbackInfo& info) { return FreezeThaw(info, false); }

// lvDomainGetGuestInfo(dom, types, flags) → { "os.id": "...", "hostname": "...", ... }.
Napi::Value GetGuestInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h;
  unsigned int types, flags;
  if (!ArgHandle(info, 0, Kind::Domain, h) || !ArgUint(info, 1, "types", types) || !ArgUint(info, 2, "flags", flags)) {
    return env.Undefined();
  }
  virDomainPtr dom = Dom(h);
  auto params = std::make_shared<TypedParams>();
  return Run(
      env, {h},
      [=]() {
        virTypedParameterPtr p = nullptr;
        int n = 0;
        if (virDomainGetGuestInfo(dom, types, &p, &n, flags) < 0) return false;
        *params = CopyTypedParams(p, n);
        virTypedParamsFree(p, n);
        return true;
      },
      [=](Napi::Env env) { return TypedParamsToObject(env, *params); });
}

// lvDomainQemuAgentCommand(dom, json, timeout, flags) → reply JSON string.
Napi::Value QemuAgentCommand(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h;
  std::string cmd;
  int timeout;
  unsigned int flags;
  if (!ArgHandle(info, 0, Kind::Domain, h) || !ArgString(info, 1, "command", cmd) ||
      !ArgInt(info, 2, "timeout", timeout) || !ArgUint(info, 3, "flags", flags)) {
    return env.Undefined();
  }
  virDomainPtr dom = Dom(h);
  auto out = std::make_shared<std::string>();
  return Run(
      env, {h},
      [=]() {
        char* s = virDomainQemuAgentCommand(dom, cmd.c_str(), timeout, flags);
        if (!s) return false;
        *out = s;
        free(s);
        return true;
      },
      [=](Napi::Env env) { return Napi::String::New(env, *out); });
}

// lvDomainQemuMonitorCommand(dom, cmd, flags) → reply (HMP text with flag 1, else QMP JSON).
Napi::Value QemuMonitorCommand(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle* h;
  std::string cmd;
  unsigned int flags;
  if (!ArgHandle(info, 0, Kind::Domain, h) || !ArgString(info, 1, "command", cmd) || !ArgUint(info, 2, "flags", flags)) {
    return env.Undefined();
  }
  virDomainPtr dom = Dom(h);
  auto out = std::make_shared<std::string>();
  return Run(
      env, {h},
      [=]() {
        char* s = nullptr;
        if (virDomainQemuMonitorCommand(dom, cmd.c_str(), &s, flags) < 0) return false;
        *out = s ? s : "";
        free(s);
        return true;
      },
      [=](Napi::Env env) { return Napi::String::New(env, *out); });
}

}  // namespace

void InitDomain(Napi::Env env, Napi::Object exports) {
  struct Entry {
    const char* name;
    Napi::Value (*fn)(const Napi::CallbackInfo&);
  };
  const Entry entries[] = {
      {"lvDomainGetName", GetName},
      {"lvDomainGetUUIDString", GetUUIDString},
      {"lvDomainGetXMLDesc", GetXMLDesc},
      {"lvDomainGetState", GetState},
      {"lvDomainIsActive", IsActive},
      {"lvDomainIsPersistent", IsPersistent},
      {"lvDomainCreate", Create},
      {"lvDomainDestroy", Destroy},
      {"lvDomainShutdown", Shutdown},
      {"lvDomainSuspend", Suspend},
      {"lvDomainResume", Resume},
      {"lvDomainUndefine", Undefine},
      {"lvDomainGetAutostart", GetAutostart},
      {"lvDomainSetAutostart", SetAutostart},
      {"lvDomainBackupBegin", BackupBegin},
      {"lvDomainBackupGetXMLDesc", BackupGetXMLDesc},
      {"lvDomainAbortJob", AbortJob},
      {"lvDomainGetJobInfo", GetJobInfo},
      {"lvDomainGetJobStats", GetJobStats},
      {"lvDomainGetBlockInfo", GetBlockInfo},
      {"lvDomainGetBlockJobInfo", GetBlockJobInfo},
      {"lvDomainBlockPull", BlockPull},
      {"lvDomainBlockJobAbort", BlockJobAbort},
      {"lvDomainFSFreeze", FSFreeze},
      {"lvDomainFSThaw", FSThaw},
      {"lvDomainGetGuestInfo", GetGuestInfo},
      {"lvDomainQemuAgentCommand", QemuAgentCommand},
      {"lvDomainQemuMonitorCommand", QemuMonitorCommand},
  };
  for (const auto& e : entries) exports.Set(e.name, Napi::Function::New(env, e.fn, e.name));
}

}  // namespace lv
