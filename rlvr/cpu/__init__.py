"""CPU-only speed code, imported only when the model runs on the CPU: linear layers on
oneDNN-reordered weights (:mod:`rlvr.cpu.onednn`) and glibc's allocator kept from returning
freed memory to the system (:mod:`rlvr.cpu.allocator`). Measurements: docs/results.md."""
