/* Subcommands of the ctxdiff binary; each returns the process exit status
 * (0 success, 1 failure, 2 usage error). One file per command. */
#ifndef CX_COMMANDS_H
#define CX_COMMANDS_H

int cx_cmd_segment(int argc, char **argv);       /* cmd_segment.c */
int cx_cmd_bench(int argc, char **argv);         /* bench/bench.c */
int cx_cmd_synth_weights(int argc, char **argv); /* cmd_synth.c */
int cx_cmd_synth_image(int argc, char **argv);   /* cmd_synth.c */
/* --threads VALUE of command `cmd`: applies it (cx_set_threads) and returns 0, or prints why
 * not and returns 2 (main.c) */
int cx_cli_threads(const char *cmd, const char *value);
#ifdef CTXDIFF_HAVE_HDF5
int cx_cmd_convert(int argc, char **argv);       /* cmd_convert.c */
#endif
#ifdef CTXDIFF_HAVE_CUDA
int cx_cmd_validate(int argc, char **argv);      /* cmd_validate.c */
#endif
#ifdef CTXDIFF_HAVE_NET
int cx_cmd_run(int argc, char **argv);           /* cmd_run.c */
#endif

#endif
