// The prefetch hint is an inline function in include/prefetch.h; this file gives the target a source.
#include "prefetch.h"
