#ifndef PRESENCE_CFUZZING_H
#define PRESENCE_CFUZZING_H

#include <stddef.h>
#include <stdint.h>

/// libFuzzer's driver (libclang_rt.fuzzer_no_main, linked only into fuzzing builds by tools/fuzz.sh):
/// runs the fuzzing loop, or the inputs named in argv, with `callback` as the target.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
