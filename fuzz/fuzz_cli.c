/*
 * fuzz_cli.c - libFuzzer harness for the CLI's image-list reader: cli_expand_images of
 * tools/cli_common.c given a list file (.txt: one path per line, '#' comments, blank
 * lines, labels after the path ignored; relative paths taken against the list's folder).
 *
 * The CLI is not part of the library: this harness links the CLI's internal archive
 * (build-fuzz/libufcli.a, see the Makefile) and declares what it calls through tools/cli.h.
 * The input is written as list.txt in a private temporary folder made once per process.
 * cli_error prints to stderr, which is only noise here. Replayed over fuzz/corpus/cli and
 * fuzz/regress/cli by tests/test_fuzz_regress.c.
 */
#include "../tools/cli.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_cli_list[96]; /* <tmpdir>/list.txt, "" until made */

static void fuzz_cli_atexit(void)
{
    if (!fuzz_cli_list[0]) return;
    unlink(fuzz_cli_list);
    char *slash = strrchr(fuzz_cli_list, '/');
    *slash = '\0';
    rmdir(fuzz_cli_list);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fuzz_cli_list[0]) {
        char tmpl[] = "/tmp/uf_fuzz_cli.XXXXXX";
        if (!mkdtemp(tmpl)) abort();
        snprintf(fuzz_cli_list, sizeof fuzz_cli_list, "%s/list.txt", tmpl);
        atexit(fuzz_cli_atexit);
    }
    FILE *f = fopen(fuzz_cli_list, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    if (fclose(f) != 0) abort();
    cli_strings out = {0};
    char *args[1] = {fuzz_cli_list};
    if (cli_expand_images(NULL, 1, args, &out)) {
        volatile size_t sink = 0;
        for (size_t i = 0; i < out.n; i++) sink += strlen(out.v[i]);
        (void)sink;
    }
    cli_strings_free(&out);
    return 0;
}
