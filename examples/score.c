/*
 * score.c - the smallest complete program on the installed library: load a model file
 * written by `uniformaly fit`, score images, print "PATH<TAB>SCORE" per image. It exists
 * to show (and, in tests/test_install.sh, to check) that an installed uniformaly builds
 * with nothing but pkg-config, dynamically or statically:
 *
 *   cc score.c $(pkg-config --cflags --libs uniformaly) -o score
 *   cc score.c $(pkg-config --cflags uniformaly) -Wl,-Bstatic -luniformaly -Wl,-Bdynamic \
 *      $(pkg-config --static --libs uniformaly) -o score
 *
 * Scores are printed with %.9g, enough to give back the exact float.
 */
#include <uniformaly.h>

#include <stdio.h>

#if UF_VERSION_NUMBER < 100
#error "needs uniformaly 0.1.0 or newer"
#endif

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.ufm IMAGE...\n", argv[0]);
        return 2;
    }
    /* a library older than this header would lack functions it declares */
    if (uf_version_number() / 10000 != UF_VERSION_MAJOR || uf_version_number() < UF_VERSION_NUMBER) {
        fprintf(stderr, "score: built for uniformaly %s, linked with %s\n", UF_VERSION_STRING,
                uf_version());
        return 1;
    }
    uf_model *m = NULL;
    uf_scorer *sc = NULL;
    if (uf_model_load(argv[1], NULL, &m) != UF_OK || uf_scorer_new(m, &sc) != UF_OK) {
        fprintf(stderr, "score: %s\n", uf_errmsg());
        uf_model_free(m);
        return 1;
    }
    int rc = 0;
    for (int i = 2; i < argc; i++) {
        uf_image *img = NULL;
        uf_score r = {0};
        const uf_image *one[1];
        if (uf_image_load(argv[i], &img) != UF_OK ||
            (one[0] = img, uf_score_images(sc, one, 1, &r)) != UF_OK) {
            fprintf(stderr, "score: %s\n", uf_errmsg());
            rc = 1;
        } else {
            printf("%s\t%.9g\n", argv[i], r.score);
        }
        uf_image_free(img);
    }
    uf_scorer_free(sc);
    uf_model_free(m);
    return rc;
}
