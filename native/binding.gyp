{
  "targets": [
    {
      "target_name": "ambient_native",
      "sources": [
        "src/addon.c",
        "src/state.c",
        "src/errors.c",
        "src/args.c",
        "src/values.c",
        "src/netns_switch.c",
        "src/netns.c",
        "src/sockets.c",
        "src/seqpacket.c",
        "src/poll.c",
        "src/splice.c",
        "src/splice_dir.c",
        "src/thread.c"
      ],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2", "-fvisibility=hidden"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"]
    }
  ]
}
