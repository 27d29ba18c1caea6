/*
 * opts.c: the table-driven option parser and JSON config loader of opts.h.
 * Runs once at start-up on the main thread.
 *
 * Every message on stderr begins with the program's name, then the config
 * file's path when the file is the cause:
 *   quotebus-broker: config /etc/qb.json: unknown option "ingst" (see --help)
 * and --help prints every default one way, "(default: VALUE)" at the end of
 * the option's line, from the table (the help's QB_OPT_DEFAULT, else the
 * initial value): the help texts never repeat it.
 */
#include "opts.h"

#include "err.h"
#include "json.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define OPTS_CONFIG_MAX (1u << 20)
#define OPTS_CONFIG_TOKENS 4096

int qb_strlist_add(qb_strlist *l, const char *s)
{
    char **nv = realloc(l->v, (l->n + 1) * sizeof *nv);
    if (nv == NULL) {
        return QB_ENOMEM;
    }
    l->v = nv;
    if ((l->v[l->n] = strdup(s)) == NULL) {
        return QB_ENOMEM;
    }
    l->n++;
    return QB_OK;
}

void qb_strlist_clear(qb_strlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i]);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

int qb_strlist_set_default(qb_strlist *l, const char *const *vals, size_t n)
{
    qb_strlist_clear(l);
    for (size_t i = 0; i < n; i++) {
        int rc = qb_strlist_add(l, vals[i]);
        if (rc != QB_OK) {
            return rc;
        }
    }
    l->from_default = true;
    return QB_OK;
}

/* Adds comma-separated values; the first user value replaces defaults. */
static int opts_list_add_csv(qb_strlist *l, const char *csv)
{
    if (l->from_default) {
        qb_strlist_clear(l);
        l->from_default = false;
    }
    const char *p = csv;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n > 0) {
            char *s = strndup(p, n);
            if (s == NULL) {
                return QB_ENOMEM;
            }
            int rc = qb_strlist_add(l, s);
            free(s);
            if (rc != QB_OK) {
                return rc;
            }
        }
        p += n;
        if (*p == ',') {
            p++;
        }
    }
    return QB_OK;
}

/* origin begins the error lines: "PROG" or "PROG: config FILE". */
static int opts_set(const qb_opt *o, const char *val, const char *origin)
{
    switch (o->type) {
    case QB_OPT_STR: {
        char **dst = o->ptr;
        char *s = strdup(val);
        if (s == NULL) {
            return QB_ENOMEM;
        }
        free(*dst);
        *dst = s;
        return QB_OK;
    }
    case QB_OPT_INT: {
        errno = 0;
        char *end;
        long long v = strtoll(val, &end, 10);
        if (errno != 0 || end == val || *end != '\0') {
            fprintf(stderr, "%s: --%s expects an integer, got '%s'\n", origin, o->name, val);
            return QB_EINVAL;
        }
        *(int64_t *)o->ptr = v;
        return QB_OK;
    }
    case QB_OPT_BOOL:
        if (val == NULL || strcmp(val, "true") == 0 || strcmp(val, "1") == 0) {
            *(bool *)o->ptr = true;
        } else if (strcmp(val, "false") == 0 || strcmp(val, "0") == 0) {
            *(bool *)o->ptr = false;
        } else {
            fprintf(stderr, "%s: --%s expects true or false, got '%s'\n", origin, o->name, val);
            return QB_EINVAL;
        }
        return QB_OK;
    case QB_OPT_LIST:
        return opts_list_add_csv(o->ptr, val);
    case QB_OPT_MULTI: {
        qb_strlist *l = o->ptr;
        if (l->from_default) {
            qb_strlist_clear(l);
            l->from_default = false;
        }
        return qb_strlist_add(l, val);
    }
    }
    return QB_EINVAL;
}

static const qb_opt *opts_find(const qb_opt *opts, const char *name, size_t n)
{
    for (const qb_opt *o = opts; o->name; o++) {
        if (strlen(o->name) == n && memcmp(o->name, name, n) == 0) {
            return o;
        }
    }
    return NULL;
}

static int opts_load_config(const qb_prog *prog, const qb_opt *opts, const char *path)
{
    char where[512];
    snprintf(where, sizeof where, "%s: config %s", prog->name, path);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "%s: %s\n", where, strerror(errno));
        return QB_EIO;
    }
    /* fopen opens a directory for reading; only its read fails (EISDIR). */
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fprintf(stderr, "%s: is a directory, not a JSON file\n", where);
        fclose(f);
        return QB_EINVAL;
    }
    char *buf = malloc(OPTS_CONFIG_MAX + 1);
    jsmntok_t *tok = malloc(sizeof *tok * OPTS_CONFIG_TOKENS);
    int rc = QB_OK;
    if (buf == NULL || tok == NULL) {
        rc = QB_ENOMEM;
        goto out;
    }
    size_t n = fread(buf, 1, OPTS_CONFIG_MAX + 1, f);
    if (ferror(f)) {
        fprintf(stderr, "%s: %s\n", where, strerror(errno));
        rc = QB_EIO;
        goto out;
    }
    if (n > OPTS_CONFIG_MAX) {
        fprintf(stderr, "%s: larger than %u bytes\n", where, OPTS_CONFIG_MAX);
        rc = QB_ETOOBIG;
        goto out;
    }
    buf[n] = '\0';
    qb_json j;
    rc = qb_json_parse(&j, buf, n, tok, OPTS_CONFIG_TOKENS);
    if (rc != QB_OK || !qb_json_is_object(&j, 0)) {
        fprintf(stderr, "%s: not a valid JSON object (%s)\n", where,
                rc ? qb_strerror(rc) : "top level is not an object");
        rc = QB_EPARSE;
        goto out;
    }
    int i = 1;
    for (int k = 0; k < j.tok[0].size; k++) {
        size_t klen;
        const char *key = qb_json_text(&j, i, &klen);
        const qb_opt *o = opts_find(opts, key, klen);
        int v = i + 1;
        if (o == NULL || strcmp(o->name, "config") == 0) {
            fprintf(stderr, "%s: unknown option \"%.*s\" (see --help)\n", where, (int)klen, key);
            rc = QB_EINVAL;
            goto out;
        }
        char val[4096];
        if ((o->type == QB_OPT_LIST || o->type == QB_OPT_MULTI) && qb_json_is_array(&j, v)) {
            qb_strlist *l = o->ptr;
            if (l->from_default) {
                qb_strlist_clear(l);
                l->from_default = false;
            }
            for (int e = 0; e < j.tok[v].size; e++) {
                int t = qb_json_at(&j, v, e);
                if (qb_json_str_copy(&j, t, val, sizeof val) != QB_OK) {
                    fprintf(stderr, "%s: \"%s\" must be an array of strings\n", where, o->name);
                    rc = QB_EINVAL;
                    goto out;
                }
                if ((rc = qb_strlist_add(l, val)) != QB_OK) {
                    goto out;
                }
            }
        } else if (qb_json_is_str(&j, v)) {
            if (qb_json_str_copy(&j, v, val, sizeof val) != QB_OK) {
                fprintf(stderr, "%s: bad string for \"%s\"\n", where, o->name);
                rc = QB_EINVAL;
                goto out;
            }
            if ((rc = opts_set(o, val, where)) != QB_OK) {
                goto out;
            }
        } else if (j.tok[v].type == JSMN_PRIMITIVE && o->type != QB_OPT_STR) {
            size_t vl;
            const char *vt = qb_json_text(&j, v, &vl);
            if (vl >= sizeof val) {
                fprintf(stderr, "%s: value of \"%s\" too long\n", where, o->name);
                rc = QB_ETOOBIG;
                goto out;
            }
            memcpy(val, vt, vl);
            val[vl] = '\0';
            if ((rc = opts_set(o, val, where)) != QB_OK) {
                goto out;
            }
        } else {
            fprintf(stderr, "%s: wrong type for \"%s\"\n", where, o->name);
            rc = QB_EINVAL;
            goto out;
        }
        i = qb_json_skip(&j, v);
    }
out:
    free(tok);
    free(buf);
    fclose(f);
    return rc;
}

/* The option's default, as its --help line ends. */
static void opts_print_default(const qb_opt *o, const char *given)
{
    if (given != NULL) {
        printf(" (default: %s)", given);
        return;
    }
    switch (o->type) {
    case QB_OPT_STR: {
        const char *v = *(char *const *)o->ptr;
        if (v != NULL && v[0] != '\0') {
            printf(" (default: %s)", v);
        }
        break;
    }
    case QB_OPT_INT:
        printf(" (default: %lld)", (long long)*(const int64_t *)o->ptr);
        break;
    case QB_OPT_BOOL:
        if (*(const bool *)o->ptr) {
            printf(" (default: true)");
        }
        break;
    case QB_OPT_LIST:
    case QB_OPT_MULTI: {
        /* A MULTI value may hold commas: its values are set apart more. */
        const qb_strlist *l = o->ptr;
        const char *sep = o->type == QB_OPT_MULTI ? " | " : ",";
        for (size_t i = 0; i < l->n; i++) {
            printf("%s%s", i ? sep : " (default: ", l->v[i]);
        }
        if (l->n) {
            printf(")");
        }
        break;
    }
    }
}

void qb_opts_help(const qb_prog *prog, const qb_opt *opts)
{
    printf("Usage: %s %s\n\n%s\n\nOptions:\n", prog->name, prog->usage, prog->summary);
    for (const qb_opt *o = opts; o->name; o++) {
        char left[64];
        if (o->type == QB_OPT_BOOL) {
            snprintf(left, sizeof left, "--%s", o->name);
        } else {
            snprintf(left, sizeof left, "--%s %s", o->name, o->arg ? o->arg : "VALUE");
        }
        const char *mark = strchr(o->help, QB_OPT_DEFAULT_MARK[0]);
        int n = mark ? (int)(mark - o->help) : (int)strlen(o->help);
        printf("  %-28s %.*s", left, n, o->help);
        opts_print_default(o, mark ? mark + 1 : NULL);
        printf("\n");
    }
    printf("  %-28s %s\n", "--config FILE",
           "read options from a JSON object whose keys are the long option names");
    printf("  %-28s %s\n", "--help", "print this help and exit");
    printf("  %-28s %s\n", "--version", "print the version and exit");
    if (prog->footer) {
        printf("\n%s\n", prog->footer);
    }
}

int qb_opts_parse(const qb_prog *prog, const qb_opt *opts, int argc, char **argv, int *first_pos)
{
    size_t n = 0;
    for (const qb_opt *o = opts; o->name; o++) {
        n++;
        /* Own every string default so qb_opts_free() can free uniformly. */
        if (o->type == QB_OPT_STR && *(char **)o->ptr) {
            char *s = strdup(*(char **)o->ptr);
            if (s == NULL) {
                return QB_ENOMEM;
            }
            *(char **)o->ptr = s;
        }
    }
    struct option *lo = calloc(n + 4, sizeof *lo);
    if (lo == NULL) {
        return QB_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        lo[i].name = opts[i].name;
        lo[i].has_arg = opts[i].type == QB_OPT_BOOL ? optional_argument : required_argument;
        lo[i].val = 1000 + (int)i;
    }
    lo[n] = (struct option){"config", required_argument, NULL, 'c'};
    lo[n + 1] = (struct option){"help", no_argument, NULL, 'h'};
    lo[n + 2] = (struct option){"version", no_argument, NULL, 'V'};

    /* Pass 1: --help, --version, --config. */
    int rc = QB_OK;
    const char *config = NULL;
    opterr = 0;
    /* optind = 0 (not 1) makes glibc re-initialise getopt completely, so
     * each pass (and each call) permutes and sees options after positionals;
     * with 1 the first pass's scan order and permutation state leak into
     * the second, and options after a positional were silently ignored. */
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
        if (c == 'h') {
            qb_opts_help(prog, opts);
            rc = QB_EEOF;
            goto out;
        } else if (c == 'V') {
            printf("%s %s\n", prog->name, QB_VERSION);
            rc = QB_EEOF;
            goto out;
        } else if (c == 'c') {
            config = optarg;
        } else if (c == '?' || c == ':') {
            fprintf(stderr, "%s: unknown or incomplete option '%s' (see --help)\n", prog->name,
                    argv[optind - 1]);
            rc = QB_EINVAL;
            goto out;
        }
    }
    if (config && (rc = opts_load_config(prog, opts, config)) != QB_OK) {
        goto out;
    }
    /* Flags override the file: a list given on the command line replaces
     * the file's list, as it replaces a default. */
    for (const qb_opt *o = opts; o->name; o++) {
        if (o->type == QB_OPT_LIST || o->type == QB_OPT_MULTI) {
            ((qb_strlist *)o->ptr)->from_default = true;
        }
    }
    /* Pass 2: everything else, permuting positionals to the end. */
    optind = 0;
    while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
        if (c >= 1000) {
            if ((rc = opts_set(&opts[c - 1000], optarg, prog->name)) != QB_OK) {
                goto out;
            }
        }
    }
    *first_pos = optind;
out:
    free(lo);
    return rc;
}

void qb_opts_free(const qb_opt *opts)
{
    for (const qb_opt *o = opts; o->name; o++) {
        if (o->type == QB_OPT_STR) {
            free(*(char **)o->ptr);
            *(char **)o->ptr = NULL;
        } else if (o->type == QB_OPT_LIST || o->type == QB_OPT_MULTI) {
            qb_strlist_clear(o->ptr);
        }
    }
}
