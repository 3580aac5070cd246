/* model_update.h: decode a model.update into the TFLite file it rebuilds, on a device.
 *
 * Portable C99, no heap, no library calls beyond <stdint.h>/<stddef.h>/<string.h>. The
 * decoder lives in a work buffer the caller provides (MU_WORK_BYTES(window), stated by the
 * update's header: 2048 bytes of state plus the LZ77 window, 1 KB by default). Input is
 * fed in pieces of any size as it arrives; the rebuilt file comes out through the write
 * callback in chunks of the window's size (1 KB by default; the last chunk shorter), in
 * order, so a device can write flash page by page; the callback must be done with a chunk
 * when it returns (the decoder then overwrites it). Format: docs/ota-format.md of compression-search.
 *
 *   static uint64_t work[(MU_STATE_BYTES + 1024) / 8];
 *   mu_decoder *d = mu_init(work, sizeof work, write_flash, &flash);
 *   while (radio_has_data()) if (mu_feed(d, buf, n) != MU_OK) goto fail;
 *   if (mu_finish(d) != MU_OK) goto fail;    -- the file's SHA-256 matched: use it
 *
 * An update relative to a base file (format version 4: the device file a device already
 * holds, e.g. the running model in memory-mapped flash) needs that base: call
 * mu_set_base(d, base, base_length) after mu_init and before feeding. The decoder checks
 * its length and SHA-256 against the header (MU_ERR_BASE otherwise) and only reads it.
 *
 * Bytes written before mu_finish returns MU_OK are not yet checked: write them to a
 * staging area and use them only once mu_finish has returned MU_OK. Every error is
 * final (later calls return it again); the decoder never reads or writes outside its
 * work buffer and the caller's input, whatever the input holds.
 */
#ifndef MODEL_UPDATE_H
#define MODEL_UPDATE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MU_HEADER_BYTES 48
/* An update relative to a base file: the header goes on with the base's length and
 * SHA-256. */
#define MU_RELATIVE_HEADER_BYTES 84
#define MU_FORMAT_VERSION 3
#define MU_FORMAT_RELATIVE 4
/* The decoder's state besides the window: an upper bound on every platform. */
#define MU_STATE_BYTES 2048
#define MU_WORK_BYTES(window) (MU_STATE_BYTES + (window))

#define MU_OK 0
#define MU_ERR_HEADER (-1)    /* not a model update, or its header is invalid */
#define MU_ERR_VERSION (-2)   /* a format version this decoder does not read */
#define MU_ERR_TRUNCATED (-3) /* the update ends before the file is complete */
#define MU_ERR_CORRUPT (-4)   /* the coded stream is invalid, or bytes follow it */
#define MU_ERR_CHECKSUM (-5)  /* the rebuilt file's SHA-256 is not the header's */
#define MU_ERR_WORK (-6)      /* the work buffer is smaller than the header asks */
#define MU_ERR_WRITE (-7)     /* the write callback returned non-zero */
#define MU_ERR_BASE (-8)      /* a relative update, and no base or not the one it names */

/* Receives the next `length` bytes of the rebuilt file; returns 0, or non-zero to stop
 * decoding (mu_feed / mu_finish then return MU_ERR_WRITE). */
typedef int (*mu_write_fn)(void *user, const uint8_t *data, size_t length);

typedef struct mu_decoder mu_decoder;

/* Sets up a decoder in `work` (aligned to 8 bytes, `work_bytes` long); NULL if it is
 * smaller than MU_STATE_BYTES + 256 or misaligned. */
mu_decoder *mu_init(void *work, size_t work_bytes, mu_write_fn write, void *user);
/* The base file a relative update was made from (read only, never past `length`), given
 * after mu_init and before the first mu_feed; MU_OK, or MU_ERR_BASE if it comes later. */
int mu_set_base(mu_decoder *d, const uint8_t *base, uint32_t length);
/* Feeds the next `length` bytes of the update; MU_OK or an error code. */
int mu_feed(mu_decoder *d, const uint8_t *data, size_t length);
/* All input fed: decodes the rest, writes the last chunk and checks the SHA-256. */
int mu_finish(mu_decoder *d);
/* The device file's length and SHA-256 as the header states them (once fed). */
uint32_t mu_file_length(const mu_decoder *d);

#ifdef __cplusplus
}
#endif
#endif /* MODEL_UPDATE_H */
