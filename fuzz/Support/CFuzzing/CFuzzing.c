// Declarations only (include/CFuzzing.h): libFuzzer's driver, called by FuzzSupport in fuzzing builds.
#include "CFuzzing.h"
