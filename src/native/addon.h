// Registration hooks of the addon's parts; each part adds its functions to `exports`.
#pragma once
#include <napi.h>

void InitLz4(Napi::Env env, Napi::Object exports);
void InitChecksum(Napi::Env env, Napi::Object exports);
void InitFileIo(Napi::Env env, Napi::Object exports);
// libvirt binding (libvirt/*.cc): connections, domains, checkpoints, storage.
void InitLibvirt(Napi::Env env, Napi::Object exports);
