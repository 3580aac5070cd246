/* ota_decode: check a model.update on a host before sending it to a device.
 *
 *   cc -std=c99 -O2 -o ota_decode ota_decode.c model_update.c
 *   ./ota_decode model.update out.tflite [base.tflite]
 *
 * Decodes with the device's decoder (model_update.c), feeding the update in pieces of a
 * few hundred bytes and writing the chunks as they come, into `out.tflite.part`; renamed
 * to `out.tflite` only when the decoder has checked the file's SHA-256, removed on any
 * error. An update relative to a base file needs that file as the third argument (a device
 * holds it in flash; here it is read into memory). Exit status 0 on success, 1 for a
 * refused update (the decoder's error named), 2 for a usage or file error.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_update.h"

#define MAX_WINDOW (1u << 15)

static uint64_t work[(MU_WORK_BYTES(MAX_WINDOW) + 7) / 8];

static int write_chunk(void *user, const uint8_t *data, size_t length)
{
    return fwrite(data, 1, length, (FILE *)user) == length ? 0 : 1;
}

static const char *reason(int code)
{
    switch (code) {
    case MU_ERR_HEADER: return "not a model update, or its header is invalid";
    case MU_ERR_VERSION: return "a format version this decoder does not read";
    case MU_ERR_TRUNCATED: return "the update is truncated";
    case MU_ERR_CORRUPT: return "the update is corrupt";
    case MU_ERR_CHECKSUM: return "the decoded file does not match the header's SHA-256";
    case MU_ERR_WORK: return "the update needs a larger work buffer";
    case MU_ERR_WRITE: return "could not write the output file";
    case MU_ERR_BASE: return "the update is relative to a base file, and not to this one";
    default: return "unknown error";
    }
}

/* The whole of `path` in a buffer of *length bytes (NULL if it cannot be read). */
static uint8_t *read_file(const char *path, uint32_t *length)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL;
    long size;
    if (f && fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && size < 0x7fffffffL &&
        fseek(f, 0, SEEK_SET) == 0 && (data = malloc(size ? (size_t)size : 1)) != NULL &&
        fread(data, 1, (size_t)size, f) == (size_t)size) {
        *length = (uint32_t)size;
    } else {
        free(data);
        data = NULL;
    }
    if (f) fclose(f);
    return data;
}

static int decode(FILE *in, FILE *out, const uint8_t *base, uint32_t base_length)
{
    uint8_t buffer[333]; /* an odd piece size: the decoder must not care */
    size_t n;
    int status = MU_OK;
    mu_decoder *d = mu_init(work, sizeof work, write_chunk, out);
    if (!d) return MU_ERR_WORK;
    if (base) status = mu_set_base(d, base, base_length);
    while (status == MU_OK && (n = fread(buffer, 1, sizeof buffer, in)) > 0)
        status = mu_feed(d, buffer, n);
    if (status == MU_OK && ferror(in)) return MU_ERR_TRUNCATED;
    return status == MU_OK ? mu_finish(d) : status;
}

int main(int argc, char **argv)
{
    FILE *in, *out;
    char *part;
    uint8_t *base = NULL;
    uint32_t base_length = 0;
    int status;
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s model.update out.tflite [base.tflite]\n", argv[0]);
        return 2;
    }
    if (argc == 4 && !(base = read_file(argv[3], &base_length))) {
        fprintf(stderr, "ota_decode: cannot read %s\n", argv[3]);
        return 2;
    }
    in = fopen(argv[1], "rb");
    if (!in) {
        fprintf(stderr, "ota_decode: cannot read %s\n", argv[1]);
        return 2;
    }
    part = malloc(strlen(argv[2]) + 6);
    if (!part) return 2;
    sprintf(part, "%s.part", argv[2]);
    out = fopen(part, "wb");
    if (!out) {
        fprintf(stderr, "ota_decode: cannot write %s\n", part);
        return 2;
    }
    status = decode(in, out, base, base_length);
    free(base);
    fclose(in);
    if (fclose(out) != 0 && status == MU_OK) status = MU_ERR_WRITE;
    if (status == MU_OK && rename(part, argv[2]) != 0) status = MU_ERR_WRITE;
    if (status != MU_OK) {
        remove(part);
        free(part);
        fprintf(stderr, "ota_decode: %s: %s (error %d); no file written\n", argv[1],
                reason(status), status);
        return 1;
    }
    free(part);
    printf("ota_decode: %s -> %s, checked (SHA-256)\n", argv[1], argv[2]);
    return 0;
}
