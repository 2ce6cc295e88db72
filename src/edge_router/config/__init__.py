"""Configuration: the schema (`schema`), the compiled model the data plane routes with (`model`),
the compilers of both formats (`compile`, `formats/`), the door every document passes (`load`),
where documents are read from (`sources`), the TTL cache with last-good fallback (`cache`), and
flip/push write-back (`writeback/`, used by the CLI only)."""
