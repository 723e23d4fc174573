/*
 * cli.h - the client commands of the trainyard binary: submit, runs, run,
 * logs, cancel, rerun, metrics, artifacts, download, sweep, sweeps,
 * sweep-show, sweep-cancel, experiments, nodes, drain, tokens, health and
 * completion. They talk to a server's REST API (SPEC §3) with libcurl's
 * easy interface and print tables, summaries or the server's JSON. One
 * table of struct cli_command (cli.c) drives dispatch, the command list
 * of 'trainyard --help' and the bash completion script.
 *
 * The module owns the process while a client command runs: cli_main()
 * initialises libcurl, resolves the server and token, runs one command and
 * returns its exit code. Everything here runs on the main thread of a
 * single-threaded process; nothing may be called from another thread.
 *
 * Exit codes: CLI_EXIT_OK (0), CLI_EXIT_FAILED (1: the operation failed,
 * e.g. an HTTP error or a failed run), CLI_EXIT_USAGE (2: bad usage).
 */
#ifndef TRAINYARD_CLI_H
#define TRAINYARD_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "common/buf.h"
#include "common/json.h"

enum cli_exit {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAILED = 1,
    CLI_EXIT_USAGE = 2,
};

/* JSON request bodies larger than this are sent with Content-Encoding: gzip. */
#define CLI_GZIP_MIN ((size_t)64 << 10)
/* Largest response body kept in memory; a bigger one fails the request. */
#define CLI_MAX_BODY ((size_t)64 << 20)
#define CLI_CONNECT_TIMEOUT_MS 10000L
/* Total time allowed for an ordinary request and for a snapshot upload. */
#define CLI_TIMEOUT_MS 60000L
#define CLI_UPLOAD_TIMEOUT_MS 1800000L
/* Total time allowed for copying a body to stdout, when not following. */
#define CLI_DOWNLOAD_TIMEOUT_MS 1800000L

/* getopt_long codes of the options every command takes. */
enum cli_common_opt {
    CLI_OPT_SERVER = 0x1000,
    CLI_OPT_TOKEN,
    CLI_OPT_DATA,
    CLI_OPT_JSON,
    CLI_OPT_CA,
    CLI_OPT_TOKEN_FILE,
    /* Commands number their own long-only options from here. */
    CLI_OPT_FIRST_OWN,
};

/* Entries for a command's struct option table (with 'h' for -h/--help). */
#define CLI_COMMON_LONGOPTS                                                                        \
    { "server", required_argument, NULL, CLI_OPT_SERVER },                                         \
        { "token", required_argument, NULL, CLI_OPT_TOKEN },                                       \
        { "token-file", required_argument, NULL, CLI_OPT_TOKEN_FILE },                             \
        { "data", required_argument, NULL, CLI_OPT_DATA },                                         \
        { "ca", required_argument, NULL, CLI_OPT_CA },                                             \
        { "json", no_argument, NULL, CLI_OPT_JSON },                                               \
    {                                                                                              \
        "help", no_argument, NULL, 'h'                                                             \
    }

/* Help text for the common options, for the end of each usage text. */
#define CLI_COMMON_HELP                                                                            \
    "Common options:\n"                                                                            \
    "  --server URL      server base URL (default: $TRAINYARD_SERVER, else the contents of\n"      \
    "                    DATA/server.url, else http://127.0.0.1:8080)\n"                           \
    "  --token T         API token (default: $TRAINYARD_TOKEN, else the file\n"                    \
    "                    $TRAINYARD_TOKEN_FILE, else DATA/admin.token when the server is on a\n"   \
    "                    loopback address); a token on the command line is visible to other\n"     \
    "                    users of this machine: prefer --token-file\n"                             \
    "  --token-file F    read the API token from file F (one line)\n"                              \
    "  --data DIR        the server's data directory, DATA above (default ./var)\n"                \
    "  --ca FILE         CA certificates to check an https:// server with\n"                       \
    "  --json            print the server's JSON instead of text (logs and downloaded\n"           \
    "                    files are not JSON: they come as they are)\n"                             \
    "  -h, --help        show this help\n"                                                         \
    "\n"                                                                                           \
    "Exit status: 0 ok, 1 the operation failed, 2 bad usage.\n"

struct cli;

/*
 * One client command, declared next to its code (cli_cmd_NAME) and listed
 * in cli.c's table. longopts holds every option the command takes (its own
 * and CLI_COMMON_LONGOPTS) and ends with a NULL name; usage mentions each.
 */
struct cli_command {
    const char *name;
    const char *summary; /* one line for 'trainyard --help' */
    const char *usage; /* the --help text */
    const struct option *longopts;
    const char *optstring; /* getopt_long's, starting with ":h" */
    /*
     * What the first operand completes to in bash: NULL nothing, "@dir" a
     * directory, "@file" a file, else words separated by spaces.
     */
    const char *operand;
    int (*run)(struct cli *c, int argc, char **argv);
};

/*
 * One command invocation: its name, the common options and, once
 * cli_resolve() ran, the server and token to use. Embedded: cli_init() /
 * cli_release().
 */
struct cli {
    const char *command; /* the command's name: "submit", "runs", ... */
    const struct cli_command *cmd; /* borrowed from the table */
    const char *opt_server; /* borrowed from argv, NULL when not given */
    const char *opt_token;
    const char *opt_token_file; /* borrowed, NULL when not given */
    const char *data_dir; /* borrowed; "./var" unless --data */
    const char *ca_file; /* borrowed, NULL when not given */
    bool json;
    char *server; /* owned: base URL without a trailing '/' */
    char *token; /* owned, NULL when there is none */
    bool loopback; /* the server's host is a loopback address */
    void *curl; /* owned CURL easy handle, made on first use */
};

/*
 * Runs the client command named by argv[0] (one of the table's) with its
 * options; initialises and cleans up libcurl. Returns the process exit
 * code. Main thread, once per process.
 */
int cli_main(int argc, char **argv);

/* The table's command named name, or NULL. */
const struct cli_command *cli_find_command(const char *name);

/* The table: *ret_count commands, in the order 'trainyard --help' lists them. */
const struct cli_command *const *cli_commands(size_t *ret_count);

/* Prints "  NAME  SUMMARY" for each client command (for 'trainyard --help'). */
void cli_print_summaries(FILE *out);

/* ---- cli.c: shared plumbing ---------------------------------------------- */

void cli_init(struct cli *c, const struct cli_command *cmd);
/* Frees what cli_resolve() and the HTTP helpers made. */
void cli_release(struct cli *c);

/*
 * Applies a common option returned by getopt_long (opt, optarg). Returns
 * true when opt was one of them (help is left to the command).
 */
bool cli_common_option(struct cli *c, int opt, const char *arg);

/*
 * Reports an option getopt_long refused ('?' or ':' with optstring
 * starting with ':') and returns CLI_EXIT_USAGE. argv as given to getopt.
 */
int cli_bad_option(const struct cli *c, int opt, char **argv);

/* Prints "trainyard CMD: message" and the usage hint; returns CLI_EXIT_USAGE. */
int cli_usage_error(const struct cli *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints "trainyard: message" to stderr; returns CLI_EXIT_FAILED. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Resolves the server URL and token (SPEC §2 and cli.h's CLI_COMMON_HELP
 * order). Returns 0, or CLI_EXIT_USAGE with a message for an unusable URL.
 */
int cli_resolve(struct cli *c);

/* Parses a whole decimal integer within [min, max] into *ret. */
bool cli_parse_long(const char *s, long min, long max, long *ret);

/* Writes v compactly ("0.25", "100", "1e-05") into out. */
void cli_format_number(double v, char *out, size_t size);

/* Writes v with the fewest digits that read back as v ("0.1", "0.00815371654", "1e-05"). */
void cli_format_exact(double v, char *out, size_t size);

/* ---- http.c: requests through libcurl's easy interface ----------------- */

/* A response: the HTTP status and the body (at most CLI_MAX_BODY bytes). */
struct cli_response {
    long status;
    struct buf body;
};

void cli_response_init(struct cli_response *r);
void cli_response_release(struct cli_response *r);

/*
 * Sends method to c->server + path (path starts with '/' and is already
 * escaped) with the token, and an optional body of content_type (JSON
 * over CLI_GZIP_MIN bytes goes gzip-compressed, or as is to a server that
 * refuses that: 415, or 400 naming no field). Any HTTP
 * status fills *ret and returns 0; a transport failure (no connection,
 * timeout, body over CLI_MAX_BODY) prints why and returns ERR_UNAVAILABLE.
 * timeout_ms 0 means no total timeout.
 */
int cli_request(struct cli *c, const char *method, const char *path, const char *content_type,
                const void *body, size_t body_len, long timeout_ms, struct cli_response *ret);

/*
 * GETs path and copies a 2xx body to out as it arrives (flushing after each
 * piece); timeout_ms 0 means none (for following). *ret_bytes counts what
 * was copied, also on failure. A non-2xx body is kept in ret->body instead.
 * Returns 0 when the server answered and ended the response, or
 * ERR_UNAVAILABLE / ERR_INTERNAL (message printed) when the transfer failed.
 */
int cli_stream(struct cli *c, const char *path, FILE *out, long timeout_ms, size_t *ret_bytes,
               struct cli_response *ret);

/*
 * cli_stream() with the 2xx body handed to sink(arg, data, len) piece by
 * piece as it arrives instead; sink returns false (having printed why) to
 * stop the transfer, which then fails with ERR_INTERNAL.
 */
int cli_stream_to(struct cli *c, const char *path, long timeout_ms,
                  bool (*sink)(void *arg, const char *data, size_t len), void *arg,
                  size_t *ret_bytes, struct cli_response *ret);

/* True for 2xx. */
bool cli_response_ok(const struct cli_response *r);

/*
 * Prints the server's error (error.message and error.field, else the HTTP
 * status) as "trainyard: ..." and returns CLI_EXIT_FAILED.
 */
int cli_report_error(const struct cli *c, const struct cli_response *r);

/* Writes the body as is to stdout, with a newline if it lacks one. */
void cli_print_body(const struct cli_response *r);

/* URL-escapes s for a path segment or query value; the caller frees. */
char *cli_escape(struct cli *c, const char *s);

/* ---- ignore.c: .trainyardignore rules ------------------------------------ */

struct cli_ignore;

/*
 * Reads the rules at path (gitignore syntax, see ignore.c). A missing file
 * gives an empty rule set. Returns 0 and *ret (free with cli_ignore_free),
 * or ERR_INTERNAL with a message printed when the file cannot be read.
 */
int cli_ignore_load(const char *path, struct cli_ignore **ret);
/* Parses rules from text (len bytes); never fails. Free with cli_ignore_free. */
struct cli_ignore *cli_ignore_parse(const char *text, size_t len);
/*
 * True when relpath (relative to the root, '/'-separated, no leading or
 * trailing '/') is excluded; is_dir tells whether it is a directory. The
 * caller checks parents first: a child of an excluded directory is never
 * asked about.
 */
bool cli_ignore_match(const struct cli_ignore *ig, const char *relpath, bool is_dir);
void cli_ignore_free(struct cli_ignore *ig);

/* ---- pack.c: a directory as a .tar.gz ------------------------------------ */

struct cli_pack_stats {
    size_t files;
    size_t dirs;
    size_t links;
    size_t skipped; /* excluded by rules, or of a type a snapshot cannot hold */
};

/*
 * Packs the directory dir into out as a gzip-compressed tar (regular files,
 * directories, symbolic links; paths relative to dir), skipping .git/ and
 * __pycache__/ at any depth and what dir/.trainyardignore excludes. The
 * bytes depend only on the tree (names, contents, modes, mtimes). When
 * must_have is not NULL, it is a relative path that must end up in the
 * archive as a regular file or link. Returns 0, ERR_NOT_FOUND when
 * must_have is missing or excluded, or ERR_INTERNAL; on error a message
 * has been printed. out is appended to.
 */
int cli_pack(const char *dir, const char *must_have, struct buf *out,
             struct cli_pack_stats *ret_stats);

/* ---- commands.c: helpers the command files share ---------------------- */

/*
 * Parses argv with c->cmd's options; own gets the command's own ones (it
 * returns -1 to go on, else an exit code). Expects min to max positional
 * arguments, stored in pos[] (at least max slots; the rest set to NULL);
 * pos_names names them in the "missing ..." error. Then resolves the
 * server and token. Returns -1 when the command should go on, else the exit
 * code (help printed, or bad usage).
 */
int cli_parse_args(struct cli *c, int argc, char **argv,
                   int (*own)(struct cli *c, void *state, int opt, const char *arg), void *state,
                   int min, int max, const char **pos, const char *pos_names);

/*
 * Sends a request (json_body NULL for none) and, on a 2xx answer, returns
 * its JSON in *ret_json when ret_json is not NULL (caller frees with
 * cJSON_Delete). With c->json the body is printed as is. Returns 0, or
 * CLI_EXIT_FAILED with the error printed.
 */
int cli_call(struct cli *c, const char *method, const char *path, const char *json_body,
             cJSON **ret_json);

/* Rows of cells, printed with columns as wide as their widest cell. */
#define CLI_TABLE_MAX_COLUMNS 8
struct cli_table {
    size_t columns;
    size_t rows;
    size_t cap;
    char **cells; /* rows * columns, owned */
};

/* Starts a table with the header cells (columns of them, copied). */
void cli_table_init(struct cli_table *t, size_t columns, const char *const *header);
/* Appends a row; takes the columns heap strings of row. */
void cli_table_add(struct cli_table *t, char **row);
void cli_table_print(const struct cli_table *t);
/* Appends the table as cli_table_print() prints it to out. */
void cli_table_format(const struct cli_table *t, struct buf *out);
void cli_table_release(struct cli_table *t);

/* A field as display text (caller frees): strings as they are, numbers
 * compact, booleans as words, else "-". object may be NULL. */
char *cli_field_text(const cJSON *object, const char *key);

/* "name=value name=value" of an object's numbers and strings, in its
 * order, or "-" when it has none; numbers compact, or with exact in the
 * fewest digits that read back the same. object may be NULL. Caller frees. */
char *cli_pairs_text(const cJSON *object, bool exact);

/*
 * GETs every page of the list at path (which has no query, or ends in one
 * that more may be appended to with '&'), calling row(item, t) for each item.
 * With c->json the first page is printed instead. Returns 0 or
 * CLI_EXIT_FAILED with the error printed.
 */
int cli_list_all(struct cli *c, const char *path, struct cli_table *t,
                 void (*row)(const cJSON *item, struct cli_table *t));

/* ---- submit.c: the run options submit and sweep share ------------------- */

/* getopt_long codes of the run options (CLI_RUN_LONGOPTS). */
enum cli_run_opt {
    CLI_RUN_OPT_ENTRY = CLI_OPT_FIRST_OWN,
    CLI_RUN_OPT_PARAM,
    CLI_RUN_OPT_ARG,
    CLI_RUN_OPT_COMMAND,
    CLI_RUN_OPT_EXPERIMENT,
    CLI_RUN_OPT_NODES,
    CLI_RUN_OPT_BACKEND,
    CLI_RUN_OPT_PPN,
    CLI_RUN_OPT_WORKERS,
    CLI_RUN_OPT_PS,
    CLI_RUN_OPT_CHIEF,
    CLI_RUN_OPT_EVALUATOR,
    CLI_RUN_OPT_GPU,
    CLI_RUN_OPT_GPUS_PER_PROCESS,
    CLI_RUN_OPT_CPUS,
    CLI_RUN_OPT_MEMORY_MB,
    CLI_RUN_OPT_POOL,
    CLI_RUN_OPT_IMAGE,
    CLI_RUN_OPT_PIP,
    CLI_RUN_OPT_CONDA,
    CLI_RUN_OPT_ENV,
    CLI_RUN_OPT_TAG,
    CLI_RUN_OPT_NODE_SELECTOR,
    CLI_RUN_OPT_MAX_RETRIES,
    CLI_RUN_OPT_MAX_DURATION,
    CLI_RUN_OPT_PRIORITY,
    CLI_RUN_OPT_FOLLOW,
    /* A command with the run options numbers its own from here. */
    CLI_RUN_OPT_FIRST_OWN,
};

/* Entries for the option table of a command that describes a run. */
#define CLI_RUN_LONGOPTS                                                                           \
    { "entry", required_argument, NULL, CLI_RUN_OPT_ENTRY },                                       \
        { "param", required_argument, NULL, CLI_RUN_OPT_PARAM },                                   \
        { "arg", required_argument, NULL, CLI_RUN_OPT_ARG },                                       \
        { "command", no_argument, NULL, CLI_RUN_OPT_COMMAND },                                     \
        { "experiment", required_argument, NULL, CLI_RUN_OPT_EXPERIMENT },                         \
        { "nodes", required_argument, NULL, CLI_RUN_OPT_NODES },                                   \
        { "backend", required_argument, NULL, CLI_RUN_OPT_BACKEND },                               \
        { "processes-per-node", required_argument, NULL, CLI_RUN_OPT_PPN },                        \
        { "workers", required_argument, NULL, CLI_RUN_OPT_WORKERS },                               \
        { "parameter-servers", required_argument, NULL, CLI_RUN_OPT_PS },                          \
        { "chief", no_argument, NULL, CLI_RUN_OPT_CHIEF },                                         \
        { "evaluator", no_argument, NULL, CLI_RUN_OPT_EVALUATOR },                                 \
        { "gpu", no_argument, NULL, CLI_RUN_OPT_GPU },                                             \
        { "gpus-per-process", required_argument, NULL, CLI_RUN_OPT_GPUS_PER_PROCESS },             \
        { "cpus", required_argument, NULL, CLI_RUN_OPT_CPUS },                                     \
        { "memory-mb", required_argument, NULL, CLI_RUN_OPT_MEMORY_MB },                           \
        { "pool", required_argument, NULL, CLI_RUN_OPT_POOL },                                     \
        { "image", required_argument, NULL, CLI_RUN_OPT_IMAGE },                                   \
        { "pip", required_argument, NULL, CLI_RUN_OPT_PIP },                                       \
        { "conda", required_argument, NULL, CLI_RUN_OPT_CONDA },                                   \
        { "env", required_argument, NULL, CLI_RUN_OPT_ENV },                                       \
        { "tag", required_argument, NULL, CLI_RUN_OPT_TAG },                                       \
        { "node-selector", required_argument, NULL, CLI_RUN_OPT_NODE_SELECTOR },                   \
        { "max-retries", required_argument, NULL, CLI_RUN_OPT_MAX_RETRIES },                       \
        { "max-duration", required_argument, NULL, CLI_RUN_OPT_MAX_DURATION },                     \
        { "priority", required_argument, NULL, CLI_RUN_OPT_PRIORITY },                             \
    {                                                                                              \
        "follow", no_argument, NULL, CLI_RUN_OPT_FOLLOW                                            \
    }

/* Help text of the run options but --max-duration and --follow (whose
 * meaning differs between commands). */
#define CLI_RUN_HELP                                                                               \
    "What to run:\n"                                                                               \
    "  --entry SCRIPT            script inside DIR, run with the node's Python\n"                  \
    "  --param --NAME=VALUE      a script parameter, repeatable, in order: VALUE is sent as a\n"   \
    "                            JSON number when it is one, true/false/null as those, else\n"     \
    "                            as a string; --param --NAME alone is the bare flag (true)\n"      \
    "  --arg X                   an extra argument after the parameters, repeatable; words\n"      \
    "                            after '--' are added the same way\n"                              \
    "  --command                 run the words after '--' instead of a script\n"                   \
    "  --experiment E            experiment name, [A-Za-z0-9._-] (default: DIR's base name\n"      \
    "                            with other characters replaced by '-', else 'default')\n"         \
    "\n"                                                                                           \
    "Where and how:\n"                                                                             \
    "  --nodes N                 distinct nodes the run spans (default 1)\n"                       \
    "  --backend mpi|ps|pytorch  distributed backend (default: a single process)\n"                \
    "  --processes-per-node N    processes on each node, for mpi and pytorch\n"                    \
    "  --workers N               worker tasks in all, for ps (default: --nodes)\n"                 \
    "  --parameter-servers N     parameter server tasks, for ps (default 1)\n"                     \
    "  --chief                   add a chief task, for ps\n"                                       \
    "  --evaluator               add an evaluator task, for ps\n"                                  \
    "  --gpu                     give each process GPUs\n"                                         \
    "  --gpus-per-process N      GPUs per process with --gpu (default 1)\n"                        \
    "  --cpus N                  CPUs per process (default 1)\n"                                   \
    "  --memory-mb N             memory per process in MiB (default 0: no request)\n"              \
    "  --pool P                  compute target, the node pool (default 'default')\n"              \
    "  --image REF               run in containers of this Docker image (e.g. debian:12), on\n"    \
    "                            nodes whose agent runs with --runtime docker\n"                   \
    "  --pip PKG                 a pip package to install, repeatable\n"                           \
    "  --conda PKG               a conda package, repeatable: the run goes only to nodes\n"        \
    "                            with conda (the agent does not install the packages yet)\n"       \
    "  --env K=V                 an environment variable for every task, repeatable\n"             \
    "  --tag K=V                 a tag on the run, repeatable\n"                                   \
    "  --node-selector K=V       run only on nodes with this --label, repeatable (all must\n"      \
    "                            match)\n"                                                         \
    "  --max-retries N           whole-run restarts after a failure (default 0)\n"                 \
    "  --priority N              higher runs are placed first (default 0)\n"

/*
 * What the run options and a run command's words say (DIR, --entry or
 * --command, the words after "--"); the JSON parts are built as options
 * come. Embedded: cli_run_opts_init() / cli_run_opts_release().
 */
struct cli_run_opts {
    const char *dir; /* borrowed from argv; NULL when not given */
    const char *entry; /* borrowed */
    const char *experiment; /* borrowed: --experiment */
    bool command;
    bool follow;
    char **words; /* borrowed: the words after "--" */
    int n_words;
    char *experiment_name; /* owned: the experiment once checked */
    cJSON *params; /* owned: script_params */
    cJSON *arguments; /* owned */
    cJSON *pip; /* owned */
    cJSON *conda; /* owned */
    cJSON *env; /* owned */
    cJSON *tags; /* owned */
    cJSON *selector; /* owned */
    cJSON *resources; /* owned: scalar run fields by option, in option order */
};

void cli_run_opts_init(struct cli_run_opts *s);
void cli_run_opts_release(struct cli_run_opts *s);

/* Applies one run option (a CLI_RUN_OPT_* code); -1 to go on, else the exit code. */
int cli_run_option(struct cli *c, struct cli_run_opts *s, int opt, const char *arg);

/* Sets the run field to an integer option's value within [min, max];
 * -1 to go on, else CLI_EXIT_USAGE with option named. */
int cli_run_set_int(struct cli *c, struct cli_run_opts *s, const char *option, const char *field,
                    const char *text, long min, long max);

/*
 * Parses a run command's words (c->cmd's options, [DIR], the words after
 * "--"): each option that is not a common one goes to own(c, state, opt,
 * arg), which handles its own and hands the rest to cli_run_option(); own
 * NULL hands them all. Checks DIR, --entry / --command and the experiment,
 * then resolves the server and token. Returns -1 to go on, else the exit
 * code (help printed, or bad usage).
 */
int cli_run_parse(struct cli *c, struct cli_run_opts *s, int argc, char **argv,
                  int (*own)(struct cli *c, void *state, int opt, const char *arg), void *state);

/*
 * Packs and uploads DIR (when given) and builds the run spec (SPEC §3.2)
 * into *ret_spec (caller frees). Returns 0, or the exit code with the
 * reason printed.
 */
int cli_run_build(struct cli *c, struct cli_run_opts *s, cJSON **ret_spec);

/* Sets key in object to value (owned), replacing an earlier value in
 * place; aborts when out of memory. */
void cli_json_set(cJSON *object, const char *key, cJSON *value);

/* True when s is exactly a JSON number that a double holds (see submit.c). */
bool cli_is_json_number(const char *s);

/* ---- commands ------------------------------------------------------------ */

extern const struct cli_command cli_cmd_submit;
extern const struct cli_command cli_cmd_runs;
extern const struct cli_command cli_cmd_run;
extern const struct cli_command cli_cmd_logs;
extern const struct cli_command cli_cmd_cancel;
extern const struct cli_command cli_cmd_rerun;
extern const struct cli_command cli_cmd_metrics;
extern const struct cli_command cli_cmd_artifacts;
extern const struct cli_command cli_cmd_download;
extern const struct cli_command cli_cmd_experiments;
extern const struct cli_command cli_cmd_nodes;
extern const struct cli_command cli_cmd_drain;
extern const struct cli_command cli_cmd_tokens;
extern const struct cli_command cli_cmd_health;
extern const struct cli_command cli_cmd_completion;
extern const struct cli_command cli_cmd_sweep;
extern const struct cli_command cli_cmd_sweeps;
extern const struct cli_command cli_cmd_sweep_show;
extern const struct cli_command cli_cmd_sweep_cancel;

/*
 * Copies the logs of run_id (of one task when task is not NULL) to stdout.
 * With follow, as they come until the run ends: when the server ends the
 * stream early, it is taken up again from the byte offset reached. Returns
 * 0, or CLI_EXIT_FAILED with the reason printed.
 */
int cli_stream_logs(struct cli *c, const char *run_id, const char *task, bool follow);

/* ---- sweep.c and sweeps.c ------------------------------------------------ */

/* A sweep's early_termination (the API's JSON, or null) in --policy's
 * syntax, "none" for null; caller frees. */
char *cli_policy_text(const cJSON *policy);

/* A sweep's parameters in --search's syntax, space-separated; caller frees. */
char *cli_search_text(const cJSON *parameters);

/*
 * Shows the sweep (its resource as the server gave it) and its trials as
 * they change, from the sweep's event stream, until it ends (taking the
 * stream up again when it drops); then the trials and the best one. With
 * c->json, one JSON object a line instead: each event as {"event",
 * "data"}. Returns 0 when the sweep completed, else CLI_EXIT_FAILED with
 * the reason printed.
 */
int cli_sweep_follow(struct cli *c, const cJSON *sweep);

/* True for the statuses a run never leaves: completed, failed, canceled. */
bool cli_run_status_final(const char *status);

#endif
