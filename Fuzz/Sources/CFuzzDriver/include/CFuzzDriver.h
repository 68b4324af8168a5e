// libFuzzer's driver entry point (compiler-rt FuzzerInterface.h, LLVM 11 and later).
//
// SwiftPM links every executable target with `--defsym main=<Target>_main` and renames
// the Swift entry point to `<Target>_main`, so libFuzzer's own `main` (FuzzerMain.o in
// libclang_rt.fuzzer) is never used. Each fuzz target's main.swift therefore calls
// LLVMFuzzerRunDriver itself with its test function.
#ifndef CFUZZDRIVER_H
#define CFUZZDRIVER_H
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*UserCb)(const uint8_t *Data, size_t Size));

#endif
