/*
 * main.c - entry point of the `uniformaly` program: dispatches to one verb per file.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

int cmd_demo(int argc, char **argv);

static const char *const usage =
    "uniformaly " UF_VERSION_STRING " - visual anomaly detection with Vision Transformers on CPU\n"
    "\n"
    "Usage: uniformaly VERB [options] ...\n"
    "\n"
    "Verbs:\n"
    "  demo       run the ViT pipeline on a seeded random model and generated images\n"
    "  classify   top-k classes of images with a supervised ViT checkpoint\n"
    "  features   write block outputs / attention maps of images to a .safetensors file\n"
    "  info       describe a checkpoint (.pth or .safetensors)\n"
    "\n"
    "'uniformaly VERB --help' describes each verb. Exit status: 0 ok, 1 runtime error,\n"
    "2 usage error.\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return CLI_EXIT_USAGE;
    }
    const char *verb = argv[1];
    if (!strcmp(verb, "--help") || !strcmp(verb, "-h") || !strcmp(verb, "help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(verb, "--version")) {
        printf("uniformaly %s\n", uf_version());
        return 0;
    }
    if (!strcmp(verb, "classify")) return cmd_classify(argc - 1, argv + 1);
    if (!strcmp(verb, "features")) return cmd_features(argc - 1, argv + 1);
    if (!strcmp(verb, "info")) return cmd_inspect(argc - 1, argv + 1);
    if (!strcmp(verb, "demo")) return cmd_demo(argc - 1, argv + 1);
    fprintf(stderr, "uniformaly: unknown verb '%s'\n\n%s", verb, usage);
    return CLI_EXIT_USAGE;
}
