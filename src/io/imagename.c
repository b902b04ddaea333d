/*
 * imagename.c - which file names are images: the one list of extensions that folder scans
 * use (the library's dataset readers and the CLI's image arguments), so both accept the same
 * files. The decoders themselves (image.c) detect the format from the contents, never from the
 * name; this list only decides which files of a folder are taken as images.
 */
#include "core/internal.h"

#include <string.h>
#include <strings.h>

/* The formats image.c decodes, lower case, without the dot. */
static const char *const image_exts[] = {"png", "jpg", "jpeg", "bmp", "ppm",
                                         "pgm", "pbm", "pnm", NULL};

const char *const *uf_image_extensions(void) { return image_exts; }

int uf_is_image_name(const char *name)
{
    if (!name) return 0;
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    const char *dot = strrchr(base, '.');
    if (!dot || dot == base) return 0; /* no extension, or a bare ".png" */
    for (const char *const *e = image_exts; *e; e++)
        if (!strcasecmp(dot + 1, *e)) return 1;
    return 0;
}
