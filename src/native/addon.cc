// One native addon for the project: lz4 frames, checksums and libvirt.
#include "addon.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitLz4(env, exports);
  InitChecksum(env, exports);
  InitFileIo(env, exports);
  InitLibvirt(env, exports);
  return exports;
}

NODE_API_MODULE(virtnbd, Init)
