{
  "targets": [
    {
      "target_name": "virtnbd",
      "sources": ["addon.cc", "lz4.cc", "lz4_framing.cc", "checksum.cc", "fileio.cc",
                  "libvirt/common.cc", "libvirt/connect.cc", "libvirt/domain.cc",
                  "libvirt/checkpoint.cc", "libvirt/storage.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                    "<!@(pkg-config --cflags libvirt libvirt-qemu)"],
      "libraries": ["-llz4", "-ldeflate", "-lz", "<!@(pkg-config --libs libvirt libvirt-qemu)"]
    }
  ]
}
