#ifndef PRESENCELOG_CRC32C_H
#define PRESENCELOG_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/// Extends a CRC-32C (Castagnoli) checksum over `length` bytes at `data`.
/// Start with crc = 0; the function applies the usual pre- and post-inversion.
uint32_t presencelog_crc32c(uint32_t crc, const void *data, size_t length);

/// The same checksum by the table path whatever the machine (for tests: an independent computation).
uint32_t presencelog_crc32c_portable(uint32_t crc, const void *data, size_t length);

/// 1 when the hardware instruction path is in use, 0 for the table path.
int presencelog_crc32c_hardware(void);

#endif
