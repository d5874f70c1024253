// Adler-32 (zlib) for the `.chksum` files of the stream format.
#include <zlib.h>
#include "addon.h"

// adler32(previous: number, buf: Uint8Array, offset?: number, length?: number): number
static Napi::Value Adler32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsTypedArray()) {
    Napi::TypeError::New(env, "adler32(previous, buffer[, offset, length])").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  uint32_t previous = info[0].As<Napi::Number>().Uint32Value();
  Napi::Uint8Array buf = info[1].As<Napi::Uint8Array>();
  size_t offset = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int64Value() : 0;
  size_t length = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Int64Value()
                                                          : buf.ByteLength() - (offset <= buf.ByteLength() ? offset : 0);
  if (offset > buf.ByteLength() || length > buf.ByteLength() - offset) {
    Napi::RangeError::New(env, "adler32: range outside buffer").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  uLong value = previous;
  const Bytef* p = buf.Data() + offset;
  // zlib takes uInt lengths: feed huge ranges in pieces.
  while (length > 0) {
    uInt n = length > 0x40000000u ? 0x40000000u : (uInt)length;
    value = adler32(value, p, n);
    p += n;
    length -= n;
  }
  return Napi::Number::New(env, (double)(uint32_t)value);
}

void InitChecksum(Napi::Env env, Napi::Object exports) {
  exports.Set("adler32", Napi::Function::New(env, Adler32, "adler32"));
}
