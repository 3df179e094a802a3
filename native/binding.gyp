{
  "targets": [
    {
      "target_name": "ambient_native",
      "sources": ["src/addon.c"],
      "cflags": ["-Wall", "-Wextra", "-O2", "-fvisibility=hidden"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"]
    }
  ]
}
