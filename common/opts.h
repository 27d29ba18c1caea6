/*
 * opts.h: command-line options and JSON config files from one table.
 *
 * Every binary declares its options once, as an array of qb_opt ending with
 * {0}. qb_opts_parse() then:
 *   - handles --help (usage generated from the table) and --version;
 *   - reads --config FILE first when given: a JSON object whose keys are the
 *     long option names ("ws-url": "...", "symbols": ["BTC-USDT"], ...);
 *     unknown keys are an error, so a typo never goes unnoticed;
 *   - applies the command line on top, so flags override the file.
 * Values are written into the variables the table points at; strings are
 * strdup'ed and owned by the table until qb_opts_free(). Errors on stderr
 * name the program ("quotebus-broker: config FILE: ..."). A QB_OPT_LIST
 * option is repeatable on the command line, accepts comma-separated values,
 * and a JSON array or a comma string in the file.
 */
#ifndef QB_OPTS_H
#define QB_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum qb_opt_type {
    QB_OPT_STR,   /* char **            */
    QB_OPT_INT,   /* int64_t *          */
    QB_OPT_BOOL,  /* bool *  (flag; "--x" sets true, config true/false) */
    QB_OPT_LIST,  /* qb_strlist *, comma-separated values, repeatable */
    QB_OPT_MULTI, /* qb_strlist *, one value per occurrence (no comma split) */
} qb_opt_type;

typedef struct qb_strlist {
    char **v;
    size_t n;
    bool from_default; /* true until the user sets it: the first user value
                          replaces the defaults instead of appending */
} qb_strlist;

typedef struct qb_opt {
    const char *name; /* long name without "--" */
    qb_opt_type type;
    void *ptr;
    const char *arg;  /* placeholder in --help, e.g. "URL" */
    const char *help; /* one line, without the default (--help adds it) */
} qb_opt;

/* Ends a help text with the default --help shows for an option whose
 * initial value cannot say it (NULL, decided at run time):
 *   {"http-listen", QB_OPT_STR, &listen, "HOST:PORT",
 *    "serve HTTP here; \"off\" disables" QB_OPT_DEFAULT("127.0.0.1:7780")}
 * Other options show their initial value. */
#define QB_OPT_DEFAULT(text) QB_OPT_DEFAULT_MARK text
#define QB_OPT_DEFAULT_MARK "\x1f"

typedef struct qb_prog {
    const char *name;    /* "quotebus-broker" */
    const char *usage;   /* "[OPTIONS]" or "[OPTIONS] EXCHANGE" */
    const char *summary; /* a paragraph printed under the usage line */
    const char *footer;  /* examples etc., may be NULL */
} qb_prog;

/* Parses argv. Returns QB_OK and writes the index of the first positional
 * argument to *first_pos (positionals are moved to the end of argv, getopt
 * style); returns QB_EEOF after printing --help or --version (exit 0);
 * any other code after printing the reason to stderr (exit 2). */
int qb_opts_parse(const qb_prog *prog, const qb_opt *opts, int argc, char **argv, int *first_pos);

/* Appends a copy of s to l. */
int qb_strlist_add(qb_strlist *l, const char *s);
/* Sets defaults (copies) and marks them as defaults. */
int qb_strlist_set_default(qb_strlist *l, const char *const *vals, size_t n);
void qb_strlist_clear(qb_strlist *l);

/* Frees the strings and lists the table points at. */
void qb_opts_free(const qb_opt *opts);

/* Prints the generated help to stdout: one line per option,
 *   "  --name ARG   help (default: VALUE)"
 * the default being the help's QB_OPT_DEFAULT, else the initial value (a
 * string, a number, a list joined by ","; a repeatable QB_OPT_MULTI's
 * values joined by " | "; nothing for a NULL or empty string, an empty
 * list or a false flag). */
void qb_opts_help(const qb_prog *prog, const qb_opt *opts);

#endif
